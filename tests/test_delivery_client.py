"""The sender's HTTP client against real sockets: what a request carries, when a connection is kept, reused,
retried or closed, and TLS verification. Receivers here speak raw HTTP/1.1 so each test decides, per
connection, what is answered and when the connection ends."""

from __future__ import annotations

import asyncio
import base64
import itertools
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import uvloop

from tests.support.certs import Authority, Pem
from tests.support.running import LOOPBACK
from webhook_service.dispatch import http
from webhook_service.dispatch.sender import Sender
from webhook_service.domain.model import Attempt
from webhook_service.store.deliveries import Claim

KEEP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CLOSE = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
OLD = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
PAYLOAD = b'{"kind": "ping"}'

# What a peer answers to the request numbered `request` (from 0) on connection `connection` (from 0); None
# closes the connection without a word.
Answer = Callable[[int, int], bytes | None]


class Peer:
    """A receiver on `host` that reads each request whole and answers as `answer` says, closing the connection
    after an answer that says `Connection: close`. `requests` holds (connection, head, body) for every request
    read; `closed` counts the connections that ended."""

    def __init__(self, answer: Answer, host: str = "127.0.0.1", tls: Pem | None = None) -> None:
        self._answer = answer
        self._host = host
        self._tls = tls
        self.connections = 0
        self.closed = 0
        self._ended = asyncio.Event()
        self.requests: list[tuple[int, bytes, bytes]] = []
        self.port = 0

    async def __aenter__(self) -> Peer:
        context = None
        if self._tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self._tls.cert, self._tls.key)
        self._server = await asyncio.start_server(self._serve, self._host, 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    def url(self, path: str, scheme: str = "http", host: str = "") -> str:
        return f"{scheme}://{host or self._host}:{self.port}{path}"

    async def until_closed(self, count: int) -> None:
        """Waits, ten seconds at most, until `count` connections have ended."""
        async with asyncio.timeout(10):
            while self.closed < count:
                self._ended.clear()
                await self._ended.wait()

    def connection_of_each_request(self) -> list[int]:
        return [connection for connection, _, _ in self.requests]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = self.connections
        self.connections += 1
        try:
            for number in itertools.count():
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(int(dict(_fields(head))["content-length"]))
                self.requests.append((connection, head, body))
                answer = self._answer(connection, number)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if b"\r\nConnection: close\r\n" in answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            # The test's loop ending. Ending normally: Python 3.11's asyncio.start_server fails in its own
            # callback on a handler that ends cancelled.
            pass
        finally:
            writer.close()
            self.closed += 1
            self._ended.set()


def _fields(head: bytes) -> list[tuple[str, str]]:
    """The header fields of a request head, names lowercased, in order."""
    lines = head.decode().split("\r\n")[1:-2]
    return [(name.lower(), value.strip()) for name, value in (line.split(":", 1) for line in lines)]


def always(answer: bytes) -> Answer:
    return lambda connection, number: answer


def claim(url: str) -> Claim:
    return Claim(
        row_id=1,
        delivery_id="61922d47b6b9ecb0017530e1",
        webhook_row=1,
        webhook_name="organizations/acme/webhooks/hook",
        organization="acme",
        kind="ping",
        payload=PAYLOAD,
        payload_url=url,
        secret="s3cr3t",
        attempt_count=0,
        lease="test",
    )


async def send(sender: Sender, url: str) -> Attempt:
    return await sender.send(claim(url))


Scenario = Callable[[Sender], Awaitable[None]]
Run = Callable[..., None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a scenario with a started sender (5 s timeout, loopback allowed unless given one), on asyncio's
    loop and on uvloop, the one the service runs on."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def running(scenario: Scenario, sender: Sender | None = None) -> None:
        async def started() -> None:
            used = sender or Sender(5.0, LOOPBACK)
            await used.start()
            try:
                await scenario(used)
            finally:
                await used.close()

        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(started())

    return running


def test_a_request_carries_the_delivery_headers_host_and_length_and_nothing_else(run: Run) -> None:
    async def scenario(sender: Sender) -> None:
        async with Peer(always(KEEP)) as peer:
            attempt = await send(sender, peer.url("/hook?x=1&y=%26"))
            [(_, head, body)] = peer.requests
        assert (attempt.response_code, attempt.response_body, attempt.error) == (200, "ok", "")
        assert head.startswith(b"POST /hook?x=1&y=%26 HTTP/1.1\r\n")
        fields = _fields(head)
        expected = {name.lower(): value for name, value in attempt.request_headers.items()}
        expected |= {"host": f"127.0.0.1:{peer.port}", "content-length": str(len(PAYLOAD))}
        # No Accept-Encoding above all: bodies are stored as sent, so asking for them compressed would make
        # them unreadable.
        assert dict(fields) == expected
        assert len(fields) == len(expected)
        assert body == PAYLOAD

    run(scenario)


def test_userinfo_in_the_url_is_sent_as_basic_authorization(run: Run) -> None:
    async def scenario(sender: Sender) -> None:
        async with Peer(always(KEEP)) as peer:
            attempt = await send(sender, f"http://hook%20user:p%40ss@127.0.0.1:{peer.port}/")
            [(_, head, _)] = peer.requests
        assert attempt.response_code == 200
        assert dict(_fields(head))["authorization"] == "Basic " + base64.b64encode(b"hook user:p@ss").decode()

    run(scenario)


def test_a_connection_is_kept_until_either_side_says_close(run: Run) -> None:
    answers = {(0, 0): KEEP, (0, 1): KEEP, (0, 2): CLOSE, (1, 0): OLD}

    async def scenario(sender: Sender) -> None:
        async with Peer(lambda connection, number: answers.get((connection, number), KEEP)) as peer:
            codes = [(await send(sender, peer.url("/keep"))).response_code for _ in range(5)]
            # The third answer said close and the fourth was HTTP/1.0 without keep-alive.
            assert peer.connection_of_each_request() == [0, 0, 0, 1, 2]
            # The client closes the two connections it may not keep.
            await peer.until_closed(2)
        assert codes == [200] * 5

    run(scenario)


def test_a_kept_connection_the_receiver_closes_unanswered_is_retried_once_on_a_new_one(run: Run) -> None:
    answers = {(0, 0): KEEP, (1, 0): KEEP}

    async def scenario(sender: Sender) -> None:
        async with Peer(lambda connection, number: answers.get((connection, number))) as peer:
            first = await send(sender, peer.url("/retry"))
            # Connection 0 is kept, and closed by the receiver when the second request arrives on it.
            second = await send(sender, peer.url("/retry"))
            # Connection 1 is kept too; this time the new connection is closed unanswered as well.
            third = await send(sender, peer.url("/retry"))
            assert peer.connection_of_each_request() == [0, 0, 1, 1, 2]
        assert (first.response_code, second.response_code, second.error) == (200, 200, "")
        assert (third.response_code, third.error) == (0, "ServerDisconnectedError: Server disconnected")

    run(scenario)


def test_idle_connections_are_closed_after_the_idle_time(monkeypatch: pytest.MonkeyPatch, run: Run) -> None:
    monkeypatch.setattr(http, "IDLE", 0.2)

    async def scenario(sender: Sender) -> None:
        async with Peer(always(KEEP)) as peer:
            assert (await send(sender, peer.url("/idle"))).response_code == 200
            await peer.until_closed(1)
            assert (await send(sender, peer.url("/idle"))).response_code == 200
            assert peer.connection_of_each_request() == [0, 1]

    run(scenario)


def test_an_https_receiver_with_a_self_signed_certificate_is_refused(tmp_path: Path, run: Run) -> None:
    # The authority's own certificate is signed by its own key.
    authority = Authority(tmp_path)

    async def scenario(sender: Sender) -> None:
        async with Peer(always(KEEP), tls=authority.pem) as peer:
            attempt = await send(sender, peer.url("/tls", scheme="https"))
            assert peer.requests == []
        assert attempt.response_code == 0
        assert attempt.error == (
            f"ClientConnectorCertificateError: Cannot connect to host 127.0.0.1:{peer.port} ssl:default "
            "[certificate verify failed: self-signed certificate]"
        )

    run(scenario)


def test_an_https_receiver_is_reached_when_trusted_and_named_in_its_certificate(tmp_path: Path, run: Run) -> None:
    authority = Authority(tmp_path)
    server = authority.issue("receiver", server=True)  # for localhost and 127.0.0.1
    trusting = ssl.create_default_context(cafile=authority.pem.cert)

    async def scenario(sender: Sender) -> None:
        async with Peer(always(KEEP), tls=server) as peer:
            by_address = await send(sender, peer.url("/tls", scheme="https"))
            by_name = await send(sender, peer.url("/tls", scheme="https", host="localhost"))
        async with Peer(always(KEEP), host="127.0.0.2", tls=server) as elsewhere:
            unnamed = await send(sender, elsewhere.url("/tls", scheme="https"))
            assert elsewhere.requests == []
        assert (by_address.response_code, by_address.response_body) == (200, "ok")
        assert (by_name.response_code, by_name.response_body) == (200, "ok")
        assert unnamed.error.startswith(
            f"ClientConnectorCertificateError: Cannot connect to host 127.0.0.2:{elsewhere.port} ssl:default "
            "[certificate verify failed: IP address mismatch, certificate is not valid for '127.0.0.2'"
        )

    run(scenario, Sender(5.0, LOOPBACK, ssl_context=trusting))


def answer(status_line: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    return b"\r\n".join((status_line, *headers)) + b"\r\n\r\n" + body


# (answer, the code and body stored): how a receiver may frame its answer.
READABLE = {
    "interim answers are skipped": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + KEEP,
        (200, "ok"),
    ),
    "chunked": (
        answer(b"HTTP/1.1 201 Created", b"Transfer-Encoding: chunked", body=b"2\r\nok\r\n0\r\n\r\n"),
        (201, "ok"),
    ),
    "up to the close": (answer(b"HTTP/1.1 202 Accepted", b"Connection: close", body=b"all of it"), (202, "all of it")),
    "204 has no body": (answer(b"HTTP/1.1 204 No Content", b"Content-Length: 5"), (204, "")),
    "a 101 is the whole answer": (answer(b"HTTP/1.1 101 Switching Protocols", b"Upgrade: x", body=b"\x00"), (101, "")),
}


@pytest.mark.parametrize("framing", READABLE)
def test_every_framing_of_an_answer_is_read(framing: str, run: Run) -> None:
    reply, expected = READABLE[framing]

    async def scenario(sender: Sender) -> None:
        async with Peer(always(reply)) as peer:
            attempt = await send(sender, peer.url("/framed"))
        assert (attempt.response_code, attempt.response_body, attempt.error) == (*expected, "")

    run(scenario)


def test_a_kept_connection_carries_on_after_an_answer_without_a_body(run: Run) -> None:
    async def scenario(sender: Sender) -> None:
        async with Peer(always(answer(b"HTTP/1.1 204 No Content"))) as peer:
            codes = [(await send(sender, peer.url("/empty"))).response_code for _ in range(3)]
            assert peer.connection_of_each_request() == [0, 0, 0]
        assert codes == [204] * 3

    run(scenario)


def test_a_connection_with_bytes_after_the_answer_is_not_kept(run: Run) -> None:
    async def scenario(sender: Sender) -> None:
        async with Peer(always(KEEP + b"HTTP/1.1 200 OK\r\n")) as peer:
            attempts = [await send(sender, peer.url("/more")) for _ in range(2)]
            assert peer.connection_of_each_request() == [0, 1]
        assert [(a.response_code, a.response_body, a.error) for a in attempts] == [(200, "ok", "")] * 2

    run(scenario)


# (answer, the error stored): what a receiver may not send.
REFUSED = {
    "too many headers": (
        answer(b"HTTP/1.1 200 OK", *(b"X-%d: v" % number for number in range(129))),
        "invalid HTTP response: Got more than 128 headers",
    ),
    "a long status line": (
        answer(b"HTTP/1.1 200 " + b"O" * 9000, b"Content-Length: 0"),
        "invalid HTTP response: Got more than 8190 bytes when reading the status line",
    ),
    # llhttp passes on none of the blanks before a value, so only the size of the whole head bounds them.
    "a head that never ends": (
        b"HTTP/1.1 200 OK\r\nX-Blank:" + b" " * (2 << 20),
        f"invalid HTTP response: Got more than {http.MAX_HEAD} bytes of status line and headers",
    ),
    "a status below 100": (
        answer(b"HTTP/1.1 099 Low", b"Content-Length: 0"),
        "invalid HTTP response: Invalid status code 99",
    ),
}


@pytest.mark.parametrize("flaw", REFUSED)
def test_answers_past_the_limits_are_errors_and_their_connections_closed(flaw: str, run: Run) -> None:
    reply, expected = REFUSED[flaw]

    async def scenario(sender: Sender) -> None:
        async with Peer(always(reply)) as peer:
            attempt = await send(sender, peer.url("/flawed"))
            await peer.until_closed(1)
        assert (attempt.response_code, attempt.error) == (0, expected)

    run(scenario)
