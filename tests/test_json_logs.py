"""`webhooks serve --log-format json`, run as operators run it: every line one JSON object a log collector
can index, naming the delivery, the webhook and the token ID, and never a token or a secret."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import grpc

from tests import seed
from tests.helpers import WS, delivery_id, make_webhook, publish, rpc_error, wait_for_delivery
from tests.support.databases import Databases
from tests.support.process import ServiceProcess
from tests.support.receiver import Receiver
from webhooks_client import Client

SECRET = "json-logs-s3cr3t-9f2c"


def test_json_lines_name_the_delivery_and_never_a_secret(
    tmp_path: Path, databases: Databases, receiver: Receiver, org: str
) -> None:
    service = ServiceProcess(
        [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            databases.new(tmp_path),
            "--allow-network",
            "127.0.0.0/8",
            "--log-format",
            "json",
            "--log-level",
            "debug",
        ],
        cwd=tmp_path,
    )
    token = service.admin_token
    try:
        with Client(service.target, token=token) as client:
            hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/{org}/json"), secret=SECRET)
            event = seed.update_event(stack=f"organizations/{org}/projects/website/stacks/prod")
            [name] = publish(client, event).deliveries
            wait_for_delivery(client, name)
            pinged = client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))
        with Client(service.target, token="not-a-token") as stranger:
            refused = rpc_error(stranger.webhooks.GetWebhook, WS.GetWebhookRequest(name=hook.name))
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        assert service.terminate() == 0, service.log

    lines = [json.loads(line) for line in service.lines]
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
        assert datetime.fromisoformat(line["time"]).tzinfo is not None, line

    [created] = [line for line in lines if "created webhook" in line["message"]]
    assert created["webhook"] == hook.name
    token_id = created["token_id"]
    [attempt] = [line for line in lines if line.get("delivery") == delivery_id(name) and "response_code" in line]
    assert attempt["webhook"] == hook.name
    assert (attempt["attempt"], attempt["response_code"]) == (1, 200)
    [ping] = [line for line in lines if "pinged" in line["message"]]
    assert (ping["delivery"], ping["token_id"]) == (pinged.name.rsplit("/", 1)[1], token_id)

    access = {(line["method"], line["code"]): line for line in lines if line["logger"] == "webhook_service.access"}
    published = access["PublishEvent", "OK"]
    assert published["token_id"] == token_id
    assert isinstance(published["duration_ms"], float) and published["duration_ms"] > 0
    assert "token_id" not in access["GetWebhook", "UNAUTHENTICATED"]

    text = service.log
    for never in (SECRET, token, hashlib.sha256(token.encode()).hexdigest(), "not-a-token"):
        assert never not in text, f"{never!r} is in the log"
    # From the start line to the last, everything the process said was a JSON line.
    assert any(line["message"].startswith("listening on 127.0.0.1:") for line in lines)
    assert lines[-1]["message"] == "stopped"
