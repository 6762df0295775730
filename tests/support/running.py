"""The real service, started in this test process on its own event loop thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from webhook_service.dispatch.settings import DispatchSettings
from webhook_service.domain.network import parse_networks
from webhook_service.process import ServerSettings
from webhook_service.server import Server
from webhooks_client import Client

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


# Tests' receivers listen on loopback, which the request-forgery guard refuses unless allowed.
LOOPBACK = parse_networks(["127.0.0.0/8", "::1/128"])


def settings_in(
    folder: Path, database: str, dispatch: DispatchSettings | None = None, **overrides: Any
) -> ServerSettings:
    """Settings for `database`, with the key and admin token in `folder`, on a free port."""
    folder.mkdir(parents=True, exist_ok=True)
    return ServerSettings(
        **{
            "listen": "127.0.0.1:0",
            "http_listen": "127.0.0.1:0",
            "database": database,
            "secret_key_file": folder / "secret.key",
            "admin_token_file": folder / "admin-token",
            "grace": 2.0,
            "dispatch": dispatch or DispatchSettings(allow_network=LOOPBACK),
            **overrides,
        }
    )


class RunningServer:
    def __init__(self, settings: ServerSettings, nameservers: Sequence[str] = ()) -> None:
        """`nameservers` are the DNS servers deliveries use instead of the system's."""
        self.settings = settings
        self._loop = BackgroundLoop()
        self.server = Server(settings)
        self.server.sender.nameservers = tuple(nameservers)
        self._loop.run(self.server.start())
        self.port = self.server.port
        self.target = f"127.0.0.1:{self.port}"

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Runs `coroutine` on the server's event loop, for tests that reach into the running service."""
        return self._loop.run(coroutine, timeout)

    @property
    def admin_token(self) -> str:
        assert self.settings.admin_token_file is not None, "this server runs without authentication"
        return self.settings.admin_token_file.read_text().strip()

    def client(self, token: str | None = None) -> Client:
        """A client with `token`, or with the admin token the server made at its first start."""
        return Client(self.target, token=token if token is not None else self.admin_token)

    def stop(self) -> None:
        if self._loop.loop.is_running():
            self._loop.run(self.server.stop())
            self._loop.close()
