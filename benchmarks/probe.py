"""Probe benchmark: 200 targets on local servers (some slow, some stalling), measured at once.

Prints the wall time of the whole run against the slowest single target measured alone (target: within
1.5x: a stuck target must not delay the others), and the probe's CPU time per measurement. The servers
(DNS, TLS sites, a slow site, a stalling site) run in a separate process so their CPU is not counted.

    .venv/bin/python benchmarks/probe.py [--targets 200] [--slow 20] [--stalled 20] [--concurrency 200]
                                         [--servers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from observatory.probe.metadata import ProbeMetadata  # noqa: E402
from observatory.probe.net import NetConfig, static_hosts  # noqa: E402
from observatory.probe.runner import Runner  # noqa: E402


def names(n: int) -> list[str]:
    return [f"site{i}.bench.example" for i in range(n)]


def ip_of(i: int) -> str:
    return f"198.18.{1 + i // 200}.{10 + i % 200}"


def serve(n: int, ca_path: str, conn: Any) -> None:
    """Child process: the servers. Sends back their ports, then serves until the pipe closes."""
    from probe_net import LocalNet, Zone, http_handler, page, stall

    net = LocalNet()
    net.write_ca(ca_path)
    hosts = names(n)
    ctx = net.server_context(["*.bench.example"])
    ports = {
        "fast": net.serve(http_handler(page(16 * 1024)), tls=ctx),
        "slow": net.serve(http_handler(page(16 * 1024), delay=1.0), tls=ctx),
        "stall": net.serve(stall),
        "dns": net.dns(Zone({h: [ip_of(i)] for i, h in enumerate(hosts)})),
    }
    conn.send(ports)
    conn.recv()  # until the parent is done
    net.close()


def config(servers: list[dict[str, int]], kinds: list[str], ca: str) -> NetConfig:
    """Target i is served by server process i % len(servers) (200 real sites have their own CPUs)."""
    hosts = names(len(kinds))
    return NetConfig(
        resolver=f"127.0.0.1:{servers[0]['dns']}", ca_file=ca,
        system_resolve=static_hosts({h: [ip_of(i)] for i, h in enumerate(hosts)}),
        connect_map={f"{ip_of(i)}:443": f"127.0.0.1:{servers[i % len(servers)][k]}" for i, k in enumerate(kinds)},
        dns_timeout=2, connect_timeout=2, tls_timeout=2, http_timeout=4, download_seconds=2,
    )


def run(cfg: NetConfig, urls: list[str], concurrency: int) -> tuple[float, float, list[dict[str, Any]]]:
    runner = Runner(net=cfg, metadata=ProbeMetadata(cc="PK", asn=17557), probe_id="bench")
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    docs = asyncio.run(runner.run(urls, concurrency=concurrency))
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, docs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--slow", type=int, default=20)
    ap.add_argument("--stalled", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--servers", type=int, default=4, help="server processes the targets are spread over")
    args = ap.parse_args()
    n = args.targets
    kinds = ["stall"] * args.stalled + ["slow"] * args.slow
    kinds += ["fast"] * (n - len(kinds))
    tmp = Path(tempfile.mkdtemp())
    procs, pipes, servers = [], [], []
    for k in range(args.servers):
        parent, child = mp.Pipe()
        proc = mp.Process(target=serve, args=(n, str(tmp / f"ca{k}.pem"), child), daemon=True)
        proc.start()
        procs.append(proc)
        pipes.append(parent)
        servers.append(parent.recv())
    # one CA bundle trusting every server process's CA
    ca = str(tmp / "ca.pem")
    Path(ca).write_text("".join((tmp / f"ca{k}.pem").read_text() for k in range(args.servers)))
    try:
        cfg = config(servers, kinds, ca)
        urls = [f"https://{h}/" for h in names(n)]
        # each kind alone first: the slowest single target sets the bar
        singles = {}
        for kind in ("fast", "slow", "stall"):
            i = kinds.index(kind)
            singles[kind], _, _ = run(cfg, [urls[i]], 1)
        slowest = max(singles.values())
        wall, cpu, docs = run(cfg, urls, args.concurrency)
    finally:
        for parent in pipes:
            parent.send("done")
        for proc in procs:
            proc.join(10)
    failures: dict[str, int] = {}
    for d in docs:
        f = d["test_keys"]["requests"][0]["failure"] or "ok"
        failures[f] = failures.get(f, 0) + 1
    ratio = wall / slowest
    print(f"targets: {n} ({args.stalled} stalling, {args.slow} slow), concurrency {args.concurrency}, "
          f"served by {args.servers} processes")
    print("single target alone: " + ", ".join(f"{k} {v:.2f}s" for k, v in singles.items()))
    print(f"wall time for all {n}: {wall:.2f}s = {ratio:.2f}x the slowest single target ({slowest:.2f}s); "
          f"target <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'}")
    print(f"CPU per measurement: {cpu / n * 1000:.1f} ms (probe process, servers excluded)")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(a busy machine stretches the wall time; the ratio is only meaningful on an idle one)")
    print(f"outcomes: {dict(sorted(failures.items()))}")
    return 0 if ratio <= 1.5 and len(docs) == n else 1


if __name__ == "__main__":
    sys.exit(main())
