"""A real aiohttp server that records what it receives and answers as a test scripts it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.running import BackgroundLoop
from tests.support.waiting import eventually


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    # Why the path's check refused the request; empty when it passed or the path has none.
    refused: str = ""


# Checks a request's headers and body, raising when it must be refused.
Check = Callable[[dict[str, str], bytes], object]


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "ok"
    delay: float = 0.0
    # Awaited before answering, for tests that act on the service while a request is in flight.
    before: Callable[[], Awaitable[None]] | None = None


class Receiver:
    """Answers `Reply()` unless scripted: `script(path, [...])` hands out replies in order, then repeats the last.
    A path given a `check` answers 401 with the reason instead whenever the check raises."""

    def __init__(self) -> None:
        self._loop = BackgroundLoop()
        self._lock = threading.Lock()
        self._received: dict[str, list[Received]] = defaultdict(list)
        self._scripts: dict[str, list[Reply]] = {}
        self._checks: dict[str, Check] = {}
        self._runner, self.port = self._loop.run(self._start())
        self.base = f"http://127.0.0.1:{self.port}"

    async def _start(self) -> tuple[web.AppRunner, int]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        return runner, server.sockets[0].getsockname()[1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        check = self._checks.get(request.path)
        refused = ""
        if check is not None:
            try:
                check(headers, body)
            except Exception as error:
                refused = f"{type(error).__name__}: {error}"
        with self._lock:
            self._received[request.path].append(Received(request.path, headers, body, time.time(), refused))
            if refused:
                return web.Response(status=401, text=refused)
            script = self._scripts.get(request.path)
            reply = (script.pop(0) if len(script) > 1 else script[0]) if script else Reply()
        if reply.before is not None:
            await reply.before()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=reply.headers, text=reply.body)

    def url(self, path: str) -> str:
        return self.base + path

    def script(self, path: str, replies: list[Reply]) -> None:
        with self._lock:
            self._scripts[path] = list(replies)

    def check(self, path: str, check: Check) -> None:
        with self._lock:
            self._checks[path] = check

    def received(self, path: str) -> list[Received]:
        with self._lock:
            return list(self._received[path])

    def wait_for(self, path: str, count: int, timeout: float = 15) -> list[Received]:
        return eventually(
            lambda: got if len(got := self.received(path)) >= count else None,
            timeout,
            lambda: f"{path} received {len(self.received(path))} requests, expected {count}",
            every=0.02,
        )

    def close(self) -> None:
        self._loop.run(self._runner.cleanup())
        self._loop.close()
