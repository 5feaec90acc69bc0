"""zstd for the stored documents: dictionaries trained from the first big batch, a compressor per thread."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import zstandard

from observatory.errors import StoreError

_ZSTD_LEVEL = 3
_DICT_MIN_SAMPLES = 1000  # documents a batch needs to train the store's dictionary from
_DICT_SAMPLES = 1000  # ~100x the dictionary's size in documents of a few KB: enough, and trained in ~0.3 s
_DICT_BYTES = 64 << 10


def _train_dictionary(docs: Sequence[bytes]) -> zstandard.ZstdCompressionDict | None:
    step = max(1, len(docs) // _DICT_SAMPLES)
    try:
        samples: list[bytes | bytearray | memoryview] = list(docs[::step][:_DICT_SAMPLES])
        return zstandard.train_dictionary(_DICT_BYTES, samples, level=_ZSTD_LEVEL)
    except zstandard.ZstdError:  # too few or too alike samples: documents are compressed without one
        return None


class _Codec:
    """zstd for the raw documents: the newest dictionary for writing, any stored one (or none) for reading.

    zstd contexts are not for concurrent use, so each thread keeps its own."""

    def __init__(self, dictionaries: list[bytes]) -> None:
        self._dicts: dict[int, zstandard.ZstdCompressionDict] = {}
        self._current = 0
        self._encoder: _ZstdEncoder | None = None
        self._local = threading.local()
        for d in dictionaries:
            self.add(d)

    @property
    def has_dictionary(self) -> bool:
        return self._current != 0

    def add(self, data: bytes) -> None:
        d = zstandard.ZstdCompressionDict(data)
        self._dicts[d.dict_id()] = d
        self._current = d.dict_id()
        self._encoder = _ZstdEncoder(data)

    def encoder(self) -> _ZstdEncoder | None:
        return self._encoder

    def _contexts(self) -> Any:
        local = self._local
        if getattr(local, "current", None) != self._current:
            d = self._dicts.get(self._current)
            local.current = self._current
            local.compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, dict_data=d) if d else \
                zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
            local.decompressors = getattr(local, "decompressors", {})
        return local

    def compress(self, docs: list[bytes]) -> list[bytes]:
        compress = self._contexts().compressor.compress
        return [compress(d) for d in docs]

    def decompress(self, raw: bytes) -> bytes:
        dict_id = zstandard.get_frame_parameters(raw).dict_id
        local = self._contexts()
        dctx = local.decompressors.get(dict_id)
        if dctx is None:
            if dict_id and dict_id not in self._dicts:
                raise StoreError(f"a stored document needs zstd dictionary {dict_id}, which the store lacks")
            dctx = local.decompressors[dict_id] = zstandard.ZstdDecompressor(
                dict_data=self._dicts[dict_id]) if dict_id else zstandard.ZstdDecompressor()
        doc: bytes = dctx.decompress(raw)
        return doc


class _ZstdEncoder:
    """Compresses documents as the store does with its current dictionary, in whatever process calls it: it
    pickles as the dictionary's bytes, and each thread of each process builds its own compressor once."""

    _local = threading.local()

    def __init__(self, dictionary: bytes) -> None:
        self.dictionary = dictionary
        self.dict_id = zstandard.ZstdCompressionDict(dictionary).dict_id()

    def __reduce__(self) -> tuple[type[_ZstdEncoder], tuple[bytes]]:
        return _ZstdEncoder, (self.dictionary,)

    def __call__(self, docs: list[bytes]) -> list[bytes]:
        local = _ZstdEncoder._local
        cctx = getattr(local, "compressors", {}).get(self.dict_id)
        if cctx is None:
            local.compressors = getattr(local, "compressors", {})
            cctx = local.compressors[self.dict_id] = zstandard.ZstdCompressor(
                level=_ZSTD_LEVEL, dict_data=zstandard.ZstdCompressionDict(self.dictionary))
        compress = cctx.compress
        return [compress(d) for d in docs]
