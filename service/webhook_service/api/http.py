"""The HTTP listener every HTTP front door shares: one aiohttp application, in the process's event loop.

Each door adds its routes with an installer, `install(web_app)`; the listener knows nothing of them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from typing import cast

from aiohttp import web

Installer = Callable[[web.Application], None]
OFF = "off"


class HttpListener:
    def __init__(self, listen: str, installers: Sequence[Installer], tls: ssl.SSLContext | None = None) -> None:
        self.listen = listen
        self.port = 0
        self._tls = tls
        self._app = web.Application(client_max_size=1024 * 1024)
        for install in installers:
            install(self._app)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        host, _, port = self.listen.rpartition(":")
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port), ssl_context=self._tls)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            raise RuntimeError(f"cannot listen on {self.listen} for HTTP: {error.strerror or error}") from None
        self._runner = runner
        server = cast(asyncio.Server, site._server)
        self.port = server.sockets[0].getsockname()[1]

    def describe(self) -> str:
        """Where it listens, for the process's start line."""
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{self.listen.rpartition(':')[0]}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
