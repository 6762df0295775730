"""The HTTP/1.1 client deliveries are posted with: one POST at a time per keep-alive connection.

aiohttp's client spent about 140 us of CPU on each post, most of the dispatcher's time; a delivery needs none
of its generality (redirects, cookies, streaming, decompression), so this client writes each request in one
piece and parses the answer with llhttp (httptools), keeping within limits a hostile receiver cannot stretch.

Every connection passes the request-forgery guard when it is made: an IP-literal host is checked as it is
(`check_url_host`), a name is resolved by `GuardedResolver`, which refuses any answer holding a blocked
address, and the connection goes only to addresses that answer returned, so a name cannot be re-pointed (DNS
rebinding) between the check and the connection. Answers that passed are reused for `DNS_TTL` seconds.

Failures are `HttpError`s named, and worded, as aiohttp's were, so that attempts recorded before and after
this client read alike.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import socket
import ssl
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import httptools
from yarl import URL

from webhook_service.dispatch.guard import GuardedResolver, check_url_host
from webhook_service.domain.limits import MAX_RESPONSE_BODY_BYTES
from webhook_service.domain.network import Network, literal_address

# A status line or header line longer than this is refused, as aiohttp and most servers do.
MAX_LINE = 8190
MAX_HEADERS = 128
# The most a head within the line and count limits can take; it also bounds what llhttp buffers of one line.
MAX_HEAD = (MAX_HEADERS + 1) * (MAX_LINE + 2) + 2
# aiohttp's defaults: idle keep-alive connections are closed after IDLE seconds, answers of names kept DNS_TTL.
IDLE = 15.0
DNS_TTL = 60.0

Key = tuple[str, str, int]


class HttpError(Exception):
    """An exchange that produced no usable answer; `str()` says why, without the request's secrets."""


class ClientConnectorError(HttpError):
    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"Cannot connect to host {host}:{port} ssl:default [{reason}]")


class ClientConnectorDNSError(ClientConnectorError):
    """The name did not resolve, or resolved to an address the guard refuses."""


class ClientConnectorCertificateError(ClientConnectorError):
    """The receiver's certificate did not verify, or does not name the URL's host."""


class ClientConnectorSSLError(ClientConnectorError):
    """The TLS handshake failed for another reason."""


class ServerDisconnectedError(HttpError):
    """The connection ended before the status line and headers of the answer had all arrived."""


class ClientPayloadError(HttpError):
    """The connection ended before the body its headers announced had all arrived."""


class InvalidResponse(HttpError):
    """The receiver's bytes are not an HTTP/1.x response within the limits."""


class TimedOut(HttpError):
    """The exchange took longer than its timeout. `status` is the answer's, when its headers had arrived."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    # Decoded as UTF-8 with surrogateescape: a byte that is not UTF-8 stays recognisable.
    headers: list[tuple[str, str]]
    # At most MAX_RESPONSE_BODY_BYTES; the connection of a longer one is closed rather than drained.
    body: bytes


@dataclass(frozen=True, slots=True)
class _Target:
    """What every request to one payload URL shares."""

    url: URL
    key: Key
    # The request line, Host and, for a URL with userinfo, Authorization.
    head: bytes


@functools.lru_cache(maxsize=4096)
def _target(url: str) -> _Target:
    """A payload URL parsed once, however many deliveries go to it (URLs are immutable)."""
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.raw_host or parsed.port is None:
        # Not the URL itself: its userinfo may hold a password.
        raise ValueError("not an http or https URL with a host")
    head = f"POST {parsed.raw_path_qs} HTTP/1.1\r\nHost: {parsed.host_port_subcomponent}\r\n"
    if parsed.raw_user is not None or parsed.raw_password is not None:
        # As aiohttp did; UTF-8 (RFC 7617), so that no password makes the request fail.
        credentials = f"{parsed.user or ''}:{parsed.password or ''}".encode()
        head += f"Authorization: Basic {base64.b64encode(credentials).decode()}\r\n"
    return _Target(parsed, (parsed.scheme, parsed.raw_host, parsed.port), head.encode())


def _request(target: _Target, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [f"{name}: {value}\r\n" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    return b"".join((target.head, "".join(lines).encode(), body))


class HttpClient:
    """Keeps idle connections per (scheme, host, port), with no cap on how many: the dispatcher bounds how
    many requests run. Each exchange, from the lookup to the end of the body, takes at most `timeout` seconds.
    Needs a running event loop."""

    def __init__(
        self, timeout: float, allowed: Sequence[Network], resolver: GuardedResolver, ssl_context: ssl.SSLContext
    ) -> None:
        self._timeout = timeout
        self._allowed = tuple(allowed)
        self._resolver = resolver
        self._ssl = ssl_context
        self._loop = asyncio.get_running_loop()
        # Oldest on the left: requests take the newest, the sweep closes from the oldest.
        self._idle: dict[Key, deque[_Connection]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._connections: set[_Connection] = set()
        self._addresses: dict[str, tuple[float, list[str]]] = {}
        self._lookups: dict[str, asyncio.Task[list[str]]] = {}

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Response:
        """POSTs `body` with `headers` (and Host, Content-Length).

        A kept connection the receiver closed before answering is tried once more on a new one: a receiver
        closing an idle connection just as it is reused is common, and the request reached no handler.
        Raises HttpError, BlockedAddress (an IP-literal host the guard refuses) or ValueError (not a URL).
        """
        target = _target(url)
        request = _request(target, headers, body)
        deadline = self._loop.time() + self._timeout
        kept = self._take_idle(target.key)
        if kept is not None:
            try:
                return await self._exchange(kept, request, deadline)
            except ServerDisconnectedError:
                if kept.answered:
                    raise
        try:
            async with asyncio.timeout_at(deadline):
                connection = await self._connect(target)
        except TimeoutError:
            raise TimedOut(0) from None
        return await self._exchange(connection, request, deadline)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for connection in list(self._connections):
            connection.close()
        for lookup in self._lookups.values():
            lookup.cancel()
        await self._resolver.close()

    async def _exchange(self, connection: _Connection, request: bytes, deadline: float) -> Response:
        try:
            response = await connection.exchange(request, deadline)
        except BaseException:
            connection.close()
            raise
        if connection.reusable:
            self._keep(connection)
        else:
            connection.close()
        return response

    def _take_idle(self, key: Key) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.reusable:
                return connection
        return None

    def _keep(self, connection: _Connection) -> None:
        connection.idle_since = self._loop.time()
        self._idle.setdefault(connection.key, deque()).append(connection)
        if self._sweeper is None:
            self._sweeper = self._loop.call_at(connection.idle_since + IDLE, self._sweep)

    def _sweep(self) -> None:
        """Closes the connections idle for IDLE seconds, and comes back when the next one will have been."""
        self._sweeper = None
        expired = self._loop.time() - IDLE
        for key, idle in list(self._idle.items()):
            while idle and (idle[0].idle_since <= expired or not idle[0].reusable):
                idle.popleft().close()
            if not idle:
                del self._idle[key]
        if self._idle:
            oldest = min(idle[0].idle_since for idle in self._idle.values())
            self._sweeper = self._loop.call_at(oldest + IDLE, self._sweep)

    async def _connect(self, target: _Target) -> _Connection:
        """A new connection to the first address of the URL's host that takes one, the guard passed."""
        url = target.url
        _, host, port = target.key
        check_url_host(url, self._allowed)
        literal = literal_address(host)
        addresses = [str(literal)] if literal is not None else await self._resolve(host, port)
        tls = url.scheme == "https"
        failure: OSError | None = None
        for address in addresses:
            try:
                _, connection = await self._loop.create_connection(
                    lambda: _Connection(target.key, self._connections),
                    address,
                    port,
                    ssl=self._ssl if tls else None,
                    server_hostname=host.rstrip(".") if tls else None,
                )
            except ssl.SSLCertVerificationError as error:
                reason = f"certificate verify failed: {error.verify_message}" if error.verify_message else str(error)
                raise ClientConnectorCertificateError(host, port, reason) from None
            except ssl.SSLError as error:
                raise ClientConnectorSSLError(host, port, error.reason or str(error)) from None
            except OSError as error:
                failure = error
            else:
                return connection
        assert failure is not None
        raise ClientConnectorError(host, port, failure.strerror or str(failure)) from None

    async def _resolve(self, host: str, port: int) -> list[str]:
        """The addresses of `host`, every one of them allowed. Lookups of one name at once share one query."""
        cached = self._addresses.get(host)
        if cached is not None and cached[0] > self._loop.time():
            return cached[1]
        lookup = self._lookups.get(host)
        if lookup is None:
            lookup = self._lookups[host] = self._loop.create_task(self._look_up(host, port))
            lookup.add_done_callback(functools.partial(self._looked_up, host))
        try:
            # Shielded: one request's timeout must not end the lookup others wait on.
            return await asyncio.shield(lookup)
        except OSError as error:
            raise ClientConnectorDNSError(host, port, error.strerror or str(error)) from error

    async def _look_up(self, host: str, port: int) -> list[str]:
        results = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        addresses = [result["host"] for result in results]
        self._addresses[host] = (self._loop.time() + DNS_TTL, addresses)
        return addresses

    def _looked_up(self, host: str, lookup: asyncio.Task[list[str]]) -> None:
        del self._lookups[host]
        # Retrieved, so that a failure nobody waits for any more is not reported as never retrieved.
        if not lookup.cancelled():
            lookup.exception()


class _Connection(asyncio.Protocol):
    """One connection and the exchange on it, parsed as bytes arrive."""

    def __init__(self, key: Key, registry: set[_Connection]) -> None:
        self.key = key
        self.idle_since = 0.0
        # True between a response read to its end, both sides keeping the connection, and the next request.
        self.reusable = False
        # Whether any byte of an answer to the current request arrived.
        self.answered = False
        # The final (not 1xx) answer's status once its headers are complete; 0 before.
        self.status = 0
        self._registry = registry
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._headers: list[tuple[str, str]] = []
        self._status_bytes = 0
        self._head_bytes = 0
        self._delimited = False
        self._body: list[bytes] = []
        self._body_bytes = 0

    def exchange(self, request: bytes, deadline: float) -> asyncio.Future[Response]:
        """Sends `request`; the future is its answer, or fails with an HttpError (TimedOut at `deadline`)."""
        assert self._transport is not None
        self.reusable = False
        self.answered = False
        self.status = 0
        self._head_bytes = 0
        self._waiter = self._loop.create_future()
        # A loop timer rather than asyncio.timeout(): half the CPU (2.5 against 5.2 us), on every request.
        self._timer = self._loop.call_at(deadline, self._expire)
        self._transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.reusable = False
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, though they have its methods.
        self._transport = cast(asyncio.Transport, transport)
        self._registry.add(self)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            # Bytes nobody asked for (or after an answer that was given up on): the connection is not clean.
            self.close()
            return
        self.answered = True
        if not self.status:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # After a 101, answered as its message completed: nothing that follows is HTTP any more.
            pass
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            self._fail(cause if isinstance(cause, HttpError) else InvalidResponse(str(error)))
        except httptools.HttpParserError as error:
            self._fail(InvalidResponse(str(error)))
        else:
            if not self.status and self._head_bytes > MAX_HEAD:
                self._fail(InvalidResponse(f"Got more than {MAX_HEAD} bytes of status line and headers"))
        if not self.reusable and self._waiter.done():
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._registry.discard(self)
        if self._waiter is None or self._waiter.done():
            return
        if self.status and not self._delimited:
            self._answer(keep=False)
        elif self.status:
            self._fail(ClientPayloadError("Response payload is not completed"))
        else:
            self._fail(ServerDisconnectedError("Server disconnected" + (f": {exc}" if exc else "")))

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.status:
            # Bytes after the answer: it stands, but the connection is not clean enough to keep.
            raise InvalidResponse("data after the end of the response")
        self._headers = []
        self._status_bytes = 0
        self._delimited = False
        self._body = []
        self._body_bytes = 0

    def on_status(self, status: bytes) -> None:
        self._status_bytes += len(status)
        if self._status_bytes > MAX_LINE:
            raise InvalidResponse(f"Got more than {MAX_LINE} bytes when reading the status line")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_LINE:
            raise InvalidResponse(f"Got more than {MAX_LINE} bytes when reading a header line")
        if len(self._headers) == MAX_HEADERS:
            raise InvalidResponse(f"Got more than {MAX_HEADERS} headers")
        lowered = name.lower()
        if lowered == b"content-length":
            self._delimited = True
        elif lowered == b"transfer-encoding":
            # llhttp reads a body in chunks only when chunked is the last coding, and otherwise up to the close.
            self._delimited = value.rstrip().lower().endswith(b"chunked")
        self._headers.append((name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 100:
            raise InvalidResponse(f"Invalid status code {status}")
        # Other 1xx answers are interim: the final one follows. A 101 switches to another protocol, so ends it.
        if status >= 200 or status == 101:
            self.status = status
            # 204 and 304 have no body, whatever their headers say.
            self._delimited = self._delimited or status in (204, 304)

    def on_body(self, body: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            return
        room = MAX_RESPONSE_BODY_BYTES - self._body_bytes
        if len(body) > room:
            # Past the limit: what fits is the answer, and the rest is not read (the connection is closed).
            self._body.append(body[:room])
            self._answer(keep=False)
            return
        self._body.append(body)
        self._body_bytes += len(body)

    def on_message_complete(self) -> None:
        if self.status:
            self._answer(keep=self.status != 101 and self._parser.should_keep_alive())

    def _expire(self) -> None:
        self._fail(TimedOut(self.status))

    def _answer(self, keep: bool) -> None:
        assert self._waiter is not None and self._timer is not None
        if not self._waiter.done():
            self._timer.cancel()
            self.reusable = keep
            self._waiter.set_result(Response(self.status, self._headers, b"".join(self._body)))

    def _fail(self, error: HttpError) -> None:
        assert self._waiter is not None and self._timer is not None
        self.reusable = False
        if not self._waiter.done():
            self._timer.cancel()
            self._waiter.set_exception(error)
