"""Network namespaces, veth pairs, addresses and routes: the lab's wiring, and its complete teardown.

Everything the lab makes is recorded in a `LabState` file as soon as it exists, so that `down`, a crash
or Ctrl-C can remove it all: processes (by PID, then whatever is still inside our namespaces), the
namespaces themselves, and their `/etc/netns/NS` directories. Nothing here ever touches the host's own
namespace: veth pairs are created directly inside lab namespaces (`ip -n A link add ... peer netns B`).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from observatory.errors import LabError

PREFIX = "obs-"
NETNS_ETC = Path("/etc/netns")
NETNS_RUN = Path("/run/netns")
STATE_ROOT = Path("/run/observatory-lab")
CLONE_NEWNET = 0x40000000


def run(argv: Sequence[str], *, ns: str | None = None, check: bool = True, timeout: float = 30,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs a command (inside namespace `ns` when given); a failure is a LabError naming the command."""
    full = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input)
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]} is not installed (run scripts/sysdeps.sh): {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(full)}` did not finish in {timeout}s") from exc
    if check and proc.returncode != 0:
        raise LabError(f"`{' '.join(full)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def namespaces_available() -> str | None:
    """None when this process can build namespaces, else the reason it cannot (for a test skip)."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, iptables, tc)"
    for tool in ("ip", "iptables", "tc", "dnsmasq", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (run scripts/sysdeps.sh)"
    probe = f"{PREFIX}probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def lab_namespaces(lab_id: str | None = None) -> list[str]:
    """Lab namespaces that exist now (of one lab, or of any lab)."""
    out = run(["ip", "netns", "list"]).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    want = f"{PREFIX}{lab_id}-" if lab_id else PREFIX
    return [n for n in names if n.startswith(want)]


@dataclass(slots=True)
class LabState:
    """What one lab has made, persisted after every change so that teardown always finds it."""

    lab_id: str
    state_dir: str
    namespaces: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)  # role -> pid
    etc_dirs: list[str] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)  # addresses, URLs: for `lab up` users

    @property
    def path(self) -> Path:
        return Path(self.state_dir) / "state.json"

    def save(self) -> None:
        Path(self.state_dir).mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(self.path)

    @classmethod
    def load(cls, state_dir: Path) -> LabState:
        raw = json.loads((state_dir / "state.json").read_text())
        return cls(**raw)

    # --- making things (each recorded before or as it is made) ---

    def add_namespace(self, name: str, *, resolver: str | None = None) -> str:
        if not name.startswith(PREFIX):
            raise LabError(f"lab namespace {name!r} must start with {PREFIX!r}")
        self.namespaces.append(name)
        self.save()
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        if resolver:
            self.set_resolver(name, resolver)
        return name

    def set_resolver(self, ns: str, resolver: str) -> None:
        """`ip netns exec NS` bind-mounts /etc/netns/NS/resolv.conf over the host's: the namespace's resolver."""
        d = NETNS_ETC / ns
        if str(d) not in self.etc_dirs:
            self.etc_dirs.append(str(d))
            self.save()
        d.mkdir(parents=True, exist_ok=True)
        (d / "resolv.conf").write_text(f"nameserver {resolver}\noptions timeout:2 attempts:1\n")
        # An empty hosts file: names resolve only through the lab's DNS.
        (d / "hosts").write_text("127.0.0.1 localhost\n")

    def remember_pid(self, role: str, pid: int) -> None:
        self.pids[role] = pid
        self.save()

    def forget_pid(self, role: str) -> None:
        self.pids.pop(role, None)
        self.save()


def veth(ns_a: str, if_a: str, cidr_a: str, ns_b: str, if_b: str, cidr_b: str) -> None:
    """A veth pair between two lab namespaces, addressed and up; created inside them, never in the host's."""
    run(["ip", "-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b])
    for ns, dev, cidr in ((ns_a, if_a, cidr_a), (ns_b, if_b, cidr_b)):
        run(["ip", "-n", ns, "addr", "add", cidr, "dev", dev])
        run(["ip", "-n", ns, "link", "set", dev, "up"])


def add_address(ns: str, cidr: str, dev: str = "lo") -> None:
    run(["ip", "-n", ns, "addr", "add", cidr, "dev", dev])


def add_route(ns: str, dest: str, via: str) -> None:
    run(["ip", "-n", ns, "route", "add", dest, "via", via])


def enable_forwarding(ns: str) -> None:
    # net.ipv4.ip_forward is per namespace: this changes only the lab router's.
    run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], ns=ns)


def spawn(state: LabState, role: str, ns: str, argv: Sequence[str], *, log: Path,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Starts a long-running process inside a namespace and records its PID under `role`."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    state.remember_pid(role, proc.pid)
    return proc


def stop_pid(pid: int, *, grace: float = 3.0) -> None:
    """SIGTERM to the process group we started, then SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                waited, _ = os.waitpid(pid, os.WNOHANG)
                if waited == pid:
                    return
            except ChildProcessError:
                # Not our child (a `down` from another process): poll for its disappearance.
                if not Path(f"/proc/{pid}").exists():
                    return
            time.sleep(0.05)


def stop_role(state: LabState, role: str) -> None:
    pid = state.pids.get(role)
    if pid is not None:
        stop_pid(pid)
        state.forget_pid(role)


def namespace_pids(ns: str) -> list[int]:
    proc = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def teardown(state: LabState) -> list[str]:
    """Removes everything the lab made; returns what could not be removed (empty when clean).

    Order matters (see machine-notes): our PIDs, then anything still inside our namespaces (only
    processes `ip netns pids` reports for that namespace), then the namespaces, then /etc/netns/NS.
    """
    problems: list[str] = []
    for role in list(state.pids):
        stop_role(state, role)
    for ns in state.namespaces:
        for pid in namespace_pids(ns):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for ns in state.namespaces:
        # A just-killed process can hold the namespace a moment longer: retry briefly.
        for _ in range(20):
            if not (NETNS_RUN / ns).exists():
                break
            if run(["ip", "netns", "del", ns], check=False).returncode == 0:
                break
            time.sleep(0.1)
        if (NETNS_RUN / ns).exists():
            problems.append(f"namespace {ns} still exists")
    for d in state.etc_dirs:
        shutil.rmtree(d, ignore_errors=True)
        if Path(d).exists():
            problems.append(f"{d} still exists")
    state.namespaces.clear()
    state.etc_dirs.clear()
    state.save()
    if not problems:
        shutil.rmtree(state.state_dir, ignore_errors=True)
    return problems


def enter(ns: str) -> None:
    """Moves the calling thread (never the process) into namespace `ns`, for good: call it only from a
    thread made for the purpose. Threads it starts afterwards are born there too."""
    if threading.current_thread() is threading.main_thread():
        raise LabError("netns.enter would move the main thread out of the host namespace")
    libc = ctypes.CDLL(None, use_errno=True)
    with open(NETNS_RUN / ns) as f:
        if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {ns}")


def listen_in(ns: str, host: str, port: int) -> socket.socket:
    """A listening TCP socket inside namespace `ns`, for a server running in this (host-side) process.

    A thread that enters a namespace (setns) creates sockets there, and a socket stays in the namespace it
    was made in whichever thread later uses it. So the collector can run in-process, next to the store,
    while the probes reach it at a world address. The calling thread never leaves the host namespace.
    """
    result: dict[str, object] = {}

    def make() -> None:
        try:
            enter(ns)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(128)
            result["sock"] = s
        except OSError as exc:
            result["error"] = exc

    # A throwaway thread: it ends inside the lab namespace and takes that state with it.
    t = threading.Thread(target=make, name=f"listen-in-{ns}")
    t.start()
    t.join()
    if "error" in result:
        raise LabError(f"cannot listen on {host}:{port} in {ns}: {result['error']}")
    sock = result["sock"]
    assert isinstance(sock, socket.socket)
    return sock
