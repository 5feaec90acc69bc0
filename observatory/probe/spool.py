"""The durable spool: every measurement is on disk (fsynced) before anything tries to upload it.

One file per measurement, `<sortable time>-<uid>.json`, written to a temporary name, fsynced, renamed, and
the directory fsynced: after a crash a file is either whole or absent. Files leave the spool only when the
collector has acknowledged them; ones the collector rejected move to `rejected/` with the reason beside them.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import msgspec

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Spool:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rejected_dir = self.dir / "rejected"

    def put(self, doc: dict[str, Any]) -> Path:
        """Writes one measurement durably; returns its file."""
        uid = _SAFE.sub("_", str(doc.get("measurement_uid") or "")) or f"m{time.time_ns()}"
        path = self.dir / f"{time.time_ns():020d}-{uid}.json"
        _write_durably(path, msgspec.json.encode(doc))
        return path

    def pending(self, limit: int | None = None) -> list[Path]:
        """Spooled measurements, oldest first."""
        files = sorted(p for p in self.dir.glob("*.json") if not p.name.startswith("."))
        return files[:limit] if limit is not None else files

    def __len__(self) -> int:
        return len(self.pending())

    def acknowledge(self, paths: list[Path]) -> None:
        """The collector has them: remove them from the spool."""
        for p in paths:
            p.unlink(missing_ok=True)
        if paths:
            _fsync_dir(self.dir)

    def reject(self, path: Path, reason: str) -> None:
        """The collector refused this one for good: keep it aside, with why, and stop retrying it."""
        self.rejected_dir.mkdir(exist_ok=True)
        (self.rejected_dir / (path.name + ".reason")).write_text(json.dumps({"reason": reason}) + "\n")
        os.replace(path, self.rejected_dir / path.name)
