"""What leaves the observatory: measurements exported for the public (`observatory export`, the incident's
download on the site), with every document scrubbed (observatory.scrub.scrub_document) on the way out.

The store keeps documents minus the probe's own address; publishing also removes every address a document does
not explain as a server's, which also covers documents stored before a scrubbing rule existed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from observatory.scrub import scrub_json
from observatory.store.base import MeasurementFilter, Store


def documents(store: Store, flt: MeasurementFilter) -> Iterator[bytes]:
    """The stored documents, scrubbed, one JSON text each."""
    for raw in store.documents(flt):
        yield scrub_json(raw)


def export(store: Store, flt: MeasurementFilter, fmt: str, path: str) -> int:
    """store.export (parquet or csv), with the parquet's `document` column scrubbed; the row count."""
    n = store.export(flt, fmt, path)
    if fmt == "parquet" and n:
        _scrub_parquet(path)
    return n


def _scrub_parquet(path: str) -> None:
    """Rewrites the file's `document` column scrubbed, a batch at a time (the file may not fit in memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path + ".scrubbing"
    source = pq.ParquetFile(path)
    try:
        with pq.ParquetWriter(tmp, source.schema_arrow, compression="zstd") as writer:
            for batch in source.iter_batches(batch_size=10_000):
                i = batch.schema.get_field_index("document")
                docs = [None if d is None else scrub_json(d.encode()).decode()
                        for d in batch.column(i).to_pylist()]
                writer.write_batch(batch.set_column(i, "document", pa.array(docs, pa.string())))
        os.replace(tmp, path)
    finally:
        source.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
