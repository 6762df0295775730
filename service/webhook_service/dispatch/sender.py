"""One HTTP attempt of a delivery, over the keep-alive connections every attempt of this process shares."""

from __future__ import annotations

import ssl
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from webhook_service.dispatch.guard import BlockedAddress, GuardedResolver, dns_resolver
from webhook_service.dispatch.http import HttpClient, HttpError, InvalidResponse, TimedOut
from webhook_service.domain.model import Attempt
from webhook_service.domain.network import Network
from webhook_service.domain.requests import delivery_headers
from webhook_service.domain.responses import cap_headers, printable, printable_bytes
from webhook_service.store.deliveries import Claim


class Sender:
    """Holds the one HTTP client every attempt of this process reuses."""

    def __init__(
        self,
        timeout: float,
        allowed: Sequence[Network] = (),
        nameservers: Sequence[str] = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`nameservers` replace the system's DNS servers for deliveries; they may be set until start().
        `ssl_context` replaces the default one (the system's authorities, certificates verified): for tests."""
        self.timeout = timeout
        self.allowed = tuple(allowed)
        self.nameservers = tuple(nameservers)
        self._ssl_context = ssl_context
        self._client: HttpClient | None = None

    async def start(self) -> None:
        resolver = GuardedResolver(self.allowed, dns_resolver(self.nameservers))
        context = self._ssl_context or ssl.create_default_context()
        self._client = HttpClient(self.timeout, self.allowed, resolver, context)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def send(self, claim: Claim) -> Attempt:
        """Posts the claim's payload once. A redirect is a failure: the receiver must answer itself.

        Whatever the receiver does, the result is an Attempt: an answer is kept within the response limits,
        and a broken, endless or too slow one is an error.
        """
        assert self._client is not None, "start() the sender first"
        started = datetime.now(UTC)
        headers = delivery_headers(
            claim.delivery_id, claim.kind, claim.payload, claim.secret, int(started.timestamp()), claim.previous_secret
        )
        clock = time.perf_counter()
        number = claim.attempt_count + 1
        try:
            response = await self._client.post(claim.payload_url, headers, claim.payload)
        except TimedOut as failure:
            if failure.status:
                error = f"the body of the {failure.status} response did not arrive within {self.timeout:g}s"
            else:
                error = f"no response within {self.timeout:g}s"
        except InvalidResponse as failure:
            error = f"invalid HTTP response: {failure}"
        except (HttpError, BlockedAddress) as failure:
            error = f"{type(failure).__name__}: {failure}"
        except ValueError as failure:
            error = f"bad request or response: {failure}"
        else:
            return Attempt(
                number=number,
                start_time=started,
                request_url=claim.payload_url,
                request_headers=headers,
                response_code=response.status,
                response_headers=cap_headers(response.headers),
                response_body=printable_bytes(response.body),
                duration=time.perf_counter() - clock,
            )
        return Attempt(
            number=number,
            start_time=started,
            request_url=claim.payload_url,
            request_headers=headers,
            duration=time.perf_counter() - clock,
            error=printable(error),
        )
