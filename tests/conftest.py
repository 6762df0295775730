from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import Databases, PostgresDatabases, SqliteDatabases
from tests.support.postgres import PostgresCluster
from tests.support.receiver import Receiver
from tests.support.running import LOOPBACK, RunningServer, settings_in
from webhook_service.dispatch.settings import DispatchSettings
from webhook_service.process import ServerSettings
from webhooks_client import Client


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """Started once, when the first PostgreSQL test needs it; a failure to start fails the run."""
    cluster = PostgresCluster()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def databases(request: pytest.FixtureRequest) -> Databases:
    """The engine every database-backed test runs on: the suite runs once on each."""
    if request.param == "sqlite":
        return SqliteDatabases()
    return PostgresDatabases(request.getfixturevalue("postgres_cluster"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("server")
    running = RunningServer(settings_in(folder, databases.new(folder)))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[Client]:
    with server.client() as connected:
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
def start_server(tmp_path: Path, databases: Databases) -> Iterator[Callable[..., RunningServer]]:
    """Starts servers with non-default dispatch settings on a fresh database; all stop at the end."""
    started: list[RunningServer] = []

    def start(**options: Any) -> RunningServer:
        """Options naming a ServerSettings field set it, `nameservers` those of RunningServer; the rest are
        DispatchSettings."""
        nameservers = options.pop("nameservers", ())
        options.setdefault("allow_network", LOOPBACK)
        server_fields = {f.name for f in dataclasses.fields(ServerSettings)}
        overrides = {key: value for key, value in options.items() if key in server_fields}
        dispatch = DispatchSettings(**{key: value for key, value in options.items() if key not in server_fields})
        folder = tmp_path / f"server-{len(started)}"
        started.append(RunningServer(settings_in(folder, databases.new(folder), dispatch, **overrides), nameservers))
        return started[-1]

    yield start
    for running in started:
        running.stop()
