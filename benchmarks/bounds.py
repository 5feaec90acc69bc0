"""Anonymous attacks on `observatory serve`, measured from outside: memory under huge bodies, connections a
slowloris client holds, and how long refusing takes.

    python benchmarks/bounds.py [--root DIR] [--mb 100] [--parallel 4] [--slow 1000]

`--root`: the source tree to run the server from (default: this one); point it at an export of an older commit
to measure "before". Prints: the server's RSS before and at its peak while PARALLEL clients each send an MB-sized
JSON body to /api/v1/user-reports, the answer's status, size and time; then how many of SLOW connections holding
partial headers the server still holds after 3 s and after the header deadline, and the time a fresh client (from
another loopback address) waits for /healthz meanwhile.

Measured (shared 2-core machine, load ~9): before (341d222, `git archive` export as --root): RSS 196 -> 1,721 MiB,
four 422 answers of 104,858,028 bytes after 73-101 s; 1,000 slowloris connections all held at 3 s and 12 s.
After: RSS 196 -> 197 MiB, four 413 of 484 bytes in 0.04-0.09 s; 100 held at 3 s (the per-address limit), 0 at
12 s (the 10 s header deadline); a client from another address served in 0.04 s.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(root: Path, db: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.Popen([sys.executable, "-m", "observatory", "serve", "--db", db, "--port", str(port),
                             "--detect-every", "0"], env=env, cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(20).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def _big_post(port: int, mb: int, out: list[tuple[str, int, float]]) -> None:
    """One client sending an MB-sized JSON body (declared), then reading the answer."""
    size = mb * 1024 * 1024
    started = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    head = (b"POST /api/v1/user-reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % size)
    chunk = b'{"country": "PK", "platform": "twitter", "text": "' + b"A" * (1024 * 1024 - 60)
    answer = b""
    try:
        s.sendall(head)
        sent = 0
        while sent < size:
            piece = chunk if sent == 0 else b"A" * min(1024 * 1024, size - sent - 2)
            if sent + len(piece) >= size - 2:
                piece = piece[:size - sent - 2] + b'"}'
            s.sendall(piece)
            sent += len(piece)
    except OSError:
        pass  # the server hung up: refused
    try:
        while data := s.recv(1 << 20):
            answer += data
    except OSError:
        pass
    s.close()
    status = answer[9:12].decode() if answer.startswith(b"HTTP/1.1") else "closed"
    out.append((status, len(answer), time.monotonic() - started))


def bodies(proc: psutil.Process, port: int, mb: int, parallel: int) -> None:
    before = proc.memory_info().rss
    peak = before
    results: list[tuple[str, int, float]] = []
    threads = [threading.Thread(target=_big_post, args=(port, mb, results)) for _ in range(parallel)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, proc.memory_info().rss)
        time.sleep(0.05)
    print(f"{parallel} x {mb} MB bodies: RSS {before / 2**20:.0f} MiB before, {peak / 2**20:.0f} MiB at peak; "
          f"answers {sorted(r[0] for r in results)}, {max(r[1] for r in results):,} bytes at most, "
          f"{min(r[2] for r in results):.2f}-{max(r[2] for r in results):.2f} s")


def _alive(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def slowloris(port: int, n: int) -> None:
    held: list[socket.socket] = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            held.append(s)
        except OSError:
            break
    time.sleep(3)
    after3 = sum(_alive(s) for s in held)
    started = time.monotonic()
    fresh = socket.socket()
    fresh.bind(("127.0.0.2", 0))
    fresh.settimeout(30)
    try:
        fresh.connect(("127.0.0.1", port))
        fresh.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        ok = fresh.recv(20).startswith(b"HTTP/1.1 200")
    except OSError:
        ok = False
    waited = time.monotonic() - started
    fresh.close()
    time.sleep(9)
    after12 = sum(_alive(s) for s in held)
    for s in held:
        s.close()
    print(f"{len(held)} slowloris connections: {after3} still held after 3 s, {after12} after 12 s; "
          f"a fresh client {'served' if ok else 'NOT served'} in {waited:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=ROOT)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--slow", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        server = _start(args.root.resolve(), os.path.join(tmp, "b.duckdb"), port)
        try:
            proc = psutil.Process(server.pid)
            bodies(proc, port, args.mb, args.parallel)
            slowloris(port, args.slow)
        finally:
            server.terminate()
            server.wait(20)


if __name__ == "__main__":
    main()
