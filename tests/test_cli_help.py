"""`webhooks --help` as good as the README: typed placeholders, the duration format, real defaults."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.process import webhooks_command


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [webhooks_command(), *args], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )


OPERATOR_COMMANDS = (
    [f"hooks {verb}" for verb in ("list", "get", "create", "update", "delete", "ping")]
    + [f"deliveries {verb}" for verb in ("list", "get", "redeliver", "recover")]
    + ["publish", "tail"]
)


@pytest.mark.parametrize(
    "command", ["serve", "dispatch", "receive", "tokens create", "keys create", *OPERATOR_COMMANDS]
)
def test_every_flag_has_help_a_typed_placeholder_and_a_real_default(command: str) -> None:
    text = " ".join(run(*command.split(), "--help").stdout.split())
    for raw in ("[]", "None", "False", "True", "LISTEN ", "GRACE ", "ALLOW_NETWORK "):
        assert raw not in text, (raw, text)
    if command == "serve":
        for shown in (
            "--listen HOST:PORT",
            "--grace DURATION",
            "--allow-network CIDR",
            "--database URL",
            "--tls-cert FILE",
            "default 10s",
            "default 127.0.0.1:50051",
            "default none",
            "default off",
            "500ms, 15s, 5m, 2h or 5d",
        ):
            assert shown in text, (shown, text)
    if command == "tokens create":
        assert "publisher only PublishEvent" in text
    if command in OPERATOR_COMMANDS:
        for shown in (
            "--server HOST:PORT",
            "env WEBHOOKS_SERVER; default 127.0.0.1:50051",
            "--token TOKEN",
            "env WEBHOOKS_TOKEN; default none",
            "--token-file FILE",
            "--tls-ca FILE",
            "--tls-client-cert FILE",
            "--tls-client-key FILE",
            "--timeout DURATION",
            "--output FORMAT",
            "default table",
        ):
            assert shown in text, (shown, text)
    if command == "hooks create":
        for shown in (
            "PARENT",
            "--display-name TEXT",
            "--url URL",
            "--secret-file FILE",
            "--format FORMAT",
            "raw, slack or ms-teams",
            "--filters LIST",
            "update-failed",
            "--groups LIST",
            "stacks or deployments",
            "--active, --no-active",
            "--ordering ORDERING",
            "per-stack or unordered",
        ):
            assert shown in text, (shown, text)
    if command == "deliveries recover":
        assert "--since TIME" in text and "2024-05-01T00:00:00Z, or a duration ago such as 2h" in text
    if command == "publish":
        assert "FILE" in text and "webhooks.v1.Event in proto JSON" in text
        assert "--dry-run store and send nothing" in text
    if command == "tail":
        for shown in (
            "PARENT",
            "--state STATE",
            "pending, succeeded or failed; repeatable, or comma-separated",
            "--for DURATION",
            "--timeout DURATION time allowed for the watch to be in place",
            "each answer in proto JSON, one object a line",
            "NO_COLOR",
        ):
            assert shown in text, (shown, text)


def test_a_bad_value_says_what_is_accepted() -> None:
    done = run("serve", "--grace", "10")
    assert done.returncode == 2
    assert "argument --grace: '10' is not a duration such as 500ms, 15s, 5m, 2h or 5d" in done.stderr
    assert (
        "--dispatch-concurrency: 'many' is not a whole number" in run("serve", "--dispatch-concurrency", "many").stderr
    )


def test_receive_reads_its_own_variables() -> None:
    """An export meant for `serve` leaves `receive` alone, and the other way round."""
    text = " ".join(run("receive", "--help", WEBHOOKS_LISTEN="127.0.0.1:9999").stdout.split())
    assert "env WEBHOOKS_RECEIVE_LISTEN; default 127.0.0.1:8000" in text
    text = " ".join(run("receive", "--help", WEBHOOKS_RECEIVE_LISTEN="127.0.0.1:9001").stdout.split())
    assert "default 127.0.0.1:9001" in text
    text = " ".join(run("serve", "--help", WEBHOOKS_RECEIVE_LISTEN="127.0.0.1:9001").stdout.split())
    assert "default 127.0.0.1:50051" in text


def test_help_never_shows_a_secret_taken_from_the_environment() -> None:
    text = " ".join(run("receive", "--help", WEBHOOKS_RECEIVE_SECRET="hunter2-s3cr3t").stdout.split())
    assert "hunter2-s3cr3t" not in text
    assert "env WEBHOOKS_RECEIVE_SECRET; default set, not shown" in text
    text = " ".join(run("hooks", "list", "--help", WEBHOOKS_TOKEN="wh_hunter2").stdout.split())
    assert "wh_hunter2" not in text
    assert "env WEBHOOKS_TOKEN; default set, not shown" in text


def test_an_empty_variable_counts_as_unset() -> None:
    text = " ".join(run("hooks", "list", "--help", WEBHOOKS_SERVER="", WEBHOOKS_TOKEN_FILE="").stdout.split())
    assert "env WEBHOOKS_SERVER; default 127.0.0.1:50051" in text
    assert "env WEBHOOKS_TOKEN_FILE; default none" in text


def test_operator_values_are_checked_before_anything_is_sent() -> None:
    done = run("hooks", "create", "organizations/acme", "--display-name", "x", "--url", "u", "--filters", "sometimes")
    assert done.returncode == 2
    assert "argument --filters: 'sometimes' is not one of stack-created, " in done.stderr
    assert "argument --output: invalid format value: 'yaml'" in run("hooks", "list", "o", "--output", "yaml").stderr
