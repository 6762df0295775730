"""Processes sharing a database agree on the settings that decide a delivery's fate, or say why not."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.databases import Databases
from tests.support.process import ServiceProcess
from tests.support.running import LOOPBACK, RunningServer, settings_in
from webhook_service.dispatch.settings import DispatchSettings
from webhook_service.store.database import open_database
from webhook_service.store.secrets import create_key

Start = Callable[..., RunningServer]


def test_a_process_with_another_allow_list_refuses_to_start_and_names_it(
    start_server: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = start_server(retry_schedule=(0.0, 5.0))
    database, key = first.settings.database, first.settings.secret_key_file

    def beside_it(folder: str, **options: object) -> RunningServer:
        dispatch = DispatchSettings(**{"retry_schedule": (0.0, 5.0), "allow_network": LOOPBACK, **options})
        return RunningServer(settings_in(tmp_path / folder, database, dispatch, secret_key_file=key))

    with pytest.raises(RuntimeError) as refused:
        beside_it("closed", allow_network=())
    message = str(refused.value)
    assert "--allow-network: this process has (none), the processes sharing the database use 127.0.0.0/8,::1/128" in (
        message
    )
    assert "--take-over-settings" in message
    assert "--retry-schedule" not in message  # only what differs is named

    with pytest.raises(RuntimeError, match=r"--retry-schedule: this process has 0s,1s, .* use 0s,5s"):
        beside_it("faster", retry_schedule=(0.0, 1.0))

    same = beside_it("same")
    same.stop()

    with caplog.at_level(logging.WARNING):
        taken = RunningServer(
            settings_in(
                tmp_path / "taker",
                database,
                DispatchSettings(retry_schedule=(0.0, 1.0), allow_network=LOOPBACK),
                take_over_settings=True,
                secret_key_file=key,
            )
        )
    taken.stop()
    assert "took over the shared delivery settings" in caplog.text
    # The taken-over values are now everyone's: the first process's are the odd ones out.
    with pytest.raises(RuntimeError, match=r"--retry-schedule: this process has 0s,5s, .* use 0s,1s"):
        beside_it("old")


def test_a_dispatcher_disagreeing_with_serve_stops_with_one_line(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'webhooks.db'}"
    served = ServiceProcess(["serve", "--listen", "127.0.0.1:0", "--database", database], cwd=tmp_path)
    try:
        dispatcher = ServiceProcess(
            ["dispatch", "--database", database, "--allow-network", "127.0.0.0/8"], cwd=tmp_path, wait_for_port=False
        )
        assert dispatcher.process.wait(30) == 1
        dispatcher._reader.join(5)
        assert "--allow-network: this process has 127.0.0.0/8" in dispatcher.log
        assert "Traceback" not in dispatcher.log
    finally:
        served.terminate()


def test_processes_starting_together_on_an_empty_database_all_start(tmp_path: Path, databases: Databases) -> None:
    """They race to store the settings: the first wins, the others agree with it instead of failing."""
    database = databases.new(tmp_path)
    open_database(database).close()  # the schema exists, the settings do not
    key = tmp_path / "secret.key"
    create_key(key)
    started: list[RunningServer] = []
    failures: list[BaseException] = []

    def start(index: int) -> None:
        try:
            dispatch = DispatchSettings(allow_network=LOOPBACK)
            started.append(RunningServer(settings_in(tmp_path / f"p{index}", database, dispatch, secret_key_file=key)))
        except BaseException as error:  # reported below, with the others
            failures.append(error)

    threads = [threading.Thread(target=start, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for server in started:
        server.stop()
    assert failures == []
    assert len(started) == 4
