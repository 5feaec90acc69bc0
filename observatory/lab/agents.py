"""The lab's probe and control helper processes, built from the probe's own library (observatory.probe).

Run inside lab namespaces by the pipeline (`python -m observatory.lab.agents probe|helper ...`): the same
measurement code, spool and signed uploads as `observatory probe`, on the lab's fast cycle, with uploads in
their own thread so that a region cut off by a shutdown keeps measuring and spooling, and sends everything
when it comes back.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _helper(args: argparse.Namespace) -> None:
    import uvicorn

    from observatory.probe.helper import make_helper_app
    from observatory.probe.net import NetConfig

    app = make_helper_app(NetConfig(ca_file=args.ca_file))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


def _probe(args: argparse.Namespace) -> None:
    from observatory.probe.metadata import ProbeMetadata
    from observatory.probe.net import NetConfig
    from observatory.probe.runner import HelperClient, Runner
    from observatory.probe.spool import Spool
    from observatory.probe.upload import Uploader

    urls = [u.strip() for u in Path(args.targets).read_text().splitlines() if u.strip()]
    spool = Spool(args.spool)
    meta = ProbeMetadata(cc=args.cc, asn=args.asn, network_name=args.network_name, region=args.region,
                         resolver_ip=args.resolver, resolver_asn=args.asn, resolver_network_name=args.network_name)
    runner = Runner(net=NetConfig(resolver=f"{args.resolver}:53", ca_file=args.ca_file), metadata=meta,
                    probe_id=args.probe_id or secrets.token_hex(8), helper=HelperClient(args.helper, timeout=15))
    stop = threading.Event()
    cycle_done = threading.Event()

    def uploads() -> None:
        """One batch after each cycle (few, larger batches); while the collector is unreachable (a shutdown),
        measurements stay in the spool and go when it answers again."""
        uploader = Uploader(spool, args.collector, token=args.token, secret=args.secret, timeout=20, retries=0)
        while not stop.is_set():
            cycle_done.wait(10)
            cycle_done.clear()
            if len(spool):
                try:
                    uploader.upload_all()
                except Exception as exc:
                    print(f"upload deferred: {exc}", file=sys.stderr)

    threading.Thread(target=uploads, name="uploads", daemon=True).start()

    def keep(doc: dict[str, Any]) -> None:
        spool.put(doc)  # durable first: the uploader thread sends it when the collector is reachable

    async def loop() -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            await runner.run(urls, on_done=keep)
            cycle_done.set()
            next_at += args.every
            now = time.monotonic()
            if next_at < now:  # a cycle longer than the interval: start again at once, never in a burst
                next_at = now
            await asyncio.sleep(next_at - now)

    def finish(signum: int, frame: object) -> None:
        stop.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, finish)
    asyncio.run(loop())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m observatory.lab.agents")
    sub = parser.add_subparsers(dest="what", required=True)
    h = sub.add_parser("helper")
    h.add_argument("--host", required=True)
    h.add_argument("--port", type=int, default=80)
    h.add_argument("--ca-file", required=True)
    p = sub.add_parser("probe")
    for flag in ("--targets", "--collector", "--helper", "--token", "--secret", "--region", "--cc",
                 "--network-name", "--resolver", "--ca-file", "--spool"):
        p.add_argument(flag, required=True)
    p.add_argument("--asn", type=int, required=True)
    p.add_argument("--every", type=float, required=True)
    p.add_argument("--probe-id", default=None)
    args = parser.parse_args(argv)
    _helper(args) if args.what == "helper" else _probe(args)


if __name__ == "__main__":
    main()
