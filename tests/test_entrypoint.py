"""The shipped `webhooks` command: flags, environment, health, graceful shutdown."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests import seed
from tests.helpers import delivery_id, make_webhook, publish, wait_for_delivery
from tests.support.databases import Databases
from tests.support.process import ServiceProcess, webhooks_command
from tests.support.receiver import Receiver
from webhooks.v1 import webhook_pb2, webhook_service_pb2
from webhooks_client import Client

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_console_script_serves_health_and_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    database = tmp_path / "nested" / "hooks.db"
    service = ServiceProcess(
        ["serve", "--listen", "127.0.0.1:0"], env={"WEBHOOKS_DATABASE": f"sqlite:///{database}"}, cwd=tmp_path
    )
    try:
        assert re.search(
            rf"listening on 127\.0\.0\.1:{service.port} \(plaintext\), HTTP on http://127\.0\.0\.1:\d+, "
            rf"database sqlite {re.escape(str(database))}",
            service.log,
        ), service.log
        with grpc.insecure_channel(service.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert health.Check(health_pb2.HealthCheckRequest()).status == SERVING
            for name in ("webhooks.v1.WebhookService", "webhooks.v1.EventService"):
                assert health.Check(health_pb2.HealthCheckRequest(service=name)).status == SERVING

            watch = health.Watch(health_pb2.HealthCheckRequest(service="webhooks.v1.WebhookService"))
            assert next(watch).status == SERVING
            service.process.send_signal(signal.SIGTERM)
            assert next(watch).status == NOT_SERVING
        assert service.process.wait(30) == 0
    finally:
        if service.process.poll() is None:
            service.kill()
    assert "shutting down" in service.log
    assert database.exists()


def test_data_survives_a_restart_on_the_same_database(tmp_path: Path, databases: Databases) -> None:
    url = databases.new(tmp_path)
    first = ServiceProcess(["serve", "--listen", "127.0.0.1:0", "--database", url], cwd=tmp_path)
    with Client(first.target, token=first.admin_token) as client:
        made = client.webhooks.CreateWebhook(
            webhook_service_pb2.CreateWebhookRequest(
                parent="organizations/acme",
                webhook=webhook_pb2.Webhook(display_name="d", payload_url="https://example.com"),
            )
        )
    assert first.terminate() == 0

    second = ServiceProcess(["serve", "--listen", "127.0.0.1:0", "--database", url], cwd=tmp_path)
    try:
        with Client(second.target, token=second.admin_token) as client:
            assert client.webhooks.GetWebhook(webhook_service_pb2.GetWebhookRequest(name=made.name)) == made
    finally:
        assert second.terminate() == 0


def test_flag_and_environment_errors_exit_non_zero(tmp_path: Path) -> None:
    taken = ServiceProcess(
        ["serve", "--listen", "127.0.0.1:0", "--database", f"sqlite:///{tmp_path / 'a.db'}"], cwd=tmp_path
    )
    try:
        clash = ServiceProcess(
            ["serve", "--database", f"sqlite:///{tmp_path / 'b.db'}"],
            env={"WEBHOOKS_LISTEN": taken.target},
            wait_for_port=False,
            cwd=tmp_path,
        )
        assert clash.process.wait(30) != 0
        clash._reader.join(5)
        assert taken.target in clash.log
    finally:
        taken.terminate()


@pytest.mark.parametrize(("flag", "variable"), [("--listen", "LISTEN"), ("--http-listen", "HTTP_LISTEN")])
def test_a_taken_address_stops_the_start_with_one_line_naming_the_flag(
    tmp_path: Path, flag: str, variable: str
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = f"127.0.0.1:{holder.getsockname()[1]}"
        done = subprocess.run(
            [webhooks_command(), "serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", flag, taken],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert f"cannot listen {'for HTTP ' if variable == 'HTTP_LISTEN' else ''}on {taken}: the address is in use" in line
    assert f"choose another with {flag} HOST:PORT (with make: make run {variable}=HOST:PORT)" in line
    # Refused before anything was opened or made.
    assert not (tmp_path / "data").exists()


def test_api_only_server_and_a_separate_dispatch_process_deliver_together(tmp_path: Path, databases: Databases) -> None:
    receiver = Receiver()
    url = databases.new(tmp_path)
    api = ServiceProcess(
        ["serve", "--listen", "127.0.0.1:0", "--database", url, "--dispatch-concurrency", "0"],
        env={"WEBHOOKS_ALLOW_NETWORK": "127.0.0.0/8,::1/128"},
        cwd=tmp_path,
    )
    dispatcher: ServiceProcess | None = None
    try:
        with Client(api.target, token=api.admin_token) as client:
            make_webhook(client, "organizations/crazy-adventures", receiver.url("/split"))
            names = [publish(client, seed.update_event()).deliveries[0] for _ in range(3)]
            time.sleep(1.0)
            assert receiver.received("/split") == []

            dispatcher = ServiceProcess(
                ["dispatch", "--database", url, "--allow-network", "127.0.0.0/8,::1/128"],
                wait_for_port=False,
                cwd=tmp_path,
            )
            dispatcher.wait_for_log(f"dispatching from database {databases.engine}")
            arrived = receiver.wait_for("/split", 3)
            assert sorted(r.headers["Pulumi-Webhook-ID"] for r in arrived) == sorted(delivery_id(n) for n in names)
            for name in names:
                wait_for_delivery(client, name)
        assert dispatcher.terminate() == 0
        assert "dispatcher stopped" in dispatcher.log
    finally:
        api.terminate()
        if dispatcher is not None and dispatcher.process.poll() is None:
            dispatcher.kill()
        receiver.close()


def test_bad_flags_are_refused_with_the_flag_named() -> None:
    for args, words in (
        (["serve", "--delivery-timeout", "soon"], "--delivery-timeout"),
        (["serve", "--retry-schedule", "0s,x"], "--retry-schedule"),
        (["dispatch", "--dispatch-concurrency", "0"], "--dispatch-concurrency"),
    ):
        done = subprocess.run([webhooks_command(), *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2
        assert words in done.stderr
