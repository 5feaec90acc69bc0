"""Cost of scrubbing a document (observatory.scrub) and of the collector's depth check, per document: at ingest
(measurement.strip_private: the probe's own address, only when probe_ip is real) and when publishing
(scrub.scrub_document: also every address that is not a server's).

    python benchmarks/scrub.py [--old path/to/old/measurement.py]

Documents: the synthetic web_connectivity document of the store benchmarks (tests/store_world.py: every address
in it a server's), the same with the probe's address in it and in probe_ip, and the 101 real OONI measurements of
tests/data (many tests, many addresses, 44 KB on average). With --old, the same timings for another version's
strip_private.

Measured (CPU time, shared 2-core machine at load ~15), against 341d222's strip_private:
  synthetic (no probe_ip)   ingest 0.8 us/doc (before 0.7); publish 29-35 us/doc; depth check 1.5 us/doc
  synthetic + probe_ip      ingest 98-111 us/doc (before 25-27, which missed every other spelling); publish 136-145
  real OONI (probe_ip 127.0.0.1)  ingest 7.5-8.6 us/doc (before 5.8-6.0); publish 490-560 us/doc; depth 220-236 us/doc
Ingest pays only for documents that carry a real probe_ip (rare: OONI publishes 127.0.0.1, our probe sends none);
publishing pays per document exported, next to decompressing and writing it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from store_world import document  # noqa: E402

from observatory.measurement import strip_private  # noqa: E402
from observatory.scrub import scrub_document  # noqa: E402
from observatory.web.limits import json_depth_exceeds  # noqa: E402


def _docs() -> dict[str, list[tuple[dict[str, Any], bytes]]]:
    values = {"UID": "u", "TIME": "2024-01-15 10:00:00", "CC": "PK", "ASN": "AS17557", "NET": "Jazz",
              "INPUT": "https://x.com/", "REGION": "Lahore", "PROBE": "p", "TLSFAIL": "null"}
    synth = document(values)
    with_ip = json.loads(synth)
    with_ip["probe_ip"] = "203.0.113.77"
    with_ip["test_keys"]["requests"][0]["response"]["body"] = "your address: 203.0.113.77"
    ooni = []
    data = ROOT / "tests" / "data" / "ooni"
    for f in [data / "measurements.jsonl", *sorted(data.glob("netem_qa/*/measurement.json"))]:
        lines = f.read_bytes().splitlines() if f.suffix == ".jsonl" else [f.read_bytes()]
        ooni += [(json.loads(line), line.strip()) for line in lines if line.strip()]
    return {"synthetic": [(json.loads(synth), synth)], "synthetic+probe_ip": [(with_ip, json.dumps(with_ip).encode())],
            "real OONI (101)": ooni}


def _per_doc(fn: Any, docs: list[tuple[dict[str, Any], bytes]], seconds: float = 1.0) -> float:
    """CPU microseconds per document (process time: what other work on a shared machine moves least)."""
    n, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for d, raw in docs:
            fn(d, raw)
        n += len(docs)
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", help="another version's observatory/measurement.py, to compare")
    args = ap.parse_args()
    old = None
    if args.old:
        spec = importlib.util.spec_from_file_location("old_measurement", args.old)
        assert spec and spec.loader
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
    for name, docs in _docs().items():
        line = (f"{name:22} ingest (strip_private) {_per_doc(strip_private, docs):7.1f} us/doc, "
                f"publish (scrub_document) {_per_doc(scrub_document, docs):7.1f} us/doc")
        if old is not None:
            line += f"   (old strip_private {_per_doc(lambda d, raw: old.strip_private(d), docs):6.1f} us/doc)"
        line += f"   depth check {_per_doc(lambda d, raw: json_depth_exceeds(raw), docs):5.1f} us/doc"
        print(line)


if __name__ == "__main__":
    main()
