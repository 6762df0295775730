"""Which addresses a webhook may be delivered to: the outbound request-forgery (SSRF) rules.

Payload URLs are typed by users, so by default deliveries must not reach loopback, private, link-local
(cloud metadata), carrier-grade NAT, multicast, reserved, unspecified or any other non-public address, in
any spelling: IPv4, IPv6, IPv6 forms embedding an IPv4 address (mapped, compatible, NAT64, 6to4) and the
legacy numeric IPv4 forms `inet_aton` accepts (2130706433, 0x7f000001, 0177.0.0.1, 127.1). The operator
opens ranges with an allow-list of networks (--allow-network). Pure: no I/O, no DNS, standard library only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TypeAlias

Address: TypeAlias = IPv4Address | IPv6Address
Network: TypeAlias = IPv4Network | IPv6Network

BLOCKED_HINT = "allow it with --allow-network CIDR"
NOT_PUBLIC = "not a public address"

# Named ranges, for the messages. Order matters: the first match names the range, so more specific ranges come
# before the ranges that contain them. Anything non-public missing here is still caught by the fallback in
# `_describe` (Python's is_global and friends); these names only make the message precise.
_IPV4_RANGES: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(cidr), name)
    for cidr, name in (
        ("0.0.0.0/8", "unspecified, 'this network'"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local, cloud metadata"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "deprecated 6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    )
)

_IPV6_RANGES: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(cidr), name)
    for cidr, name in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "deprecated IPv4-compatible"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo"),
        ("2001:2::/48", "benchmarking"),
        ("2001:10::/28", "deprecated ORCHID"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "SRv6 segment identifiers"),
        ("fc00::/7", "private, unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "deprecated site-local"),
        ("ff00::/8", "multicast"),
    )
)

_IPV4_MAPPED = IPv6Network("::ffff:0:0/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")
_NAT64 = IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = IPv6Network("2002::/16")

# One part of an inet_aton address: 0x-hex, 0-octal (a lone 0 included) or decimal. ASCII only.
_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """The networks in `values`, each a CIDR or a bare address; items may also be comma-separated lists."""
    networks: list[Network] = []
    for value in values:
        for item in value.split(","):
            text = item.strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=True))
            except ValueError as error:
                raise ValueError(
                    f"{text!r} is not a network in CIDR form such as 10.0.0.0/8 or fd00::/8 ({error})"
                ) from None
    return tuple(networks)


def blocked_range(address: Address, allowed: Sequence[Network]) -> str | None:
    """None when deliveries may connect to `address`, otherwise why not, naming the range it is in.

    The allow-list is checked first; an IPv6 address embedding an IPv4 address is also allowed when the
    embedded address is. Otherwise an embedded IPv4 address is judged like the address itself, then the IPv6
    address is judged on its own (6to4 and IPv4-compatible forms), except IPv4-mapped and NAT64 addresses,
    which only ever reach the embedded IPv4 address.
    """
    if _allowed(address, allowed):
        return None
    if isinstance(address, IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            shown, verb, ipv4 = embedded
            if _allowed(ipv4, allowed):
                return None
            reason = _describe(ipv4)
            if reason is not None:
                return f"{shown} {verb} {ipv4}, {_phrase(reason, which=True)}"
            if address in _IPV4_MAPPED or address in _NAT64:
                return None
    reason = _describe(address)
    return None if reason is None else f"{address} {_phrase(reason, which=False)}"


def literal_address(host: str) -> Address | None:
    """The address when the URL host `host` is an IP literal in any spelling, else None (a name, or garbage).

    IPv6 with or without [brackets] (a %25-encoded zone allowed); IPv4 dotted quads; and every numeric form
    glibc's inet_aton accepts: 1 to 4 dot-separated parts, each decimal, 0x-hex or 0-octal, the last part
    filling the remaining bytes (2130706433, 0x7f000001, 0177.0.0.1, 127.1, 0x7f.1). Parsed here, without
    the socket module, so the answer does not depend on the platform.
    """
    if host.startswith("[") and host.endswith("]"):
        return _ipv6_literal(host[1:-1])
    if ":" in host:
        return _ipv6_literal(host)
    try:
        return IPv4Address(host)
    except ValueError:
        return _inet_aton(host)


def _allowed(address: Address, allowed: Sequence[Network]) -> bool:
    # A v4 address is never in a v6 network and the reverse: `in` answers False across versions.
    return any(address in network for network in allowed)


def _embedded_ipv4(address: IPv6Address) -> tuple[str, str, IPv4Address] | None:
    """How to show `address`, a verb, and the IPv4 address it carries, for the forms that carry one."""
    if address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}", "maps to", address.ipv4_mapped
    if address in _NAT64:
        ipv4 = IPv4Address(int(address) & 0xFFFFFFFF)
        return f"64:ff9b::{ipv4}", "translates to", ipv4
    if address.sixtofour is not None:
        return str(address), "embeds", address.sixtofour
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are not IPv4-compatible addresses
        ipv4 = IPv4Address(int(address))
        return f"::{ipv4}", "embeds", ipv4
    return None


def _describe(address: Address) -> tuple[Network, str] | str | None:
    """The named range `address` is in, or NOT_PUBLIC for any other non-public address, or None."""
    ranges: Sequence[tuple[Network, str]] = _IPV4_RANGES if isinstance(address, IPv4Address) else _IPV6_RANGES
    for network, name in ranges:
        if address in network:
            return network, name
    if (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or (isinstance(address, IPv6Address) and address.is_site_local)
    ):
        return NOT_PUBLIC
    return None


def _phrase(reason: tuple[Network, str] | str, *, which: bool) -> str:
    if isinstance(reason, str):
        return f"which is {reason}" if which else f"is {reason}"
    network, name = reason
    return f"in {network} ({name})" if which else f"is in {network} ({name})"


def _ipv6_literal(text: str) -> IPv6Address | None:
    # A zone in a URL is %25-encoded (RFC 6874): try it decoded first, then as written.
    for candidate in (text.replace("%25", "%", 1), text):
        try:
            return IPv6Address(candidate)
        except ValueError:
            continue
    return None


def _inet_aton(host: str) -> IPv4Address | None:
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        if _ATON_PART.fullmatch(part) is None:
            return None
        try:
            if part[:2] in ("0x", "0X"):
                values.append(int(part[2:], 16))
            elif part.startswith("0"):
                values.append(int(part, 8))
            else:
                values.append(int(part, 10))
        except ValueError:  # a decimal part too long for int(): far out of range anyway
            return None
    *leading, last = values
    if any(value > 0xFF for value in leading) or last >= 1 << (8 * (4 - len(leading))):
        return None
    number = last
    for index, value in enumerate(leading):
        number |= value << (8 * (3 - index))
    return IPv4Address(number)
