"""smtprelay.testing.DNSZone against dnspython's own resolver and query functions, on real wire."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from smtprelay.testing import DNSQuery, DNSZone
from support.network import loopback_address


@pytest.fixture
def zone() -> Iterator[DNSZone]:
    with DNSZone(default_ttl=300, negative_ttl=30) as z:
        z.mx("example.test", [(20, "mx2.example.test"), (10, "mx1.example.test")])
        z.a("mx1.example.test", "127.0.0.2")
        z.aaaa("mx1.example.test", "::1")
        z.a("mx2.example.test", ["127.0.0.3", "127.0.0.4"])
        yield z


@pytest.fixture
def resolver(zone: DNSZone) -> dns.resolver.Resolver:
    return zone.resolver(lifetime=1.0)


def ask(zone: DNSZone, name: str, rdtype: str, *, tcp: bool = False) -> dns.message.Message:
    """One raw query, to look at what the server really sent (flags, authority, additional)."""
    query = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(query, zone.host, port=zone.port, timeout=1.0)
    return dns.query.udp(query, zone.host, port=zone.port, timeout=1.0)


def test_mx_records_with_exchange_addresses_as_additional_data(
    zone: DNSZone, resolver: dns.resolver.Resolver
) -> None:
    answer = resolver.resolve("example.test", "MX")
    assert sorted((r.preference, r.exchange.to_text()) for r in answer) == [
        (10, "mx1.example.test."),
        (20, "mx2.example.test."),
    ]
    assert answer.rrset is not None
    assert answer.rrset.ttl == 300
    assert answer.response.flags & dns.flags.AA
    additional = {
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype)) for rrset in answer.response.additional
    }
    assert additional == {
        ("mx1.example.test.", "A"),
        ("mx1.example.test.", "AAAA"),
        ("mx2.example.test.", "A"),
    }


def test_a_and_aaaa(resolver: dns.resolver.Resolver) -> None:
    assert [r.address for r in resolver.resolve("mx1.example.test", "A")] == ["127.0.0.2"]
    assert [r.address for r in resolver.resolve("mx1.example.test", "AAAA")] == ["::1"]
    assert sorted(r.address for r in resolver.resolve("mx2.example.test", "A")) == ["127.0.0.3", "127.0.0.4"]


def test_null_mx(zone: DNSZone, resolver: dns.resolver.Resolver) -> None:
    zone.null_mx("nomail.test")
    [record] = resolver.resolve("nomail.test", "MX")
    assert (record.preference, record.exchange) == (0, dns.name.root)


def test_explicit_nxdomain_carries_the_zone_soa(zone: DNSZone, resolver: dns.resolver.Resolver) -> None:
    zone.a("gone.example.test", "127.0.0.9")
    zone.nxdomain("gone.example.test")
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("gone.example.test", "A")
    response = ask(zone, "gone.example.test", "MX")
    assert response.rcode() == dns.rcode.NXDOMAIN
    [soa] = response.authority
    assert (soa.name.to_text(), soa.rdtype, soa.ttl) == ("example.test.", dns.rdatatype.SOA, 30)
    assert soa[0].minimum == 30


def test_unknown_names_are_nxdomain_with_soa(zone: DNSZone, resolver: dns.resolver.Resolver) -> None:
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("nobody.example.test", "MX")
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("elsewhere.test", "MX")  # outside every zone the server knows
    response = ask(zone, "elsewhere.test", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.rdtype for rrset in response.authority] == [dns.rdatatype.SOA]


def test_existing_name_without_the_type_is_nodata_with_soa(
    zone: DNSZone, resolver: dns.resolver.Resolver
) -> None:
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("example.test", "A")  # the apex has MX only
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("mx2.example.test", "AAAA")
    response = ask(zone, "mx2.example.test", "AAAA")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    [soa] = response.authority
    assert (soa.name.to_text(), soa.ttl) == ("example.test.", 30)


def test_empty_non_terminal_is_nodata(zone: DNSZone, resolver: dns.resolver.Resolver) -> None:
    zone.a("host.dept.example.test", "127.0.0.5")
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("dept.example.test", "A")


def test_negative_answers_are_cached_by_a_caching_resolver(zone: DNSZone) -> None:
    resolver = zone.resolver(lifetime=1.0, cache=True)
    for _ in range(2):
        with pytest.raises(dns.resolver.NoAnswer):
            resolver.resolve("example.test", "AAAA")
        with pytest.raises(dns.resolver.NXDOMAIN):
            resolver.resolve("nobody.example.test", "A")
    assert len(zone.queries) == 2


def test_servfail(zone: DNSZone, resolver: dns.resolver.Resolver) -> None:
    zone.servfail("broken.test")
    with pytest.raises(dns.resolver.NoNameservers, match="SERVFAIL"):
        resolver.resolve("broken.test", "MX")
    assert ask(zone, "broken.test", "A").rcode() == dns.rcode.SERVFAIL


def test_servfail_for_one_type_only(zone: DNSZone, resolver: dns.resolver.Resolver) -> None:
    zone.servfail("mx1.example.test", "AAAA")
    with pytest.raises(dns.resolver.NoNameservers):
        resolver.resolve("mx1.example.test", "AAAA")
    assert [r.address for r in resolver.resolve("mx1.example.test", "A")] == ["127.0.0.2"]


def test_timeout_never_answers(zone: DNSZone) -> None:
    zone.timeout("slow.test")
    resolver = zone.resolver(lifetime=0.3)
    started = time.monotonic()
    with pytest.raises(dns.resolver.LifetimeTimeout):
        resolver.resolve("slow.test", "MX")
    assert time.monotonic() - started < 1.0
    assert {q.name for q in zone.queries} == {"slow.test"}  # asked (perhaps several times), never answered


def test_setting_records_clears_a_failure(zone: DNSZone, resolver: dns.resolver.Resolver) -> None:
    zone.timeout("flaky.test")
    zone.mx("flaky.test", [(10, "mx1.example.test")])
    assert len(resolver.resolve("flaky.test", "MX")) == 1


def test_large_answer_is_truncated_over_udp_and_retried_over_tcp(
    zone: DNSZone, resolver: dns.resolver.Resolver
) -> None:
    addresses = [f"127.0.1.{i}" for i in range(1, 61)]  # 60 A records: well over 512 bytes
    zone.a("big.example.test", addresses)
    truncated = ask(zone, "big.example.test", "A")
    assert truncated.flags & dns.flags.TC
    zone.clear_queries()
    answer = resolver.resolve("big.example.test", "A")
    assert sorted(r.address for r in answer) == sorted(addresses)
    assert zone.queries == (
        DNSQuery("big.example.test", "A", "udp"),
        DNSQuery("big.example.test", "A", "tcp"),
    )


def test_edns_payload_size_lets_a_large_answer_through_udp(zone: DNSZone) -> None:
    zone.a("big.example.test", [f"127.0.1.{i}" for i in range(1, 61)])
    resolver = zone.resolver(lifetime=1.0)
    resolver.use_edns(0, 0, 4096)
    assert len(resolver.resolve("big.example.test", "A")) == 60
    assert [q.transport for q in zone.queries] == ["udp"]


def test_additional_data_is_dropped_before_truncating(zone: DNSZone) -> None:
    hosts = [(10, f"mx{i}.many.test") for i in range(12)]
    zone.mx("many.test", hosts)
    for _, host in hosts:
        zone.aaaa(host, ["::1", "::2"])
    response = ask(zone, "many.test", "MX")
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == 12
    assert len(response.to_wire()) <= 512


def test_tcp_queries(zone: DNSZone) -> None:
    response = ask(zone, "example.test", "MX", tcp=True)
    assert len(response.answer[0]) == 2
    assert zone.queries[-1] == DNSQuery("example.test", "MX", "tcp")


def test_cname_is_chased(zone: DNSZone, resolver: dns.resolver.Resolver) -> None:
    zone.cname("alias.test", "www.example.test")
    zone.cname("www.example.test", "example.test")
    answer = resolver.resolve("alias.test", "MX")
    assert answer.canonical_name.to_text() == "example.test."
    assert len(answer) == 2
    response = ask(zone, "alias.test", "MX")
    assert [dns.rdatatype.to_text(rrset.rdtype) for rrset in response.answer] == ["CNAME", "CNAME", "MX"]
    assert [rrset[0].to_text() for rrset in resolver.resolve("alias.test", "CNAME").response.answer] == [
        "www.example.test."
    ]


def test_cname_to_a_missing_name_is_nxdomain_with_the_chain(
    zone: DNSZone, resolver: dns.resolver.Resolver
) -> None:
    zone.cname("dangling.example.test", "nowhere.example.test")
    response = ask(zone, "dangling.example.test", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN  # RFC 6604: the rcode is the last name's
    assert [rrset.rdtype for rrset in response.answer] == [dns.rdatatype.CNAME]
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("dangling.example.test", "A")


def test_cname_loop_terminates(zone: DNSZone) -> None:
    zone.cname("a.loop.test", "b.loop.test")
    zone.cname("b.loop.test", "a.loop.test")
    response = ask(zone, "a.loop.test", "A")
    assert [rrset.rdtype for rrset in response.answer] == [dns.rdatatype.CNAME, dns.rdatatype.CNAME]


def test_cname_and_other_data_cannot_share_a_name(zone: DNSZone) -> None:
    zone.cname("alias.test", "example.test")
    with pytest.raises(ValueError, match="CNAME"):
        zone.a("alias.test", "127.0.0.1")
    with pytest.raises(ValueError, match="CNAME"):
        zone.records("mx1.example.test", "CNAME", ["example.test"])
    zone.cname("mx1.example.test", "example.test")  # cname() replaces what was there


def test_records_change_while_running(zone: DNSZone, resolver: dns.resolver.Resolver) -> None:
    assert [r.address for r in resolver.resolve("mx1.example.test", "A")] == ["127.0.0.2"]
    zone.a("mx1.example.test", "127.0.0.7")
    assert [r.address for r in resolver.resolve("mx1.example.test", "A")] == ["127.0.0.7"]
    zone.remove("mx1.example.test", "A")
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("mx1.example.test", "A")
    zone.remove("mx1.example.test")
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("mx1.example.test", "AAAA")


def test_changes_from_another_thread_while_queries_run(
    zone: DNSZone, resolver: dns.resolver.Resolver
) -> None:
    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            zone.a("churn.example.test", f"127.0.2.{n % 200 + 1}")
            n += 1
            stop.wait(0.0005)  # leave the GIL to the server and the resolver now and then

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        for _ in range(30):
            assert len(resolver.resolve("churn.example.test", "A")) == 1
    finally:
        stop.set()
        writer.join()


def test_query_log(zone: DNSZone, resolver: dns.resolver.Resolver) -> None:
    assert list(zone.queries) == []  # nothing asked yet: a test can prove no DNS query was made
    resolver.resolve("Example.TEST", "MX")
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("mx2.example.test", "AAAA")
    assert zone.queries == (
        DNSQuery("example.test", "MX", "udp"),
        DNSQuery("mx2.example.test", "AAAA", "udp"),
    )
    assert zone.queries_for("EXAMPLE.test") == (DNSQuery("example.test", "MX", "udp"),)
    assert zone.queries_for("mx2.example.test", "A") == ()
    zone.clear_queries()
    assert list(zone.queries) == []


def test_names_are_case_insensitive(zone: DNSZone, resolver: dns.resolver.Resolver) -> None:
    zone.a("MiXeD.Example.Test.", "127.0.0.8")
    assert [r.address for r in resolver.resolve("mixed.EXAMPLE.test", "A")] == ["127.0.0.8"]


def test_unicode_names_are_stored_in_idna_form(zone: DNSZone, resolver: dns.resolver.Resolver) -> None:
    zone.mx("bücher.test", [(10, "mx.bücher.test")])
    zone.a("mx.bücher.test", "127.0.0.6")
    [record] = resolver.resolve("xn--bcher-kva.test", "MX")
    assert record.exchange.to_text() == "mx.xn--bcher-kva.test."
    assert [r.address for r in resolver.resolve("mx.BÜCHER.test", "A")] == ["127.0.0.6"]
    assert {q.name for q in zone.queries} == {"xn--bcher-kva.test", "mx.xn--bcher-kva.test"}


def test_ttls(zone: DNSZone, resolver: dns.resolver.Resolver) -> None:
    zone.a("short.example.test", "127.0.0.1", ttl=5)
    answer = resolver.resolve("short.example.test", "A")
    assert answer.rrset is not None
    assert answer.rrset.ttl == 5
    with pytest.raises(ValueError, match="TTL"):
        zone.a("x.example.test", "127.0.0.1", ttl=-1)


def test_txt_and_generic_records(zone: DNSZone, resolver: dns.resolver.Resolver) -> None:
    zone.txt("_mta-sts.example.test", 'v=STSv1; id="2024"')
    [txt] = resolver.resolve("_mta-sts.example.test", "TXT")
    assert txt.strings == (b'v=STSv1; id="2024"',)
    zone.records("_25._tcp.mx1.example.test", "TLSA", ["3 1 1 " + "ab" * 32])
    [tlsa] = resolver.resolve("_25._tcp.mx1.example.test", "TLSA")
    assert (tlsa.usage, tlsa.selector, tlsa.mtype) == (3, 1, 1)
    with pytest.raises(ValueError, match="invalid A record"):
        zone.records("bad.example.test", "A", ["not-an-address"])


def test_soa_at_the_zone_apex(resolver: dns.resolver.Resolver) -> None:
    [soa] = resolver.resolve("example.test", "SOA")
    assert soa.mname.to_text() == "ns.example.test."


def test_malformed_query_gets_formerr(zone: DNSZone) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.connect((zone.host, zone.port))
        sock.send(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff")  # a question cut short
        reply = sock.recv(512)
    assert reply[:2] == b"\x12\x34"
    assert reply[2] & 0x80  # QR
    assert reply[3] & 0x0F == dns.rcode.FORMERR


def test_ipv6_loopback() -> None:
    with DNSZone("::1") as zone:
        zone.a("v6.test", "127.0.0.1")
        assert [r.address for r in zone.resolver(lifetime=1.0).resolve("v6.test", "A")] == ["127.0.0.1"]


def test_given_loopback_address_and_port() -> None:
    host = loopback_address()
    with DNSZone(host) as first:
        port = first.port
    with DNSZone(host, port) as zone:
        zone.a("fixed.test", "127.0.0.1")
        assert (zone.host, zone.port) == (host, port)
        assert len(zone.resolver().resolve("fixed.test", "A")) == 1


def test_only_loopback_addresses() -> None:
    with pytest.raises(ValueError, match="loopback"):
        DNSZone("0.0.0.0")


def test_stop_joins_the_thread_and_closes_the_sockets() -> None:
    before = set(threading.enumerate())
    zone = DNSZone().start()
    host, port = zone.host, zone.port
    assert zone.running
    zone.stop()
    zone.stop()  # idempotent
    assert set(threading.enumerate()) == before
    # The port is free again, on both transports.
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind((host, port))


def test_resolver_needs_a_started_zone() -> None:
    with pytest.raises(RuntimeError, match="start"):
        DNSZone().resolver()


def test_dnszone_works_without_aiosmtpd() -> None:
    code = (
        "import sys; sys.modules['aiosmtpd'] = None; sys.modules['aiosmtpd.smtp'] = None\n"
        "from smtprelay.testing import DNSZone, LocalMX\n"
        "with DNSZone() as z:\n"
        "    z.a('a.test', '127.0.0.1')\n"
        "    print(z.resolver().resolve('a.test', 'A')[0].address)\n"
        "try:\n"
        "    LocalMX()\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.splitlines() == [
        "127.0.0.1",
        "LocalMX needs aiosmtpd: pip install 'smtprelay[testing]'",
    ]
