"""The outbound request-forgery (SSRF) guard: which addresses deliveries may reach, in every spelling.

Only ever connects to 127.0.0.1 (localhost): the delivery client's tests show the guard refusing before any
connection is made. Everything else is pure or uses a fake resolver.
"""

from __future__ import annotations

import asyncio
import pickle
import platform
import re
import socket
import ssl
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import LOCALHOST_REFUSED
from webhook_service.dispatch.guard import BlockedAddress, GuardedResolver, check_url_host, dns_resolver
from webhook_service.dispatch.http import ClientConnectorDNSError, HttpClient
from webhook_service.domain.network import BLOCKED_HINT, Network, blocked_range, literal_address, parse_networks

LOOPBACK = parse_networks(["127.0.0.0/8", "::1/128"])

# (address, a fragment of the message naming the range). One or more addresses per range, in each form.
BLOCKED = [
    # IPv4
    ("0.0.0.0", "0.0.0.0/8 (unspecified"),
    ("0.1.2.3", "0.0.0.0/8 (unspecified"),
    ("10.0.0.1", "10.0.0.0/8 (private)"),
    ("10.255.255.255", "10.0.0.0/8 (private)"),
    ("100.64.0.1", "100.64.0.0/10 (carrier-grade NAT)"),
    ("100.127.255.254", "100.64.0.0/10 (carrier-grade NAT)"),
    ("100.100.100.200", "100.64.0.0/10 (carrier-grade NAT)"),
    ("127.0.0.1", "127.0.0.0/8 (loopback)"),
    ("127.255.255.254", "127.0.0.0/8 (loopback)"),
    ("169.254.169.254", "169.254.0.0/16 (link-local, cloud metadata)"),
    ("169.254.0.1", "169.254.0.0/16 (link-local, cloud metadata)"),
    ("172.16.0.1", "172.16.0.0/12 (private)"),
    ("172.31.255.255", "172.16.0.0/12 (private)"),
    ("192.0.0.1", "192.0.0.0/24 (IETF protocol assignments)"),
    ("192.0.0.8", "192.0.0.0/24 (IETF protocol assignments)"),  # is_global says True on 3.11
    ("192.0.0.170", "192.0.0.0/24 (IETF protocol assignments)"),
    ("192.0.2.1", "192.0.2.0/24 (documentation)"),
    ("192.88.99.1", "192.88.99.0/24 (deprecated 6to4 relay anycast)"),
    ("192.168.1.1", "192.168.0.0/16 (private)"),
    ("198.18.0.1", "198.18.0.0/15 (benchmarking)"),
    ("198.19.255.255", "198.18.0.0/15 (benchmarking)"),
    ("198.51.100.7", "198.51.100.0/24 (documentation)"),
    ("203.0.113.9", "203.0.113.0/24 (documentation)"),
    ("224.0.0.1", "224.0.0.0/4 (multicast)"),
    ("224.0.1.1", "224.0.0.0/4 (multicast)"),  # is_global says True
    ("239.255.255.250", "224.0.0.0/4 (multicast)"),
    ("240.0.0.1", "240.0.0.0/4 (reserved)"),
    ("255.255.255.254", "240.0.0.0/4 (reserved)"),
    ("255.255.255.255", "255.255.255.255/32 (broadcast)"),
    # IPv6
    ("::", "::/128 (unspecified)"),
    ("::1", "::1/128 (loopback)"),
    ("100::1", "100::/64 (discard-only)"),
    ("2001::1", "2001::/32 (Teredo)"),
    ("2001:2::1", "2001:2::/48 (benchmarking)"),
    ("2001:10::1", "2001:10::/28 (deprecated ORCHID)"),
    ("2001:100::1", "2001::/23 (IETF protocol assignments)"),
    ("2001:db8::1", "2001:db8::/32 (documentation)"),
    ("3fff::1", "3fff::/20 (documentation)"),
    ("5f00::1", "5f00::/16 (SRv6 segment identifiers)"),
    ("fc00::1", "fc00::/7 (private, unique-local)"),
    ("fd00:ec2::254", "fc00::/7 (private, unique-local)"),
    ("fe80::1", "fe80::/10 (link-local)"),
    ("fe80::1%eth0", "fe80::/10 (link-local)"),
    ("febf::1", "fe80::/10 (link-local)"),
    ("fec0::1", "fec0::/10 (deprecated site-local)"),  # is_global says True on 3.11
    ("ff02::1", "ff00::/8 (multicast)"),
    ("ff0e::1", "ff00::/8 (multicast)"),  # global-scope multicast
    ("64:ff9b:1::a00:1", "64:ff9b:1::/48 (local-use NAT64)"),
    ("::808:808", "::/96 (deprecated IPv4-compatible)"),
    ("4000::1", "is not a public address"),  # reserved by the IETF, no named range
    # IPv4-mapped
    ("::ffff:10.0.0.1", "::ffff:10.0.0.1 maps to 10.0.0.1, in 10.0.0.0/8 (private)"),
    ("::ffff:127.0.0.1", "::ffff:127.0.0.1 maps to 127.0.0.1, in 127.0.0.0/8 (loopback)"),
    ("::ffff:169.254.169.254", "maps to 169.254.169.254, in 169.254.0.0/16 (link-local, cloud metadata)"),
    ("::ffff:0.0.0.0", "maps to 0.0.0.0, in 0.0.0.0/8"),
    ("::ffff:100.64.0.1", "maps to 100.64.0.1, in 100.64.0.0/10 (carrier-grade NAT)"),
    ("::ffff:224.0.0.1", "maps to 224.0.0.1, in 224.0.0.0/4 (multicast)"),
    ("::ffff:255.255.255.255", "in 255.255.255.255/32 (broadcast)"),
    # IPv4-compatible (deprecated)
    ("::127.0.0.1", "::127.0.0.1 embeds 127.0.0.1, in 127.0.0.0/8 (loopback)"),
    ("::10.0.0.1", "::10.0.0.1 embeds 10.0.0.1, in 10.0.0.0/8 (private)"),
    # NAT64
    ("64:ff9b::7f00:1", "64:ff9b::127.0.0.1 translates to 127.0.0.1, in 127.0.0.0/8 (loopback)"),
    ("64:ff9b::169.254.169.254", "translates to 169.254.169.254, in 169.254.0.0/16 (link-local, cloud metadata)"),
    ("64:ff9b::192.168.0.1", "translates to 192.168.0.1, in 192.168.0.0/16 (private)"),
    # 6to4
    ("2002:7f00:1::", "2002:7f00:1:: embeds 127.0.0.1, in 127.0.0.0/8 (loopback)"),
    ("2002:a9fe:a9fe::1", "embeds 169.254.169.254, in 169.254.0.0/16 (link-local, cloud metadata)"),
    ("2002:c0a8:101::1", "embeds 192.168.1.1, in 192.168.0.0/16 (private)"),
    ("2002:6440:1::", "embeds 100.64.0.1, in 100.64.0.0/10 (carrier-grade NAT)"),
]

PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.1",
    "192.31.196.1",  # AS112, globally reachable
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450:4001::1",
    "::ffff:93.184.216.34",  # mapped public: reaches the public IPv4 address
    "64:ff9b::808:808",  # NAT64 of a public address
    "2002:808:808::1",  # 6to4 of a public address
]


@pytest.mark.parametrize(("text", "fragment"), BLOCKED)
def test_non_public_addresses_are_blocked_with_their_range_named(text: str, fragment: str) -> None:
    reason = blocked_range(ip_address(text), ())
    assert reason is not None, text
    assert fragment in reason


@given(st.integers(0, 2**32 - 1))
def test_no_non_public_ipv4_address_slips_through(number: int) -> None:
    address = IPv4Address(number)
    if blocked_range(address, ()) is None:
        assert address.is_global and not address.is_multicast and not address.is_reserved


@given(st.integers(0, 2**128 - 1))
def test_no_non_public_ipv6_address_slips_through(number: int) -> None:
    address = IPv6Address(number)
    if blocked_range(address, ()) is None:
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in IPv6Network("64:ff9b::/96"):
            embedded = IPv4Address(number & 0xFFFFFFFF)
        if embedded is None:
            assert address.is_global and not address.is_multicast and not address.is_reserved
        else:
            assert blocked_range(embedded, ()) is None


@given(st.integers(0, 2**32 - 1), st.sampled_from(["::ffff:{}", "64:ff9b::{}", "::{}"]))
def test_ipv6_forms_of_an_ipv4_address_are_judged_like_it(number: int, form: str) -> None:
    ipv4 = IPv4Address(number)
    reason = blocked_range(IPv6Address(form.format(ipv4)), ())
    if form == "::{}" and number > 1:  # IPv4-compatible: deprecated, always blocked, naming the IPv4 range
        assert reason is not None
    if blocked_range(ipv4, ()) is not None:
        assert reason is not None
    elif form != "::{}":
        assert reason is None
    sixtofour = IPv6Address((0x2002 << 112) | (number << 80) | 1)
    assert (blocked_range(sixtofour, ()) is None) == (blocked_range(ipv4, ()) is None)


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_pass(text: str) -> None:
    assert blocked_range(ip_address(text), ()) is None


def test_messages_read_as_specified() -> None:
    assert blocked_range(ip_address("127.0.0.1"), ()) == "127.0.0.1 is in 127.0.0.0/8 (loopback)"
    assert (
        blocked_range(ip_address("169.254.169.254"), ())
        == "169.254.169.254 is in 169.254.0.0/16 (link-local, cloud metadata)"
    )
    assert (
        blocked_range(ip_address("::ffff:10.0.0.1"), ()) == "::ffff:10.0.0.1 maps to 10.0.0.1, in 10.0.0.0/8 (private)"
    )
    assert blocked_range(ip_address("4000::1"), ()) == "4000::1 is not a public address"


def test_allow_list_opens_loopback_in_every_form() -> None:
    for text in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::"]:
        assert blocked_range(ip_address(text), LOOPBACK) is None, text


def test_allow_list_opens_only_what_it_names() -> None:
    for text in ["10.0.0.1", "169.254.169.254", "::ffff:10.0.0.1", "fe80::1", "::"]:
        assert blocked_range(ip_address(text), LOOPBACK) is not None, text
    private = parse_networks(["10.1.0.0/16"])
    assert blocked_range(ip_address("10.1.2.3"), private) is None
    assert blocked_range(ip_address("::ffff:10.1.2.3"), private) is None
    assert blocked_range(ip_address("10.2.0.1"), private) == "10.2.0.1 is in 10.0.0.0/8 (private)"
    # An IPv4 network never matches an IPv6 address that is not a form of one of its addresses.
    assert blocked_range(ip_address("fc00::1"), parse_networks(["0.0.0.0/0"])) is not None


# (host, address) for every spelling of a literal.
LITERALS: list[tuple[str, IPv4Address | IPv6Address]] = [
    ("127.0.0.1", IPv4Address("127.0.0.1")),
    ("2130706433", IPv4Address("127.0.0.1")),
    ("0x7f000001", IPv4Address("127.0.0.1")),
    ("0X7F000001", IPv4Address("127.0.0.1")),
    ("017700000001", IPv4Address("127.0.0.1")),
    ("0177.0.0.1", IPv4Address("127.0.0.1")),
    ("0177.0.0.01", IPv4Address("127.0.0.1")),
    ("0x7f.0x0.0x0.0x1", IPv4Address("127.0.0.1")),
    ("127.1", IPv4Address("127.0.0.1")),
    ("127.0.1", IPv4Address("127.0.0.1")),
    ("0x7f.1", IPv4Address("127.0.0.1")),
    ("0x7f.0.1", IPv4Address("127.0.0.1")),
    ("0", IPv4Address("0.0.0.0")),
    ("00", IPv4Address("0.0.0.0")),
    ("0x0", IPv4Address("0.0.0.0")),
    ("10.0x10000", IPv4Address("10.1.0.0")),
    ("169.254.43518", IPv4Address("169.254.169.254")),
    ("2852039166", IPv4Address("169.254.169.254")),
    ("0xa9fea9fe", IPv4Address("169.254.169.254")),
    ("4294967295", IPv4Address("255.255.255.255")),
    ("255.16777215", IPv4Address("255.255.255.255")),
    ("010.0.0.1", IPv4Address("8.0.0.1")),  # octal, not ten
    ("93.184.216.34", IPv4Address("93.184.216.34")),
    ("::1", IPv6Address("::1")),
    ("[::1]", IPv6Address("::1")),
    ("[::ffff:127.0.0.1]", IPv6Address("::ffff:7f00:1")),
    ("::ffff:7f00:1", IPv6Address("::ffff:7f00:1")),
    ("[2606:4700::1111]", IPv6Address("2606:4700::1111")),
    ("fe80::1%eth0", IPv6Address("fe80::1%eth0")),
    ("[fe80::1%25eth0]", IPv6Address("fe80::1%eth0")),
]

NOT_LITERALS = [
    "localhost",
    "example.com",
    "LOCALHOST",
    "127.0.0.1.example.com",
    "1.2.3.4.5",
    "0x",
    "0x.1",
    "0xg",
    "0x7f.0xg",
    "08",
    "09.0.0.1",
    "256.0.0.1",
    "1.256.0.1",
    "1.2.65536",
    "1.16777216",
    "4294967296",
    "0x100000000",
    "1" * 5000,
    "",
    ".",
    "1..2",
    ".1",
    "1.",
    "127.0.0.1.",
    " 127.0.0.1",
    "127.0.0.1 ",
    "+1",
    "-1",
    "١٢٧.0.0.1",  # non-ASCII digits
    "[127.0.0.1]",
    "[::1",
    "::1]",
    "[example.com]",
    ":::1",
    "[]",
]


@pytest.mark.parametrize(("host", "expected"), LITERALS)
def test_literal_address_reads_every_spelling(host: str, expected: IPv4Address | IPv6Address) -> None:
    assert literal_address(host) == expected


@pytest.mark.parametrize("host", NOT_LITERALS)
def test_literal_address_refuses_names_and_garbage(host: str) -> None:
    assert literal_address(host) is None


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="compares with glibc's inet_aton")
@given(st.text(alphabet="0123456789abcdefxX.", max_size=24))
def test_literal_ipv4_matches_glibc_inet_aton(host: str) -> None:
    try:
        expected: IPv4Address | None = IPv4Address(socket.inet_aton(host))
    except OSError:
        expected = None
    assert literal_address(host) == expected


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="compares with glibc's inet_aton")
@pytest.mark.parametrize(("host", "expected"), [(h, a) for h, a in LITERALS if isinstance(a, IPv4Address)])
def test_literal_spellings_agree_with_glibc(host: str, expected: IPv4Address) -> None:
    assert IPv4Address(socket.inet_aton(host)) == expected


def test_parse_networks() -> None:
    assert parse_networks([]) == ()
    assert [str(n) for n in parse_networks(["127.0.0.0/8", "::1/128"])] == ["127.0.0.0/8", "::1/128"]
    assert [str(n) for n in parse_networks(["10.0.0.0/8, fd00::/8", " ", "192.168.1.1"])] == [
        "10.0.0.0/8",
        "fd00::/8",
        "192.168.1.1/32",
    ]


@pytest.mark.parametrize("value", ["10.0.0.0/33", "10.0.0.1/8", "example.com", "10.0.0.0/8,nope", "fd00::/129", "1/2"])
def test_parse_networks_names_the_bad_item(value: str) -> None:
    with pytest.raises(ValueError, match=r"is not a network in CIDR form such as 10\.0\.0\.0/8"):
        parse_networks([value])


def test_check_url_host_blocks_literal_hosts_in_any_spelling() -> None:
    for url in [
        "http://127.0.0.1/",
        "http://2130706433:8080/x",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "https://0x7f.1/",
        "http://[::1]:80/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1%25eth0]/",
    ]:
        with pytest.raises(BlockedAddress, match="refusing to connect") as caught:
            check_url_host(url, ())
        assert BLOCKED_HINT in str(caught.value), url
    with pytest.raises(BlockedAddress, match=r"refusing to connect to 0x7f\.1: 127\.0\.0\.1 is in 127\.0\.0\.0/8"):
        check_url_host("http://0x7f.1/", ())


def test_check_url_host_lets_names_and_public_or_allowed_literals_through() -> None:
    for url in ["http://example.com/", "http://localhost:8080/", "http://93.184.216.34/", "http://[2606:4700::1111]/"]:
        check_url_host(url, ())
    for url in ["http://127.0.0.1:9/", "http://2130706433/", "http://[::1]/", "http://[::ffff:127.0.0.1]/"]:
        check_url_host(url, LOOPBACK)


def test_check_url_host_refuses_hosts_that_look_like_literals() -> None:
    # The socket layer might read an all-digits-and-dots host as an address that no one checked.
    for url in ["http://127.0.0.1./", "http://1.2.3.4.5/", "http://09.1/"]:
        with pytest.raises(BlockedAddress, match="not a valid IP address"):
            check_url_host(url, LOOPBACK)


def test_blocked_address_is_an_os_error_whose_text_is_the_explanation() -> None:
    error = BlockedAddress("refusing to connect: why", host="h", address="127.0.0.1")
    assert isinstance(error, OSError)
    assert str(error) == "refusing to connect: why"
    assert error.strerror == "refusing to connect: why"
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.host, copy.address) == (str(error), "h", "127.0.0.1")


class FakeResolver(AbstractResolver):
    """Answers from a table; the real DNS cannot be pointed at private addresses here."""

    def __init__(self, answers: dict[str, Sequence[str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int, int]] = []
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append((host, port, family))
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.answers[host]
        ]

    async def close(self) -> None:
        self.closed = True


def _resolve(resolver: GuardedResolver, host: str) -> list[ResolveResult]:
    return asyncio.run(resolver.resolve(host, 443, socket.AF_UNSPEC))


def test_resolver_passes_names_resolving_to_public_addresses() -> None:
    inner = FakeResolver({"example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})
    results = _resolve(GuardedResolver((), inner), "example.com")
    assert [r["host"] for r in results] == ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]
    assert inner.calls == [("example.com", 443, socket.AF_UNSPEC)]


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        ("10.0.0.5", "10.0.0.5 is in 10.0.0.0/8 (private)"),
        ("169.254.169.254", "169.254.0.0/16 (link-local, cloud metadata)"),
        ("127.0.0.1", "127.0.0.0/8 (loopback)"),
        ("fd00::1", "fc00::/7 (private, unique-local)"),
        ("::ffff:192.168.0.1", "maps to 192.168.0.1, in 192.168.0.0/16 (private)"),
        ("fe80::1%2", "fe80::/10 (link-local)"),
    ],
)
def test_resolver_refuses_names_resolving_to_blocked_addresses(answer: str, fragment: str) -> None:
    resolver = GuardedResolver((), FakeResolver({"internal.example": [answer]}))
    with pytest.raises(BlockedAddress) as caught:
        _resolve(resolver, "internal.example")
    assert str(caught.value).startswith("refusing to connect to internal.example: ")
    assert fragment in str(caught.value)
    assert str(caught.value).endswith(BLOCKED_HINT)
    assert caught.value.host == "internal.example"


def test_resolver_refuses_a_mix_of_public_and_blocked_addresses() -> None:
    inner = FakeResolver({"rebind.example": ["93.184.216.34", "127.0.0.1", "8.8.8.8"]})
    with pytest.raises(BlockedAddress, match=r"127\.0\.0\.1 is in 127\.0\.0\.0/8 \(loopback\)"):
        _resolve(GuardedResolver((), inner), "rebind.example")


def test_resolver_checks_every_lookup_so_rebinding_is_caught() -> None:
    inner = FakeResolver({"rebind.example": ["93.184.216.34"]})
    resolver = GuardedResolver((), inner)
    assert [r["host"] for r in _resolve(resolver, "rebind.example")] == ["93.184.216.34"]
    inner.answers["rebind.example"] = ["169.254.169.254"]
    with pytest.raises(BlockedAddress, match="cloud metadata"):
        _resolve(resolver, "rebind.example")


def test_resolver_honours_the_allow_list() -> None:
    inner = FakeResolver({"localhost": ["127.0.0.1", "::1"], "other": ["10.0.0.1"]})
    resolver = GuardedResolver(LOOPBACK, inner)
    assert [r["host"] for r in _resolve(resolver, "localhost")] == ["127.0.0.1", "::1"]
    with pytest.raises(BlockedAddress, match="private"):
        _resolve(resolver, "other")


def test_resolver_refuses_answers_that_are_not_addresses_or_empty() -> None:
    inner = FakeResolver({"odd": ["not-an-address"], "none": []})
    with pytest.raises(BlockedAddress, match="not an IP address"):
        _resolve(GuardedResolver((), inner), "odd")
    with pytest.raises(OSError, match="no addresses found for none"):
        _resolve(GuardedResolver((), inner), "none")


def test_resolver_closes_its_inner_resolver() -> None:
    inner = FakeResolver({})
    asyncio.run(GuardedResolver((), inner).close())
    assert inner.closed


def test_the_client_refuses_localhost_before_connecting_unless_allowed() -> None:
    asyncio.run(_post_to_localhost())


class LocalServer:
    """An aiohttp server on 127.0.0.1 answering "ok", counting the connections made to it."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.connections = 0

    async def __aenter__(self) -> LocalServer:
        async def handle(request: web.BaseRequest) -> web.Response:
            self.received.append(await request.read())
            # Each request on its own connection, so that each needs its host's addresses.
            return web.Response(text="ok", headers={"Connection": "close"})

        self._server = web.Server(handle)

        def accept() -> web.RequestHandler:
            self.connections += 1
            return self._server()

        self._listener = await asyncio.get_running_loop().create_server(accept, "127.0.0.1", 0)
        self.port = self._listener.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        self._listener.close()
        await self._listener.wait_closed()
        await self._server.shutdown()


def _client(allowed: Sequence[Network], inner: AbstractResolver | None = None) -> HttpClient:
    resolver = GuardedResolver(allowed, inner or dns_resolver())
    return HttpClient(5.0, allowed, resolver, ssl.create_default_context())


async def _post_to_localhost() -> None:
    async with LocalServer() as server:
        url = f"http://localhost:{server.port}/"
        refusing = _client(())
        with pytest.raises(ClientConnectorDNSError) as caught:
            await refusing.post(url, {}, b"payload")
        await refusing.close()
        assert isinstance(caught.value.__cause__, BlockedAddress)
        assert str(caught.value).startswith(f"Cannot connect to host localhost:{server.port} ")
        assert "refusing to connect to localhost: " in str(caught.value)
        assert re.search(LOCALHOST_REFUSED, str(caught.value))
        assert BLOCKED_HINT in str(caught.value)
        assert (server.connections, server.received) == (0, [])

        allowing = _client(LOOPBACK)
        response = await allowing.post(url, {}, b"payload")
        await allowing.close()
        assert (response.status, response.body) == (200, b"ok")
        assert (server.connections, server.received) == (1, [b"payload"])


def test_the_client_refuses_literal_hosts_before_connecting_unless_allowed() -> None:
    async def scenario() -> None:
        async with LocalServer() as server:
            url = f"http://0x7f000001:{server.port}/"
            refusing = _client(())
            with pytest.raises(BlockedAddress, match=r"refusing to connect to 0x7f000001: 127\.0\.0\.1 is in"):
                await refusing.post(url, {}, b"payload")
            await refusing.close()
            assert (server.connections, server.received) == (0, [])
            allowing = _client(LOOPBACK)
            assert (await allowing.post(url, {}, b"payload")).status == 200
            await allowing.close()
            assert (server.connections, server.received) == (1, [b"payload"])

    asyncio.run(scenario())


def test_the_client_connects_only_to_addresses_the_guarded_lookup_returned_and_keeps_them_a_minute() -> None:
    async def scenario() -> None:
        async with LocalServer() as server:
            # No DNS server knows this name: only the lookup's answer can lead the client to the receiver.
            inner = FakeResolver({"rebind.example": ["127.0.0.1"]})
            client = _client(LOOPBACK, inner)
            url = f"http://rebind.example:{server.port}/"
            first = await client.post(url, {}, b"one")
            # Re-pointed: the client keeps the answer that passed, as aiohttp's DNS cache did.
            inner.answers["rebind.example"] = ["93.184.216.34"]
            second = await client.post(url, {}, b"two")
            await client.close()
        assert (first.status, second.status) == (200, 200)
        assert (server.connections, server.received) == (2, [b"one", b"two"])
        assert inner.calls == [("rebind.example", server.port, socket.AF_UNSPEC)]

    asyncio.run(scenario())


def test_the_client_keeps_no_answer_the_guard_refused() -> None:
    async def scenario() -> None:
        async with LocalServer() as server:
            inner = FakeResolver({"rebind.example": ["127.0.0.1", "10.0.0.1"]})
            client = _client(LOOPBACK, inner)
            url = f"http://rebind.example:{server.port}/"
            with pytest.raises(ClientConnectorDNSError, match=r"10\.0\.0\.1 is in 10\.0\.0\.0/8 \(private\)"):
                await client.post(url, {}, b"refused")
            inner.answers["rebind.example"] = ["127.0.0.1"]
            response = await client.post(url, {}, b"allowed")
            await client.close()
        assert response.status == 200
        assert server.received == [b"allowed"]
        assert len(inner.calls) == 2

    asyncio.run(scenario())
