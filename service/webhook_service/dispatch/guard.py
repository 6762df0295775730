"""The outbound request-forgery (SSRF) guard on the connections deliveries make (dispatch/http.py uses it).

Names are checked where they are resolved: `GuardedResolver` vets every address a lookup returns, and the
delivery client only ever connects to addresses it returned, so a name cannot be re-pointed (DNS rebinding)
between the check and the connection. IP-literal hosts (`http://127.0.0.1/`, `http://[::1]/`) are resolved by
no one: `check_url_host` vets them.

Both raise `BlockedAddress`, an `OSError` whose text is the whole explanation, e.g. `refusing to connect to
localhost: 127.0.0.1 is in 127.0.0.0/8 (loopback); allow it with --allow-network CIDR`. The client reports a
refused name as it reports any failed lookup, this text in brackets: `Cannot connect to host localhost:8080
ssl:default [refusing to connect to localhost: ...]`.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from ipaddress import ip_address
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from webhook_service.domain.network import BLOCKED_HINT, Network, blocked_range, literal_address


class BlockedAddress(OSError):
    """A delivery would connect to an address the SSRF rules refuse. `str()` is the whole explanation."""

    def __init__(self, message: str, host: str = "", address: str = "") -> None:
        super().__init__(errno.EACCES, message)
        self.message = message
        self.host = host
        self.address = address

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.message, self.host, self.address)


def blocked_message(host: str, address: str, reason: str) -> str:
    """`refusing to connect to <host>: <reason>; <hint>`, the host left out when it is the address itself."""
    target = "" if host.strip("[]") == address else f" to {host}"
    return f"refusing to connect{target}: {reason}; {BLOCKED_HINT}"


def check_url_host(url: str | URL, allowed: Sequence[Network]) -> None:
    """Raises BlockedAddress when the URL's host is an IP literal (in any spelling) that may not be reached.

    Names pass: `GuardedResolver` checks what they resolve to. A host that looks like an IP literal (it
    contains a colon, or only digits and dots) without being a valid one is refused too: the socket layer
    might read it as an address that no one checked.
    """
    parsed = url if isinstance(url, URL) else URL(url)
    hosts = {parsed.raw_host, parsed.host} - {None}
    for host in sorted(h for h in hosts if h is not None):
        address = literal_address(host)
        if address is None:
            if ":" in host or host.replace(".", "").isdigit():
                raise BlockedAddress(f"refusing to connect to {host}: not a valid IP address", host=host)
            continue
        reason = blocked_range(address, allowed)
        if reason is not None:
            raise BlockedAddress(blocked_message(host, str(address), reason), host=host, address=str(address))


def dns_resolver(nameservers: Sequence[str] = ()) -> AbstractResolver:
    """Lookups through c-ares (aiodns): asynchronous, each waiting only for its own answer, from `nameservers`
    ("host" or "host:port") or else the system's (/etc/resolv.conf, after /etc/hosts). Needs a running loop.

    Not aiohttp's ThreadedResolver: its getaddrinfo calls share the event loop's default executor (six threads
    on two cores), so six receivers whose DNS never answers would hold up every other webhook's lookups.
    """
    return aiohttp.AsyncResolver(nameservers=list(nameservers) or None)


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` (`dns_resolver()` by default) and refuses the whole answer when any address in it
    is blocked, rather than dropping the blocked ones: a name that points at a private address is a
    misconfiguration or an attack either way."""

    def __init__(self, allowed: Sequence[Network] = (), inner: AbstractResolver | None = None) -> None:
        self.allowed = tuple(allowed)
        # The default resolver needs a running loop, so it is made on first use.
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = dns_resolver()
        results = await self._inner.resolve(host, port, family)
        if not results:
            raise socket.gaierror(socket.EAI_NONAME, f"no addresses found for {host}")
        for result in results:
            try:
                address = ip_address(result["host"])
            except ValueError:
                raise BlockedAddress(
                    f"refusing to connect to {host}: it resolved to {result['host']!r}, not an IP address", host=host
                ) from None
            reason = blocked_range(address, self.allowed)
            if reason is not None:
                raise BlockedAddress(blocked_message(host, str(address), reason), host=host, address=str(address))
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
