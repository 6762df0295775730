"""The shipped `webhooks` command: flags, environment, health, graceful shutdown."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.process import ServiceProcess
from webhooks.v1 import webhook_pb2, webhook_service_pb2
from webhooks_client import Client

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_console_script_serves_health_and_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    database = tmp_path / "nested" / "hooks.db"
    service = ServiceProcess(["serve", "--listen", "127.0.0.1:0"], env={"WEBHOOKS_DATABASE": f"sqlite:///{database}"})
    try:
        assert f"listening on 127.0.0.1:{service.port}, database sqlite {database}" in service.log
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


def test_data_survives_a_restart_on_the_same_database_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hooks.db'}"
    first = ServiceProcess(["serve", "--listen", "127.0.0.1:0", "--database", url])
    with Client(first.target) as client:
        made = client.webhooks.CreateWebhook(
            webhook_service_pb2.CreateWebhookRequest(
                parent="organizations/acme",
                webhook=webhook_pb2.Webhook(display_name="d", payload_url="https://example.com"),
            )
        )
    assert first.terminate() == 0

    second = ServiceProcess(["serve", "--listen", "127.0.0.1:0", "--database", url])
    try:
        with Client(second.target) as client:
            assert client.webhooks.GetWebhook(webhook_service_pb2.GetWebhookRequest(name=made.name)) == made
    finally:
        assert second.terminate() == 0


def test_flag_and_environment_errors_exit_non_zero(tmp_path: Path) -> None:
    taken = ServiceProcess(["serve", "--listen", "127.0.0.1:0", "--database", f"sqlite:///{tmp_path / 'a.db'}"])
    try:
        clash = ServiceProcess(
            ["serve", "--database", f"sqlite:///{tmp_path / 'b.db'}"],
            env={"WEBHOOKS_LISTEN": taken.target},
            wait_for_port=False,
        )
        assert clash.process.wait(30) != 0
        clash._reader.join(5)
        assert taken.target in clash.log
    finally:
        taken.terminate()
