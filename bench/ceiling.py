"""The ceiling: a bare aiohttp loop posting the service's signed body to the same receiver."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from webhook_service.domain.requests import delivery_headers
from webhook_service.store.events import new_id


async def post_loop(
    url: str, body: bytes, kind: str, secret: str, count: int, concurrency: int
) -> tuple[int, float, float]:
    """Posts `body` `count` times with `concurrency` requests in flight, each with its own delivery ID and
    signature as the service sends them; returns the successful posts, the seconds they took and the CPU
    seconds this process spent on them."""
    remaining = count
    succeeded = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining, succeeded
        while remaining > 0:
            remaining -= 1
            headers = delivery_headers(new_id(), kind, body, secret, int(time.time()))
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                await response.read()
                if response.status == 200:
                    succeeded += 1

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        clock = time.perf_counter()
        cpu = time.process_time()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return succeeded, time.perf_counter() - clock, time.process_time() - cpu
