"""Cost of the per-measurement verdict, against the cost of decoding the JSON it comes from.

    .venv/bin/python benchmarks/verdict.py [FILE.jsonl ...] [--n 20000]

Without files it times a mix built from tests/verdict_cases.py (90% ordinary ok measurements, the rest one
of each technique), which is what the simulator writes. Each figure is the best of 5 runs (the machine is
shared: the best run is the least disturbed one). Prints microseconds per measurement for: JSON decode
(msgspec), parse_measurement (decode + envelope validation), classify, ooni_blocking.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from observatory.measurement import parse_measurement  # noqa: E402
from observatory.verdict import classify  # noqa: E402
from observatory.verdict.ooni import ooni_blocking  # noqa: E402


def synthetic(n: int) -> list[bytes]:
    from verdict_cases import EXPECTED, case, envelope

    names = sorted(EXPECTED)
    lines = []
    for i in range(n):
        name = "ok" if i % 10 else names[(i // 10) % len(names)]
        tk = case(name)
        url = tk["requests"][0]["request"]["url"] if tk.get("requests") else "https://www.facebook.com/"
        lines.append(json.dumps(envelope(tk, url=url, uid=f"u{i}")).encode())
    return lines


def best(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args(argv)
    if args.files:
        lines = [line for f in args.files for line in itertools.islice(f.open("rb"), args.n)][: args.n]
    else:
        lines = synthetic(args.n)
    dec = msgspec.json.Decoder()
    ms = [parse_measurement(line) for line in lines]
    n = len(lines)
    t_json = best(lambda: [dec.decode(line) for line in lines]) / n * 1e6
    t_parse = best(lambda: [parse_measurement(line) for line in lines]) / n * 1e6
    t_cls = best(lambda: [classify(m) for m in ms]) / n * 1e6
    t_ooni = best(lambda: [ooni_blocking(m) for m in ms], repeat=3) / n * 1e6
    verdicts = Counter(classify(m).verdict for m in ms)
    print(f"{n} measurements ({sum(map(len, lines)) / n:.0f} bytes each)")
    print(f"  json decode      {t_json:8.1f} us")
    print(f"  parse_measurement{t_parse:8.1f} us")
    print(f"  classify         {t_cls:8.1f} us  ({t_cls / t_json:.2f}x the JSON decode)")
    print(f"  ooni_blocking    {t_ooni:8.1f} us")
    print("  verdicts:", dict(verdicts.most_common()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
