from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from webhook_service.dispatch.settings import DispatchSettings
from webhook_service.server import ServerSettings
from webhooks_client import Client


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("db") / "webhooks.db"
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[RunningServer]:
    running = RunningServer(ServerSettings(listen="127.0.0.1:0", database=database_url))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[Client]:
    with Client(server.target) as connected:
        yield connected


@pytest.fixture
def org() -> str:
    """An organization no other test uses, so tests sharing a server stay independent."""
    return f"org-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    yield started
    started.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Starts servers with non-default dispatch settings on a fresh database; all stop at the end."""
    started: list[RunningServer] = []

    def start(**dispatch: Any) -> RunningServer:
        settings = ServerSettings(
            listen="127.0.0.1:0",
            database=f"sqlite:///{tmp_path / f'webhooks-{len(started)}.db'}",
            grace=2.0,
            dispatch=DispatchSettings(**dispatch),
        )
        started.append(RunningServer(settings))
        return started[-1]

    yield start
    for running in started:
        running.stop()
