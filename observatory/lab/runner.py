"""Bringing a lab up and down: the world, the censor and the ISPs, wired and serving.

`up(plan)` returns a `Lab` whose state file (under /run/observatory-lab/<id>/) records every namespace,
process and file as it is made; `down(lab_id)` and any failure during `up` remove all of it.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from observatory import catalog
from observatory.errors import LabError
from observatory.lab import netns
from observatory.lab.censor import MITM_PORT, Censor, write_blockpage_root
from observatory.lab.isp import build_isp, isp_ns, region_ns, start_resolver, wait_udp53
from observatory.lab.netns import STATE_ROOT, LabState
from observatory.lab.outside import write_blocks
from observatory.lab.plan import (
    BLOCKPAGE_ADDR,
    COLLECTOR_ADDR,
    HELPER_ADDR,
    SINKHOLE_ADDR,
    WORLD_CENSOR_CENSOR,
    WORLD_CENSOR_WORLD,
    WORLD_DNS,
    LabNetwork,
    LabPlan,
    isp_block,
    platform_address,
)
from observatory.lab.world import (
    CertFiles,
    all_domains,
    dnsmasq_argv,
    issue_cert,
    make_ca,
    nginx_conf,
    world_dns_addresses,
    write_platform_sites,
)


@dataclass
class Lab:
    """A lab that is up: its plan, its state, its censor, and where things are."""

    plan: LabPlan
    state: LabState
    censor: Censor
    ca_bundle: Path

    @property
    def world_ns(self) -> str:
        return world_ns(self.plan.lab_id)

    @property
    def censor_ns(self) -> str:
        return censor_ns(self.plan.lab_id)

    def isp_ns(self, net: LabNetwork) -> str:
        return isp_ns(self.plan.lab_id, net)

    def region_ns(self, net: LabNetwork, region_index: int) -> str:
        return region_ns(self.plan.lab_id, net, region_index)

    def down(self) -> list[str]:
        return netns.teardown(self.state)


def world_ns(lab_id: str) -> str:
    return f"{netns.PREFIX}{lab_id}-w"


def censor_ns(lab_id: str) -> str:
    return f"{netns.PREFIX}{lab_id}-c"


def state_dir(lab_id: str) -> Path:
    return STATE_ROOT / lab_id


def up(plan: LabPlan, *, tls_mode: str = "reset") -> Lab:
    """Builds and starts the whole lab; on any failure removes what was made and raises LabError."""
    reason = netns.namespaces_available()
    if reason:
        raise LabError(f"the lab cannot run here: {reason}")
    lab_id = plan.lab_id
    d = state_dir(lab_id)
    if (d / "state.json").exists():
        raise LabError(f"lab {lab_id!r} is already up (state in {d}): run `observatory lab down` first")
    if netns.lab_namespaces(lab_id):
        raise LabError(f"namespaces of lab {lab_id!r} exist without a state file: "
                       f"{', '.join(netns.lab_namespaces(lab_id))}; remove them with `ip netns del`")
    d.mkdir(parents=True, exist_ok=True)
    state = LabState(lab_id=lab_id, state_dir=str(d))
    state.save()
    try:
        return _build(plan, state, tls_mode)
    except BaseException:
        netns.teardown(state)
        raise


def _build(plan: LabPlan, state: LabState, tls_mode: str) -> Lab:
    lab_id = plan.lab_id
    d = Path(state.state_dir)
    w = state.add_namespace(world_ns(lab_id), resolver=WORLD_DNS)
    c = state.add_namespace(censor_ns(lab_id), resolver=WORLD_DNS)
    netns.veth(c, "w0", f"{WORLD_CENSOR_CENSOR}/30", w, "up0", f"{WORLD_CENSOR_WORLD}/30")
    platforms = [platform_address(p) for p in catalog.platform_ids()]
    for a in [WORLD_DNS, HELPER_ADDR, COLLECTOR_ADDR, *platforms]:
        netns.add_address(w, f"{a}/32")
    netns.run(["ip", "-n", w, "route", "add", "default", "via", WORLD_CENSOR_CENSOR])
    netns.enable_forwarding(c)
    netns.run(["ip", "-n", c, "route", "add", "198.18.0.0/16", "via", WORLD_CENSOR_WORLD])
    netns.run(["ip", "-n", c, "route", "add", "203.0.113.0/25", "via", WORLD_CENSOR_WORLD])
    # The bogus DNS answer leads nowhere, quickly.
    netns.run(["ip", "-n", c, "route", "add", "unreachable", f"{SINKHOLE_ADDR}/32"])
    netns.add_address(c, f"{BLOCKPAGE_ADDR}/32")
    for net in plan.networks:
        build_isp(state, lab_id, net, c)
        netns.run(["ip", "-n", c, "route", "add", isp_block(net.index), "via", net.resolver])
    write_blocks(plan, d / "blocks.csv")  # the regions' customer blocks, for `observatory pinger --blocks`
    state.info.update({"world_ns": w, "censor_ns": c, "dns": WORLD_DNS,
                       "helper": f"http://{HELPER_ADDR}:80", "collector": f"http://{COLLECTOR_ADDR}:80",
                       "blocks": str(d / "blocks.csv")})
    state.save()

    certs = d / "certs"
    certs.mkdir(exist_ok=True)
    ca_files, ca_key, ca_cert = make_ca(certs, "observatory lab CA")
    server = issue_cert(certs, "platforms", all_domains(), [], ca_key, ca_cert)
    # The censor's CA is trusted by no one: what a TLS interception box presents.
    _, ckey, ccert = make_ca(certs, "censor CA")
    fake = issue_cert(certs, "censor-fake", all_domains(), [], ckey, ccert)

    netns.spawn(state, "world-dns", w, dnsmasq_argv(listen=WORLD_DNS, pid_file=d / "world-dns.pid",
                                                      log_file=d / "world-dns.log",
                                                      addresses=world_dns_addresses()),
                log=d / "world-dns.out")
    sites = write_platform_sites(d / "www")
    _nginx(state, "world-www", w, server,
           listen=[platform_address(p) for p in catalog.platform_ids()], sites=sites,
           default_root=sites[next(iter(sites))])
    country = plan.networks[0].country
    block_root = write_blockpage_root(d / "blockpage", country)
    # The block page is served over HTTPS too, under a certificate the probes accept: a censor whose root
    # the devices trust (a state-mandated CA), as the simulator's http_blockpage shows (TLS ok, then the
    # page). The interception port presents the untrusted censor CA's certificate instead (tls_mitm).
    _nginx(state, "censor-blockpage", c, server, listen=[BLOCKPAGE_ADDR], sites={},
           default_root=str(block_root), mitm=(MITM_PORT, fake, str(d / "www" / "control")))
    for net in plan.networks:
        start_resolver(state, lab_id, net)
    wait_udp53(w, WORLD_DNS)
    _wait_tcp(w, [f"{platform_address(p)}:443" for p in catalog.platform_ids()])
    _wait_tcp(c, [f"{BLOCKPAGE_ADDR}:80", f"{BLOCKPAGE_ADDR}:{MITM_PORT}"])
    censor = Censor(state=state, plan=plan, censor_ns=c, world_ns=w, tls_mode=tls_mode)
    return Lab(plan=plan, state=state, censor=censor, ca_bundle=ca_files.cert)


def _nginx(state: LabState, role: str, ns: str, cert: CertFiles, *, listen: list[str], sites: dict[str, str],
           default_root: str, mitm: tuple[int, CertFiles, str] | None = None) -> None:
    prefix = Path(state.state_dir) / role
    prefix.mkdir(exist_ok=True)
    conf = nginx_conf(prefix=prefix, cert=cert, listen=listen, sites=sites,
                      default_root=default_root)
    if mitm:
        # The interception box: the real pages, under the censor's own certificate.
        port, fake, root = mitm
        block = (f"    server {{\n        listen {listen[0]}:{port} ssl;\n        server_name _;\n"
                 f"        ssl_certificate {fake.cert};\n        ssl_certificate_key {fake.key};\n"
                 f"        root {root};\n        location / {{ try_files $uri /index.html; }}\n    }}\n}}\n")
        conf = conf.rstrip().removesuffix("}") + block
    (prefix / "nginx.conf").write_text(conf)
    netns.spawn(state, role, ns, ["nginx", "-c", str(prefix / "nginx.conf"), "-p", str(prefix)],
                log=prefix / "out.log")


def _wait_tcp(ns: str, endpoints: list[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    missing = endpoints
    while time.monotonic() < deadline:
        out = netns.run(["ss", "-Hltn"], ns=ns, check=False).stdout
        missing = [e for e in endpoints if e not in out]
        if not missing:
            return
        time.sleep(0.05)
    raise LabError(f"servers did not start in {ns}: nothing listens on {', '.join(missing)}")


def down(lab_id: str) -> list[str]:
    """Removes a lab from its state file; falls back to its namespaces by name when the file is gone."""
    d = state_dir(lab_id)
    if (d / "state.json").exists():
        state = LabState.load(d)
    else:
        state = LabState(lab_id=lab_id, state_dir=str(d), namespaces=netns.lab_namespaces(lab_id),
                         etc_dirs=[str(netns.NETNS_ETC / n) for n in netns.lab_namespaces(lab_id)])
    problems = netns.teardown(state)
    if not problems and d.exists():
        shutil.rmtree(d, ignore_errors=True)
    return problems


def lab_processes(lab_id: str) -> list[int]:
    """PIDs of processes still running from a lab's state directory (for tests: should be none)."""
    marker = str(state_dir(lab_id))
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and int(p.name) != os.getpid():
            found.append(int(p.name))
    return found
