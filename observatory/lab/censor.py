"""The censor: a router namespace between the country's ISPs and the world, applying events with kernel tools.

Each event is one iptables chain (`OBS-E<n>`) jumped to from FORWARD (or nat PREROUTING), so applying and
lifting it is exact and never disturbs another event. By technique:

  dns_tampering     the affected ISPs' resolvers restart with `address=/domain/` (NXDOMAIN)
  tcp_reset         FORWARD -s <regions> -d <platform address> -p tcp -j REJECT --reject-with tcp-reset
  tcp_blackhole     the same with -j DROP
  tls_interference  FORWARD -p tcp --dport 443 -m string <SNI> -j REJECT tcp-reset: only the ClientHello that
                    names the platform is hit, another name on the same address passes (DROP: a timeout)
  tls_mitm          nat PREROUTING DNAT :443 to a server with a certificate from the censor's own CA
  http_blockpage    nat PREROUTING DNAT :80 and :443 to the censor's block-page server
  throttling        tc htb on the censor's ISP-facing links: a slow class for the platform's addresses
  unreachable       (connectivity_loss) the ISP router drops everything from the affected regions
  platform_outage   the world itself refuses the platform's connections (the control fails too)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from observatory import catalog
from observatory.errors import LabError
from observatory.lab import netns
from observatory.lab.isp import isp_ns, start_resolver
from observatory.lab.netns import LabState
from observatory.lab.plan import (
    BLOCKPAGE_ADDR,
    LabEvent,
    LabNetwork,
    LabPlan,
    platform_address,
    region_subnet,
)
from observatory.vocab import IncidentKind, Technique

THROTTLE_RATE = "200kbit"
MITM_PORT = 8443


def sni_patterns(domain: str) -> list[list[str]]:
    """iptables string matches for a name in a TLS ClientHello: the exact name (preceded by its two-byte
    length, as in the server_name extension) or any subdomain ('.x.com'). A bare substring would make
    't.co' match 'microsoft.com'."""
    exact = ["-m", "string", "--algo", "bm", "--hex-string", f"|{len(domain):04x}|{domain}"]
    sub = ["-m", "string", "--algo", "bm", "--string", f".{domain}"]
    return [exact, sub]


@dataclass
class Censor:
    state: LabState
    plan: LabPlan
    censor_ns: str
    world_ns: str
    tls_mode: str = "reset"  # "reset" or "drop" (a handshake timeout)
    active: dict[int, LabEvent] = field(default_factory=dict)

    # --- helpers ---

    def _ipt(self, ns: str, *args: str, table: str = "filter", check: bool = True) -> None:
        netns.run(["iptables", "-w", "-t", table, *args], ns=ns, check=check)

    def _chain(self, ns: str, ev: LabEvent, hooks: list[tuple[str, str]]) -> str:
        """A fresh chain for the event, jumped to from each (table, hook)."""
        chain = f"OBS-E{ev.index}"
        for table in dict.fromkeys(t for t, _ in hooks):
            self._ipt(ns, "-N", chain, table=table)
        for table, hook in hooks:
            self._ipt(ns, "-I", hook, "1", "-j", chain, table=table)
        return chain

    def _restore(self, ns: str, ev: LabEvent, rules: list[list[str]]) -> None:
        """The event's chain, its rules and its jump in one iptables-restore transaction: hundreds of SNI
        rules go in at once (not rule by rule), so the event starts when the scenario says."""
        chain = f"OBS-E{ev.index}"
        table, hook = self._hooks(ev)[0]
        lines = [f"*{table}", f":{chain} - [0:0]"]
        lines += [" ".join(["-A", chain, *rule]) for rule in rules]
        lines += [f"-I {hook} 1 -j {chain}", "COMMIT", ""]
        netns.run(["iptables-restore", "-w", "--noflush"], ns=ns, input="\n".join(lines))

    def _drop_chain(self, ns: str, ev: LabEvent, hooks: list[tuple[str, str]]) -> None:
        chain = f"OBS-E{ev.index}"
        for table, hook in hooks:
            self._ipt(ns, "-D", hook, "-j", chain, table=table, check=False)
        for table in dict.fromkeys(t for t, _ in hooks):
            self._ipt(ns, "-F", chain, table=table, check=False)
            self._ipt(ns, "-X", chain, table=table, check=False)

    def sources(self, ev: LabEvent) -> list[str]:
        return [str(region_subnet(n.index, r)) for n in self.plan.networks for r in ev.affected_regions(n)]

    def _hooks(self, ev: LabEvent) -> list[tuple[str, str]]:
        if ev.kind == IncidentKind.PLATFORM_OUTAGE:
            return [("filter", "INPUT")]
        if ev.kind == IncidentKind.CONNECTIVITY_LOSS:
            return [("filter", "INPUT"), ("filter", "FORWARD")]
        if ev.technique in (Technique.TLS_MITM, Technique.HTTP_BLOCKPAGE):
            return [("nat", "PREROUTING")]
        return [("filter", "FORWARD")]

    # --- the events ---

    def apply(self, ev: LabEvent) -> None:
        if ev.index in self.active:
            return
        self.active[ev.index] = ev
        if ev.kind == IncidentKind.PLATFORM_OUTAGE:
            chain = self._chain(self.world_ns, ev, self._hooks(ev))
            for p in ev.platforms:
                # Refused (ICMP port unreachable): a tcp-reset REJECT is not delivered to local clients,
                # and the control helper, which runs in the world, must see the outage too.
                self._ipt(self.world_ns, "-A", chain, "-d", platform_address(p), "-p", "tcp", "-j", "REJECT")
        elif ev.kind == IncidentKind.CONNECTIVITY_LOSS:
            for net in self._networks(ev):
                ns = isp_ns(self.plan.lab_id, net)
                chain = self._chain(ns, ev, self._hooks(ev))
                for r in ev.affected_regions(net):
                    self._ipt(ns, "-A", chain, "-s", str(region_subnet(net.index, r)), "-j", "DROP")
        elif ev.technique == Technique.DNS_TAMPERING:
            self._restart_resolvers(ev)
        elif ev.technique == Technique.THROTTLING or ev.kind == IncidentKind.THROTTLING:
            self._shape()
        else:
            self._restore(self.censor_ns, ev, self._rules(ev))

    def revert(self, ev: LabEvent) -> None:
        if self.active.pop(ev.index, None) is None:
            return
        if ev.kind == IncidentKind.PLATFORM_OUTAGE:
            self._drop_chain(self.world_ns, ev, self._hooks(ev))
        elif ev.kind == IncidentKind.CONNECTIVITY_LOSS:
            for net in self._networks(ev):
                self._drop_chain(isp_ns(self.plan.lab_id, net), ev, self._hooks(ev))
        elif ev.technique == Technique.DNS_TAMPERING:
            self._restart_resolvers(ev)
        elif ev.technique == Technique.THROTTLING or ev.kind == IncidentKind.THROTTLING:
            self._shape()
        else:
            self._drop_chain(self.censor_ns, ev, self._hooks(ev))

    def revert_all(self) -> None:
        for ev in list(self.active.values()):
            self.revert(ev)

    def _networks(self, ev: LabEvent) -> list[LabNetwork]:
        return [n for n in self.plan.networks if ev.affected_regions(n)]

    def _rules(self, ev: LabEvent) -> list[list[str]]:
        """The iptables rules (after `-A chain`) of a forward-path or NAT event."""
        rules: list[list[str]] = []
        for src in self.sources(ev):
            for p in ev.platforms:
                addr = platform_address(p)
                if ev.technique == Technique.TCP_RESET:
                    rules.append(["-s", src, "-d", addr, "-p", "tcp", "-j", "REJECT", "--reject-with",
                                  "tcp-reset"])
                elif ev.technique == Technique.TCP_BLACKHOLE:
                    rules.append(["-s", src, "-d", addr, "-p", "tcp", "-j", "DROP"])
                elif ev.technique == Technique.TLS_INTERFERENCE:
                    verdict = (["-j", "DROP"] if self.tls_mode == "drop"
                               else ["-j", "REJECT", "--reject-with", "tcp-reset"])
                    for domain in catalog.get(p).domains:
                        for match in sni_patterns(domain):
                            rules.append(["-s", src, "-p", "tcp", "--dport", "443", *match, *verdict])
                elif ev.technique == Technique.TLS_MITM:
                    rules.append(["-s", src, "-d", addr, "-p", "tcp", "--dport", "443", "-j", "DNAT",
                                  "--to-destination", f"{BLOCKPAGE_ADDR}:{MITM_PORT}"])
                elif ev.technique == Technique.HTTP_BLOCKPAGE:
                    for port in ("80", "443"):
                        rules.append(["-s", src, "-d", addr, "-p", "tcp", "--dport", port, "-j", "DNAT",
                                      "--to-destination", f"{BLOCKPAGE_ADDR}:{port}"])
                else:
                    raise LabError(f"event {ev.index}: the lab cannot apply technique {ev.technique!r}")
        return rules

    def _restart_resolvers(self, ev: LabEvent) -> None:
        """Each affected ISP's resolver restarts with the union of its active DNS events' lies."""
        for net in self._networks(ev):
            lies: dict[str, str | None] = {}
            for other in self.active.values():
                if other.technique == Technique.DNS_TAMPERING and other.affected_regions(net):
                    for p in other.platforms:
                        lies.update({d: None for d in catalog.get(p).domains})
            start_resolver(self.state, self.plan.lab_id, net, lies)

    def _shape(self) -> None:
        """Rebuilds every ISP link's qdisc from the active throttling events (tc has no per-event undo)."""
        for net in self.plan.networks:
            dev = f"i{net.index}"
            netns.run(["tc", "qdisc", "del", "dev", dev, "root"], ns=self.censor_ns, check=False)
            throttles = [e for e in self.active.values()
                         if (e.technique == Technique.THROTTLING or e.kind == IncidentKind.THROTTLING)
                         and e.affected_regions(net)]
            if not throttles:
                continue
            tc = ["tc"]
            netns.run([*tc, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1"],
                      ns=self.censor_ns)
            netns.run([*tc, "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate",
                       "10gbit"], ns=self.censor_ns)
            netns.run([*tc, "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate",
                       THROTTLE_RATE, "ceil", THROTTLE_RATE], ns=self.censor_ns)
            # A short queue: the sender sees loss and backs off, as behind a real shaper; the default
            # 1000-packet queue would hold a minute of backlog and stall even new connections.
            netns.run([*tc, "qdisc", "add", "dev", dev, "parent", "1:10", "handle", "10:", "pfifo", "limit",
                       "30"], ns=self.censor_ns)
            prio = 1
            for e in throttles:
                for r in e.affected_regions(net):
                    for p in e.platforms:
                        netns.run([*tc, "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio",
                                   str(prio), "u32", "match", "ip", "src", f"{platform_address(p)}/32",
                                   "match", "ip", "dst", str(region_subnet(net.index, r)), "flowid", "1:10"],
                                  ns=self.censor_ns)


def blockpage_html(country: str) -> str:
    """The block page the lab's censor serves: the simulator's page for the country when it has one."""
    from observatory.simulate.blockpages import blockpages_for

    pages = blockpages_for(country)
    if pages:
        return pages[0].body
    return ("<html><head><title>Site Restricted</title></head><body><h2>Surf Safely!</h2><p>This site is "
            "restricted.</p></body></html>")


def write_blockpage_root(base: Path, country: str) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    (base / "index.html").write_text(blockpage_html(country))
    return base
