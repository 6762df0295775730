"""One HTTP attempt of a delivery over a shared aiohttp session."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import aiohttp
from yarl import URL

from webhook_service.dispatch.guard import check_url_host, guarded_connector
from webhook_service.domain.limits import MAX_RESPONSE_BODY_BYTES
from webhook_service.domain.model import Attempt
from webhook_service.domain.network import Network
from webhook_service.domain.requests import delivery_headers
from webhook_service.domain.responses import cap_headers, printable, printable_bytes
from webhook_service.store.deliveries import Claim


@functools.lru_cache(maxsize=4096)
def _parsed(url: str) -> URL:
    """A payload URL parsed once, however many deliveries go to it (URLs are immutable)."""
    return URL(url)


class Sender:
    """Holds the one aiohttp session every attempt of this process reuses."""

    def __init__(self, timeout: float, allowed: Sequence[Network] = (), nameservers: Sequence[str] = ()) -> None:
        """`nameservers` replace the system's DNS servers for deliveries; they may be set until start()."""
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.allowed = tuple(allowed)
        self.nameservers = tuple(nameservers)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # The guarded connector sets no connection cap: the dispatcher's own bounds decide how many requests run.
        # Bodies are stored as sent, not decompressed: a gzip bomb stays the size it came in.
        connector = guarded_connector(self.allowed, self.nameservers)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, claim: Claim) -> Attempt:
        """Posts the claim's payload once. A redirect is a failure: the receiver must answer itself.

        Whatever the receiver does, the result is an Attempt: an answer is kept within the response limits,
        and a broken, endless or too slow one is an error.
        """
        assert self._session is not None, "start() the sender first"
        started = datetime.now(UTC)
        headers = delivery_headers(
            claim.delivery_id, claim.kind, claim.payload, claim.secret, int(started.timestamp()), claim.previous_secret
        )
        clock = time.perf_counter()
        number = claim.attempt_count + 1
        status = 0
        try:
            url = _parsed(claim.payload_url)
            check_url_host(url, self.allowed)
            async with self._session.post(
                url, data=claim.payload, headers=headers, allow_redirects=False, timeout=self.timeout
            ) as response:
                status = response.status
                # Leaving this block releases the response; with its body not read to the end, aiohttp closes
                # the connection rather than drain the rest (tests/test_hostile_receivers.py holds it to that).
                body = await _read_some(response.content, MAX_RESPONSE_BODY_BYTES)
                return Attempt(
                    number=number,
                    start_time=started,
                    request_url=claim.payload_url,
                    request_headers=headers,
                    response_code=status,
                    response_headers=cap_headers(response.headers.items()),
                    response_body=printable_bytes(body),
                    duration=time.perf_counter() - clock,
                )
        except TimeoutError:
            if status:
                error = f"the body of the {status} response did not arrive within {self.timeout.total:g}s"
            else:
                error = f"no response within {self.timeout.total:g}s"
        except aiohttp.ClientResponseError as failure:
            # aiohttp's parser refused what the receiver sent (its status 400 is aiohttp's, not the receiver's).
            error = f"invalid HTTP response: {failure.message}"
        except aiohttp.ClientError as failure:
            error = f"{type(failure).__name__}: {failure}"
        except (ValueError, asyncio.IncompleteReadError) as failure:
            error = f"bad request or response: {failure}"
        return Attempt(
            number=number,
            start_time=started,
            request_url=claim.payload_url,
            request_headers=headers,
            duration=time.perf_counter() - clock,
            error=printable(error),
        )


async def _read_some(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """At most `limit` bytes of the body; the rest is not waited for."""
    chunks = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
