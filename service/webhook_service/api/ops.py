"""The operators' door on the HTTP listener: /metrics for Prometheus, /healthz and /readyz for probes.

Unauthenticated, like gRPC health: they tell counts and states, never a name, a token or a secret. As anyone
who reaches the port may call them as often as they like, what they ask of the database is one query at a
time however many requests wait for it, and the backlog is read again only once its last reading is old.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from aiohttp import web

from webhook_service.api.http import Installer
from webhook_service.domain.errors import ServiceError
from webhook_service.metrics import CONTENT_TYPE, Backlog, Metrics
from webhook_service.store import deliveries, schema
from webhook_service.store.database import Executor

T = TypeVar("T")

# How long the database has to answer a readiness check before the process is reported not ready.
READY_TIMEOUT = 2.0
# How long a scrape waits for the backlog before it answers without those gauges.
BACKLOG_TIMEOUT = 5.0
# The backlog is read at most this often, and less often when reading it is slow (it grows with the
# backlog): at most 1/BACKLOG_SHARE of one query thread goes to it.
BACKLOG_EVERY = 5.0
BACKLOG_SHARE = 20


class _Shared(Generic[T]):
    """A read that concurrent requests share, and reuse for as long as `reuse_for(seconds it took)`. A
    failed read is shared by those already waiting, then tried afresh."""

    def __init__(self, read: Callable[[], Awaitable[T]], reuse_for: Callable[[float], float]) -> None:
        self._read = read
        self._reuse_for = reuse_for
        self._task: asyncio.Task[T] | None = None
        self._expires = -math.inf

    async def get(self) -> T:
        if self._task is None or (self._task.done() and time.monotonic() >= self._expires):
            self._task = asyncio.create_task(self._timed())
            self._task.add_done_callback(_retrieved)
        # One request giving up (its timeout, or its client leaving) leaves the read to the others.
        return await asyncio.shield(self._task)

    async def _timed(self) -> T:
        started = time.monotonic()
        self._expires = -math.inf
        value = await self._read()
        finished = time.monotonic()
        self._expires = finished + self._reuse_for(finished - started)
        return value


def installer(
    metrics: Metrics,
    store: Executor,
    serving: Callable[[], bool],
    elsewhere: Callable[[], Awaitable[Sequence[bytes]]],
) -> Installer:
    """The routes, for a process whose series are `metrics`, whose database `store` reaches, and which is
    `serving()` until its shutdown begins; `elsewhere()` gives the series of its dispatcher processes."""
    backlog = _Shared(lambda: store.run(deliveries.backlog), lambda took: max(BACKLOG_EVERY, BACKLOG_SHARE * took))
    # Any read of a table: SQLite answers `SELECT 1` without looking at the database at all.
    database = _Shared(lambda: store.run(schema.current_version, store.db), lambda took: 0.0)

    async def metrics_page(request: web.Request) -> web.Response:
        try:
            waiting, oldest = await asyncio.wait_for(backlog.get(), BACKLOG_TIMEOUT)
        except (TimeoutError, ServiceError):
            found = None
        else:
            found = Backlog(waiting, None if oldest is None else max(0.0, time.time() - oldest))
        return web.Response(body=metrics.render(found, await elsewhere()), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if not serving():
            return _not_ready("shutting down")
        try:
            await asyncio.wait_for(database.get(), READY_TIMEOUT)
        except TimeoutError:
            return _not_ready(f"the database did not answer within {READY_TIMEOUT:g}s")
        except ServiceError as error:
            return _not_ready(str(error))
        # Checked again: shutdown may have begun while the database answered.
        return web.Response(text="ready\n") if serving() else _not_ready("shutting down")

    def install(app: web.Application) -> None:
        app.router.add_get("/metrics", metrics_page)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)

    return install


def _retrieved(task: asyncio.Task[T]) -> None:
    """Takes a failed read's exception, which its waiters may all have stopped waiting for: asyncio would
    log it as never retrieved."""
    if not task.cancelled():
        task.exception()


def _not_ready(why: str) -> web.Response:
    return web.Response(status=503, text=f"not ready: {why}\n")
