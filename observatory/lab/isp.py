"""An ISP of the emulated country: a router namespace with its own resolver, and one host namespace per region.
Each region host also holds the region's answering customer addresses (what the outside-in pinger sees).

The resolver is a dnsmasq forwarding to the world's DNS, so DNS tampering is done where real ISPs do it:
the resolver is restarted with `address=` lines (dnsmasq does not reload them on SIGHUP). The region hosts are
where the probes run; their traffic reaches the world through the ISP router and then the censor.
"""

from __future__ import annotations

from pathlib import Path

from observatory.lab import netns
from observatory.lab.netns import LabState
from observatory.lab.plan import WORLD_DNS, LabNetwork, customer_hosts, isp_uplink, region_subnet
from observatory.lab.world import dnsmasq_argv


def isp_ns(lab_id: str, net: LabNetwork) -> str:
    return f"{netns.PREFIX}{lab_id}-i{net.index}"


def region_ns(lab_id: str, net: LabNetwork, region_index: int) -> str:
    return f"{netns.PREFIX}{lab_id}-i{net.index}r{region_index}"


def region_host(net: LabNetwork, region_index: int) -> str:
    return str(region_subnet(net.index, region_index)[2])


def build_isp(state: LabState, lab_id: str, net: LabNetwork, censor_ns: str) -> None:
    """The ISP router (uplink to the censor), its region hosts, and routes both ways."""
    isp = state.add_namespace(isp_ns(lab_id, net), resolver=net.resolver)
    censor_side, isp_side = isp_uplink(net.index)
    netns.veth(censor_ns, f"i{net.index}", f"{censor_side}/30", isp, "up0", f"{isp_side}/30")
    netns.run(["ip", "-n", isp, "route", "add", "default", "via", censor_side])
    netns.enable_forwarding(isp)
    for r, _name in enumerate(net.regions):
        subnet = region_subnet(net.index, r)
        host = state.add_namespace(region_ns(lab_id, net, r), resolver=net.resolver)
        netns.veth(isp, f"r{r}", f"{subnet[1]}/24", host, "up0", f"{subnet[2]}/24")
        netns.run(["ip", "-n", host, "route", "add", "default", "via", str(subnet[1])])
        # the region's customers, as seen from outside: addresses that answer pings and SYNs (the host's own)
        batch = "".join(f"addr add {a}/32 dev lo\n" for a in customer_hosts(net.index, r))
        netns.run(["ip", "-n", host, "-batch", "-"], input=batch)


def start_resolver(state: LabState, lab_id: str, net: LabNetwork,
                   tampered: dict[str, str | None] | None = None) -> None:
    """(Re)starts the ISP's resolver; `tampered` maps domains to a bogus answer (None = NXDOMAIN)."""
    role = f"resolver-i{net.index}"
    netns.stop_role(state, role)
    d = Path(state.state_dir)
    argv = dnsmasq_argv(listen=net.resolver, pid_file=d / f"{role}.pid", log_file=d / f"{role}.log",
                        addresses=tampered or {}, upstream=WORLD_DNS)
    netns.spawn(state, role, isp_ns(lab_id, net), argv, log=d / f"{role}.out")
    wait_udp53(isp_ns(lab_id, net), net.resolver)


def wait_udp53(ns: str, address: str, timeout: float = 5.0) -> None:
    """Waits until a DNS server answers at address:53 inside `ns` (a restart must not race the probes)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = netns.run(["ss", "-Hlun", f"src {address}:53"], ns=ns, check=False).stdout
        if out.strip():
            return
        time.sleep(0.05)
    from observatory.errors import LabError

    raise LabError(f"no DNS server came up on {address}:53 in {ns} (see the lab's *.log files)")
