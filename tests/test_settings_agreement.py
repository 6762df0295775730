"""Processes sharing a database agree on the settings that decide a delivery's fate, or say why not."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.process import ServiceProcess
from tests.support.running import LOOPBACK, RunningServer, settings_in
from webhook_service.dispatch.settings import DispatchSettings

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
