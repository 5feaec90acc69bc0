"""DNS lookups: the system resolver (getaddrinfo, in a thread) and a chosen resolver over UDP (dnspython)."""

from __future__ import annotations

import asyncio
import socket

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from observatory.failure import (
    DNS_NO_ANSWER,
    DNS_NXDOMAIN,
    DNS_REFUSED,
    DNS_SERVER_FAILURE,
    failure_from_exception,
)
from observatory.measurement import DNSAnswer, DNSQuery
from observatory.probe.net import Clock, NetConfig, split_endpoint

_RCODE_FAILURES = {
    dns.rcode.NXDOMAIN: DNS_NXDOMAIN,
    dns.rcode.REFUSED: DNS_REFUSED,
    dns.rcode.SERVFAIL: DNS_SERVER_FAILURE,
}


def addresses(query: DNSQuery) -> list[str]:
    """The IPv4 addresses a query answered, in answer order."""
    return [a.ipv4 for a in query.answers or () if a.ipv4]


async def system_lookup(host: str, *, cfg: NetConfig, clock: Clock) -> DNSQuery:
    """What the operating system's resolver answers for `host` (A records)."""
    q = DNSQuery(hostname=host, query_type="A", engine="system", resolver_address="", t0=clock())
    try:
        if cfg.system_resolve is not None:
            ips = await asyncio.wait_for(cfg.system_resolve(host), cfg.dns_timeout)
        else:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_STREAM),
                cfg.dns_timeout,
            )
            ips = list(dict.fromkeys(str(info[4][0]) for info in infos))
    except (OSError, TimeoutError) as exc:
        q.failure = failure_from_exception(exc)
    else:
        q.answers = [DNSAnswer(answer_type="A", ipv4=ip) for ip in ips]
    q.t = clock()
    return q


async def udp_lookup(host: str, resolver: str, *, cfg: NetConfig, clock: Clock) -> DNSQuery:
    """An A query for `host` sent over UDP to `resolver` ("IP:PORT"); rcodes become OONI failures."""
    ip, port = split_endpoint(resolver)
    q = DNSQuery(hostname=host, query_type="A", engine="udp", resolver_address=resolver, t0=clock())
    try:
        request = dns.message.make_query(host, dns.rdatatype.A)
        response = await dns.asyncquery.udp(request, ip, port=port, timeout=cfg.dns_timeout)
    except (OSError, TimeoutError, dns.exception.DNSException) as exc:
        q.failure = failure_from_exception(exc)
        q.t = clock()
        return q
    q.t = clock()
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        q.failure = _RCODE_FAILURES.get(rcode, DNS_SERVER_FAILURE)
        return q
    answers: list[DNSAnswer] = []
    for rrset in response.answer:
        for rd in rrset:
            if rd.rdtype == dns.rdatatype.A:
                answers.append(DNSAnswer(answer_type="A", ipv4=rd.address, ttl=rrset.ttl))
            elif rd.rdtype == dns.rdatatype.CNAME:
                answers.append(DNSAnswer(answer_type="CNAME", hostname=str(rd.target).rstrip("."), ttl=rrset.ttl))
    if not any(a.ipv4 for a in answers):
        q.failure = DNS_NO_ANSWER
    q.answers = answers or None
    return q
