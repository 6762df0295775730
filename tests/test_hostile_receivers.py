"""Whatever a receiver answers, the delivery gets an attempt in its log, the log stays readable, and the
service's memory stays bounded: the receivers here write raw bytes no well-behaved HTTP server would."""

from __future__ import annotations

import asyncio
import re
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import seed
from tests.helpers import WS, make_webhook, publish, wait_for_delivery
from tests.support.raw_receiver import Answer, Connection, RawReceiver, head
from tests.support.running import RunningServer
from tests.support.waiting import eventually
from webhook_service.domain.limits import MAX_RESPONSE_BODY_BYTES, MAX_RESPONSE_HEADER_BYTES
from webhook_service.domain.responses import TRUNCATED
from webhooks.v1 import delivery_pb2
from webhooks_client import Client

SUCCEEDED = delivery_pb2.WEBHOOK_DELIVERY_STATE_SUCCEEDED
FAILED = delivery_pb2.WEBHOOK_DELIVERY_STATE_FAILED
STACK = "organizations/acme/projects/website/stacks/prod"
GIB = 1 << 30
MIB = 1 << 20

Start = Callable[..., RunningServer]


@pytest.fixture(scope="module")
def raw() -> Iterator[RawReceiver]:
    started = RawReceiver()
    yield started
    started.close()


def answer(data: bytes) -> Answer:
    async def send(connection: Connection) -> None:
        await connection.send(data)

    return send


def deliver_once(client: Client, url: str) -> delivery_pb2.WebhookDelivery:
    """One delivery to `url`, once it has its first attempt."""
    make_webhook(client, "organizations/acme", url)
    [name] = publish(client, seed.update_event(stack=STACK)).deliveries
    return wait_for_delivery(client, name, SUCCEEDED)


class ResidentGrowth:
    """How far this process's resident memory rose above where it was on entry, sampled every 10 ms: the
    server under test runs in this process."""

    def __init__(self) -> None:
        self.peak = 0
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ResidentGrowth:
        self._baseline = _resident()
        self._sampler.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._sampler.join(5)

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, _resident() - self._baseline)


def _resident() -> int:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match[1]) * 1024


def test_an_unreadable_retry_after_is_ignored_and_the_attempt_recorded(start_server: Start, raw: RawReceiver) -> None:
    # "²" is a digit to str.isdigit() but not to float().
    busy = head(429, [(b"Retry-After", "²".encode()), (b"Content-Length", b"0")])
    raw.script("/superscript", answer(busy), answer(head(200, [(b"Content-Length", b"0")])))
    client = start_server(retry_schedule=(0.0, 0.1, 0.1), delivery_timeout=1.0).client()

    delivery = deliver_once(client, raw.url("/superscript"))

    assert [a.response_code for a in delivery.attempts] == [429, 200]
    assert delivery.attempts[0].response_headers["Retry-After"] == "²"


def test_bytes_that_are_not_utf8_are_stored_escaped_and_every_view_shows_them(
    start_server: Start, raw: RawReceiver
) -> None:
    body = b"caf\xe9 \xff\x00 end"
    raw.script(
        "/latin1",
        answer(head(200, [(b"X-Name", b"Jos\xe9"), (b"Content-Length", str(len(body)).encode())]) + body),
    )
    client = start_server(retry_schedule=(0.0,)).client()
    hook = make_webhook(client, "organizations/acme", raw.url("/latin1"))
    [name] = publish(client, seed.update_event(stack=STACK)).deliveries

    delivery = wait_for_delivery(client, name)
    listed = client.webhooks.ListWebhookDeliveries(
        WS.ListWebhookDeliveriesRequest(parent=hook.name, view=delivery_pb2.WEBHOOK_DELIVERY_VIEW_FULL)
    ).deliveries
    pinged = client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))
    again = client.webhooks.RedeliverWebhookDelivery(WS.RedeliverWebhookDeliveryRequest(name=name))

    for shown in (delivery, delivery.attempts[0], *listed, pinged, again, again.attempts[-1]):
        assert shown.response_headers["X-Name"] == "Jos\\xe9"
        assert shown.response_body == "caf\\xe9 \\xff\\x00 end"
    assert again.attempt_count == 2


def test_response_headers_are_capped_and_say_so(start_server: Start, raw: RawReceiver) -> None:
    # The client parses up to 128 headers of up to 8 KiB each: about a megabyte per attempt.
    flood = [(b"X-Flood-%d" % i, b"v" * 8000) for i in range(120)]
    headers = [(b"X-First", b"1"), *flood, (b"X-Last", b"2"), (b"Content-Length", b"0")]
    raw.script("/flood", answer(head(200, headers)))
    client = start_server(retry_schedule=(0.0,)).client()

    stored = dict(deliver_once(client, raw.url("/flood")).response_headers)

    assert sum(len(key) + len(value) for key, value in stored.items()) <= MAX_RESPONSE_HEADER_BYTES
    assert stored["X-First"] == "1" and stored["X-Last"] == "2"
    assert sum(key.startswith("X-Flood-") for key in stored) == 2
    assert stored[TRUNCATED] == f"118 headers left out, past the {MAX_RESPONSE_HEADER_BYTES}-byte limit"


async def endless_body(connection: Connection) -> None:
    """Says a gibibyte follows, and sends it for as long as the client takes it."""
    await connection.send(head(200, [(b"Content-Length", str(GIB).encode())]))
    chunk = b"x" * (64 * 1024)
    for _ in range(GIB // len(chunk)):
        await connection.send(chunk)


def test_a_gibibyte_body_is_cut_at_the_limit_and_not_drained(start_server: Start, raw: RawReceiver) -> None:
    raw.script("/endless", endless_body)
    client = start_server(retry_schedule=(0.0,), delivery_timeout=30.0).client()

    with ResidentGrowth() as growth:
        delivery = deliver_once(client, raw.url("/endless"))
        # The receiver's connection ends when the sender drops it, not after a gibibyte.
        eventually(lambda: raw.sent("/endless") > 0, 15, "the sender drops the connection", every=0.02)

    assert delivery.response_code == 200
    assert delivery.response_body == "x" * MAX_RESPONSE_BODY_BYTES
    assert raw.sent("/endless") < 64 * MIB
    assert growth.peak < 64 * MIB


def test_a_gzip_bomb_is_stored_compressed(start_server: Start, raw: RawReceiver) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MIB)
    bomb = b"".join(compressor.compress(zeros) for _ in range(256)) + compressor.flush()
    headers = [(b"Content-Encoding", b"gzip"), (b"Content-Length", str(len(bomb)).encode())]
    raw.script("/bomb", answer(head(200, headers) + bomb))
    client = start_server(retry_schedule=(0.0,)).client()

    with ResidentGrowth() as growth:
        delivery = deliver_once(client, raw.url("/bomb"))

    # The gzip magic bytes, 1f 8b: what was sent, not 256 MiB of zeros.
    assert delivery.response_body.startswith("\x1f\\x8b")
    assert growth.peak < 64 * MIB


async def trickling_body(connection: Connection) -> None:
    await connection.send(head(200, [(b"Content-Length", b"100")]))
    for _ in range(100):
        await connection.send(b".")
        await asyncio.sleep(1)


async def trickling_headers(connection: Connection) -> None:
    await connection.send(b"HTTP/1.1 200 OK\r\n")
    for _ in range(100):
        await connection.send(b"X")
        await asyncio.sleep(1)


async def hang_up(connection: Connection) -> None:
    """Reads the request and closes the connection without a word."""


BROKEN = {
    "/trickling-body": (trickling_body, "the body of the 200 response did not arrive within 1s"),
    "/trickling-headers": (trickling_headers, "no response within 1s"),
    "/cut-short": (
        answer(head(200, [(b"Content-Length", b"1000")]) + b"only ten b"),
        "ClientPayloadError: Response payload is not completed",
    ),
    "/hang-up": (hang_up, "ServerDisconnectedError: Server disconnected"),
    "/huge-header": (
        answer(head(200, [(b"X-Huge", b"v" * 100_000)])),
        "invalid HTTP response: Got more than 8190 bytes",
    ),
    "/bad-header-name": (
        answer(head(200, [(b"X-\xff\xfe", b"v"), (b"Content-Length", b"0")])),
        "invalid HTTP response: Invalid header token",
    ),
    "/bad-chunk": (
        answer(head(200, [(b"Transfer-Encoding", b"chunked")]) + b"zz\r\nhello\r\n"),
        "invalid HTTP response: Invalid character in chunk size",
    ),
    "/bad-status": (answer(b"HTTP/1.1 2x0 OK\r\n\r\n"), "invalid HTTP response: Invalid status code"),
}


def test_broken_and_endless_answers_are_attempts_with_an_error(start_server: Start, raw: RawReceiver) -> None:
    for path, (reply, _) in BROKEN.items():
        raw.script(path, reply)
    client = start_server(retry_schedule=(0.0,), delivery_timeout=1.0).client()
    for path in BROKEN:
        make_webhook(client, "organizations/acme", raw.url(path))

    names = publish(client, seed.update_event(stack=STACK)).deliveries
    deliveries = [wait_for_delivery(client, name, FAILED) for name in names]

    errors = {d.request_url.removeprefix(raw.url("")): d.error for d in deliveries}
    assert set(errors) == set(BROKEN)
    for path, (_, expected) in BROKEN.items():
        assert expected in errors[path], (path, errors[path])
    assert {(d.attempt_count, d.response_code) for d in deliveries} == {(1, 0)}
