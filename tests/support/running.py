"""The real service, started in this test process on its own event loop thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from webhook_service.server import Server, ServerSettings

T = TypeVar("T")


class BackgroundLoop:
    """An asyncio loop on a daemon thread, for servers the synchronous tests talk to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


class RunningServer:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._loop = BackgroundLoop()
        self.server = Server(settings)
        self._loop.run(self.server.start())
        self.port = self.server.port
        self.target = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._loop.run(self.server.stop())
        self._loop.close()
