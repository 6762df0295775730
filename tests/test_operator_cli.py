"""The operator's commands (`webhooks hooks`, `webhooks deliveries`, `webhooks publish`) against a real server:
tables for people, proto JSON for scripts, one-line errors with the status code and exit status 64 + code."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from tests import seed
from tests.helpers import delivery_id, get_delivery, wait_for_delivery
from tests.support.certs import Authority
from tests.support.process import webhooks_command
from tests.support.receiver import Receiver, Reply
from tests.support.running import RunningServer
from tests.support.tokens import create_token
from tests.support.waiting import eventually
from webhook_service.cli import main
from webhook_service.process import TlsSettings
from webhooks_client import WebhookDeliveryState, verify_signature

Start = Callable[..., RunningServer]
NOT_FOUND = 64 + 5
INVALID_ARGUMENT = 64 + 3
PERMISSION_DENIED = 64 + 7
UNAVAILABLE = 64 + 14
UNAUTHENTICATED = 64 + 16


@dataclass
class Done:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)

    @property
    def lines(self) -> list[str]:
        assert self.code == 0, self.err
        return self.out.splitlines()


def webhooks(*args: str) -> Done:
    """`main` in this process, with what it prints captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit:
            code = int(exit.code or 0)
    return Done(code, out.getvalue(), err.getvalue())


def as_admin(server: RunningServer, *args: str) -> Done:
    return webhooks(*args, "--server", server.target, "--token", server.admin_token)


def console(*args: str, stdin: str = "", **env: str) -> Done:
    """The installed `webhooks` script, as a person or a script runs it."""
    done = subprocess.run(
        [webhooks_command(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    return Done(done.returncode, done.stdout, done.stderr)


def field(lines: list[str], label: str) -> str:
    """The value of a `label:  value` line of a detail view."""
    [value] = [line.split(":", 1)[1].strip() for line in lines if line.startswith(f"{label}:")]
    return value


def table(lines: list[str]) -> list[dict[str, str]]:
    """The rows of an aligned table as dicts, cut where the header's columns start."""
    header = lines[0]
    names = header.split("  ")
    names = [name.strip() for name in names if name.strip()]
    starts = [header.index(name) for name in names]
    ends = [*starts[1:], None]
    return [
        {name: line[start:end].strip() for name, start, end in zip(names, starts, ends, strict=True)}
        for line in lines[1:]
    ]


def event_json(org: str) -> str:
    event = seed.update_event(stack=f"organizations/{org}/projects/website/stacks/prod")
    return json_format.MessageToJson(event)


def test_create_get_list_update_and_delete_a_webhook(server: RunningServer, tmp_path: Path, org: str) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cr3t-from-a-file\n")
    stack = f"organizations/{org}/projects/website/stacks/prod"
    created = as_admin(
        server,
        *shlex.split(
            f"hooks create {stack} --id failures --display-name 'Prod failures' --url https://hooks.example.com/prod "
            f"--secret-file {secret_file} --format slack --filters update-failed,DESTROY_FAILED --groups deployments "
            "--no-active --ordering per-stack --output json"
        ),
    )
    hook = created.json()
    name = f"{stack}/webhooks/failures"
    assert hook["name"] == name
    assert hook["display_name"] == "Prod failures"
    assert hook["payload_url"] == "https://hooks.example.com/prod"
    assert hook["format"] == "WEBHOOK_FORMAT_SLACK"
    assert hook["filters"] == ["WEBHOOK_FILTER_UPDATE_FAILED", "WEBHOOK_FILTER_DESTROY_FAILED"]
    assert hook["groups"] == ["WEBHOOK_GROUP_DEPLOYMENTS"]
    assert hook["active"] is False
    assert hook["ordering"] == "ORDERING_PER_STACK"
    assert hook["has_secret"] is True
    assert "s3cr3t" not in created.out

    shown = as_admin(server, "hooks", "get", name).lines
    assert field(shown, "name") == name
    assert field(shown, "display name") == "Prod failures"
    assert field(shown, "active") == "no"
    assert field(shown, "format") == "slack"
    assert field(shown, "events") == "filters update-failed, destroy-failed; groups deployments"
    assert field(shown, "ordering") == "per-stack"
    assert field(shown, "secret") == "set"
    assert field(shown, "created").endswith("ago)") or field(shown, "created").endswith("(just now)")
    assert field(shown, "etag") == hook["etag"]

    [row] = table(as_admin(server, "hooks", "list", stack).lines)
    assert row["NAME"] == name
    assert row["ACTIVE"] == "no"
    assert row["FORMAT"] == "slack"
    assert row["ORDERING"] == "per-stack"
    assert row["URL"] == "https://hooks.example.com/prod"
    assert row["DISPLAY NAME"] == "Prod failures"
    listed = as_admin(server, "hooks", "list", stack, "--output", "json").json()
    assert [item["name"] for item in listed["webhooks"]] == [name]
    assert listed["next_page_token"] == ""

    # Only the fields given change: the URL, format and filters stay; an empty --secret removes it.
    changed = as_admin(
        server, "hooks", "update", name, "--display-name", "Renamed", "--active", "--secret", "", "--output", "json"
    ).json()
    assert changed["display_name"] == "Renamed"
    assert changed["active"] is True
    assert changed["has_secret"] is False
    assert changed["payload_url"] == "https://hooks.example.com/prod"
    assert changed["format"] == "WEBHOOK_FORMAT_SLACK"
    assert changed["filters"] == hook["filters"]
    emptied = as_admin(server, "hooks", "update", name, "--filters", "", "--groups", "", "--output", "json").json()
    assert emptied["filters"] == [] and emptied["groups"] == []
    assert field(as_admin(server, "hooks", "get", name).lines, "events") == "every event"
    unordered = as_admin(server, "hooks", "update", name, "--ordering", "unordered", "--output", "json").json()
    assert unordered["ordering"] == "ORDERING_UNSPECIFIED"
    assert field(as_admin(server, "hooks", "get", name).lines, "ordering") == "unordered"

    stale = as_admin(server, "hooks", "update", name, "--etag", hook["etag"], "--display-name", "Lost")
    assert stale.code == 64 + 10
    assert stale.err.startswith("webhooks hooks update: ABORTED: ")
    assert "(ETAG_MISMATCH)" in stale.err

    assert as_admin(server, "hooks", "delete", name).lines == [f"deleted {name}"]
    gone = as_admin(server, "hooks", "get", name)
    assert gone.code == NOT_FOUND
    assert gone.out == ""
    assert gone.err == f"webhooks hooks get: NOT_FOUND: webhook {name} does not exist (WEBHOOK_NOT_FOUND)\n"
    assert as_admin(server, "hooks", "delete", name, "--output", "json").code == NOT_FOUND


def test_update_without_a_field_to_change_sends_nothing(server: RunningServer, org: str) -> None:
    done = as_admin(server, "hooks", "update", f"organizations/{org}/webhooks/x")
    assert done.code == 2
    assert done.err.startswith("webhooks hooks update: nothing to change: give at least one of --display-name")


def test_lists_follow_pages(server: RunningServer, org: str) -> None:
    parent = f"organizations/{org}"
    names = [
        as_admin(
            server, "hooks", "create", parent, "--display-name", f"hook {n}", "--url", f"https://e.example.com/{n}"
        ).lines[0]
        for n in range(3)
    ]
    assert all(line.startswith("name:") for line in names)
    first = as_admin(server, "hooks", "list", parent, "--page-size", "2")
    assert len(table(first.lines)) == 2
    [hint] = first.err.splitlines()
    token = hint.split("--page-token ")[1].split()[0]
    rest = as_admin(server, "hooks", "list", parent, "--page-size", "2", "--page-token", token)
    assert [row["DISPLAY NAME"] for row in table(rest.lines)] == ["hook 2"]
    assert rest.err == ""
    every = as_admin(server, "hooks", "list", parent, "--page-size", "2", "--all", "--output", "json").json()
    assert [hook["display_name"] for hook in every["webhooks"]] == ["hook 0", "hook 1", "hook 2"]
    assert every["next_page_token"] == ""
    nothing = as_admin(server, "hooks", "list", f"organizations/{org}-empty")
    assert nothing.out == ""
    assert nothing.err == f"no webhooks under organizations/{org}-empty\n"


def test_publish_ping_and_the_delivery_log(server: RunningServer, receiver: Receiver, org: str, tmp_path: Path) -> None:
    path = f"/cli-{org}"
    # Every delivery must verify with the secret file's line, without the editor's newline.
    receiver.check(path, lambda headers, body: _verify("s3cr3t", headers, body))
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cr3t\n")
    hook = as_admin(
        server,
        *("hooks", "create", f"organizations/{org}", "--display-name", "All", "--url", receiver.url(path)),
        *("--secret-file", str(secret_file)),
    )
    name = field(hook.lines, "name")

    event_file = tmp_path / "event.json"
    event_file.write_text(event_json(org))
    published = as_admin(server, "publish", str(event_file), "--request-id", f"cli-{org}")
    first, delivery = published.lines
    assert first.startswith("published event ") and first.endswith(": 1 delivery queued")
    assert delivery.startswith(f"{name}/deliveries/")
    # The same request ID answers the first result again: the same delivery, nothing new queued.
    again = as_admin(server, "publish", str(event_file), "--request-id", f"cli-{org}", "--output", "json").json()
    assert again["deliveries"] == [delivery]
    with server.client() as client:
        wait_for_delivery(client, delivery)
    receiver.wait_for(path, 1)

    [row] = table(as_admin(server, "deliveries", "list", name).lines)
    assert row["NAME"] == delivery
    assert row["KIND"] == "stack_update"
    assert row["STATE"] == "succeeded"
    assert row["ATTEMPTS"] == "1"
    assert row["CODE"] == "200"
    assert row["ERROR"] == "-"
    listed = as_admin(server, "deliveries", "list", name, "--view", "full", "--output", "json").json()
    [item] = listed["deliveries"]
    assert item["name"] == delivery
    assert item["state"] == "WEBHOOK_DELIVERY_STATE_SUCCEEDED"
    assert len(item["attempts"]) == 1

    got = as_admin(server, "deliveries", "get", delivery, "--output", "json").json()
    assert got["event_id"] == again["event_id"]
    assert json.loads(got["payload"])["stackName"] == "prod"
    assert [attempt["response_code"] for attempt in got["attempts"]] == [200]
    basic = as_admin(server, "deliveries", "get", delivery, "--view", "basic", "--output", "json").json()
    assert basic["attempts"] == [] and basic["payload"] == ""

    redelivered = as_admin(server, "deliveries", "redeliver", delivery).lines
    assert field(redelivered, "name") == delivery
    assert field(redelivered, "attempts") == "2"
    assert field(redelivered, "state") == "succeeded"
    attempts = table(redelivered[redelivered.index("") + 1 : redelivered.index("payload:") - 1])
    assert [(attempt["ATTEMPT"], attempt["CODE"]) for attempt in attempts] == [("1", "200"), ("2", "200")]
    assert '  "stackName": "prod",' in redelivered  # the payload, pretty-printed
    assert len(receiver.wait_for(path, 2)) == 2

    pinged = as_admin(server, "hooks", "ping", name, "--output", "json").json()
    assert pinged["kind"] == "ping"
    assert pinged["state"] == "WEBHOOK_DELIVERY_STATE_SUCCEEDED"
    assert pinged["attempt_count"] == 1
    ping_table = as_admin(server, "hooks", "ping", name).lines
    assert field(ping_table, "kind") == "ping"
    assert field(ping_table, "response").startswith("200 in ")
    assert all(not received.refused for received in receiver.wait_for(path, 4))


def test_per_stack_ordering_set_by_the_cli_holds_a_stacks_later_event_back(
    start_server: Start, receiver: Receiver, org: str, tmp_path: Path
) -> None:
    """The first event's delivery fails once and is retried after 0.5 s; unordered, the second event's would go
    out meanwhile."""
    server = start_server(retry_schedule=(0.0, 0.5))
    path = f"/cli-ordered-{org}"
    receiver.script(path, [Reply(status=500), Reply()])
    stack = f"organizations/{org}/projects/website/stacks/prod"
    created = as_admin(
        server,
        *("hooks", "create", stack, "--display-name", "O", "--url", receiver.url(path), "--ordering", "per-stack"),
    )
    name = field(created.lines, "name")
    event_file = tmp_path / "event.json"
    event_file.write_text(event_json(org))
    published = [as_admin(server, "publish", str(event_file)).lines[1] for _ in range(2)]
    received = receiver.wait_for(path, 3)
    assert [request.headers["Pulumi-Webhook-ID"] for request in received] == [
        delivery_id(published[0]),
        delivery_id(published[0]),
        delivery_id(published[1]),
    ]
    assert field(as_admin(server, "hooks", "get", name).lines, "ordering") == "per-stack"


def test_health_in_get_list_and_json(start_server: Start, receiver: Receiver, org: str, tmp_path: Path) -> None:
    """A delivery that fails and waits an hour for its retry, then one that succeeds."""
    server = start_server(retry_schedule=(0.0, 3600.0))
    path = f"/cli-health-{org}"
    receiver.script(path, [Reply(status=500), Reply()])
    parent = f"organizations/{org}"
    name = field(
        as_admin(server, "hooks", "create", parent, "--display-name", "H", "--url", receiver.url(path)).lines, "name"
    )
    event_file = tmp_path / "event.json"
    event_file.write_text(event_json(org))
    shown = as_admin(server, "hooks", "get", name).lines
    assert (field(shown, "last success"), field(shown, "failing since"), field(shown, "pending")) == (
        "-",
        "-",
        "0 deliveries",
    )
    assert field(shown, "last 24 hours") == "0 attempts succeeded, 0 failed"

    [failing] = as_admin(server, "publish", str(event_file)).lines[1:]
    with server.client() as client:
        eventually(
            lambda: get_delivery(client, failing).attempt_count > 0, 15, "the first attempt is recorded", every=0.05
        )
    shown = as_admin(server, "hooks", "get", name).lines
    assert field(shown, "last success") == "-"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \((just now|\d+s ago)\)", field(shown, "failing since"))
    assert field(shown, "pending") == "1 delivery"
    assert field(shown, "last 24 hours") == "0 attempts succeeded, 1 failed"

    [succeeding] = as_admin(server, "publish", str(event_file)).lines[1:]
    with server.client() as client:
        wait_for_delivery(client, succeeding)
    shown = as_admin(server, "hooks", "get", name).lines
    assert field(shown, "last success") != "-"
    assert field(shown, "failing since") == "-"
    assert field(shown, "pending") == "1 delivery"
    assert field(shown, "last 24 hours") == "1 attempt succeeded, 1 failed"
    [row] = table(as_admin(server, "hooks", "list", parent).lines)
    assert row["LAST SUCCESS"] in ("just now", *(f"{n}s ago" for n in range(60)))
    assert (row["FAILING SINCE"], row["PENDING"], row["24H OK/FAILED"]) == ("-", "1", "1/1")
    assert row["ORDERING"] == "unordered"
    [listed] = as_admin(server, "hooks", "list", parent, "--output", "json").json()["webhooks"]
    assert "last_success_time" in listed and "failing_since" not in listed
    assert (listed["pending_deliveries"], listed["succeeded_attempts_24h"], listed["failed_attempts_24h"]) == (
        "1",
        "1",
        "1",
    )


def test_publish_dry_run_explains_each_webhook_and_stores_nothing(
    server: RunningServer, org: str, tmp_path: Path
) -> None:
    parent = f"organizations/{org}"
    prod, dev = f"{parent}/projects/website/stacks/prod", f"{parent}/projects/website/stacks/dev"
    for hook_parent, hook_id, flags in (
        (parent, "all", ()),
        (parent, "off", ("--no-active",)),
        (prod, "failures", ("--filters", "update-failed")),
        (dev, "dev", ()),
    ):
        created = as_admin(
            server,
            *("hooks", "create", hook_parent, "--id", hook_id, "--display-name", hook_id),
            *("--url", "https://hooks.example.com/x", *flags),
        )
        assert created.code == 0, created.err
    event_file = tmp_path / "event.json"
    event_file.write_text(event_json(org))

    done = as_admin(server, "publish", str(event_file), "--dry-run")
    assert done.lines[0] == "dry run, nothing stored or sent: 1 of 4 webhooks would receive the event"
    rows = {row["WEBHOOK"]: row for row in table(done.lines[1:])}
    assert {hook: (row["MATCHED"], row["REASON"]) for hook, row in rows.items()} == {
        f"{parent}/webhooks/all": ("yes", "-"),
        f"{parent}/webhooks/off": ("no", "inactive"),
        f"{prod}/webhooks/failures": ("no", "filter"),
        f"{dev}/webhooks/dev": ("no", "other-stack"),
    }
    assert "update_failed" in rows[f"{prod}/webhooks/failures"]["DETAIL"]
    assert "website/dev" in rows[f"{dev}/webhooks/dev"]["DETAIL"]
    assert done.err == ""

    # As a script reads it; a reader, who may not publish, may ask.
    as_reader = {**env_of(server), "WEBHOOKS_TOKEN": create_token(server.settings.database, "reader", org)}
    answer = console("publish", "--dry-run", "--output", "json", stdin=event_json(org), **as_reader).json()
    assert [(match["webhook"], match["matched"], match["reason"]) for match in answer["matches"]] == [
        (f"{dev}/webhooks/dev", False, "MISMATCH_REASON_OTHER_STACK"),
        (f"{prod}/webhooks/failures", False, "MISMATCH_REASON_FILTER"),
        (f"{parent}/webhooks/all", True, "MISMATCH_REASON_UNSPECIFIED"),
        (f"{parent}/webhooks/off", False, "MISMATCH_REASON_INACTIVE"),
    ]
    assert answer["other_stacks_truncated"] is False
    assert console("publish", stdin=event_json(org), **as_reader).code == PERMISSION_DENIED

    # Nothing was stored: the webhook that would receive the event has no delivery.
    stored = as_admin(server, "deliveries", "list", f"{parent}/webhooks/all", "--output", "json").json()
    assert stored["deliveries"] == []
    both = as_admin(server, "publish", str(event_file), "--dry-run", "--request-id", "r1")
    assert both.code == 2
    assert both.err == "webhooks publish: --request-id has no use with --dry-run, which stores nothing\n"


def _verify(secret: str, headers: dict[str, str], body: bytes) -> None:
    if not verify_signature(secret, body, headers.get("Pulumi-Webhook-Signature", "")):
        raise ValueError("signature does not verify")


def test_recover_queues_failed_deliveries_again(start_server: Start, receiver: Receiver, org: str) -> None:
    server = start_server(retry_schedule=(0.0,))
    path = f"/cli-recover-{org}"
    # A receiver chooses its response body, escape sequences included: a terminal must not act on them.
    receiver.script(path, [Reply(status=500, body="\x1b[2J\x1b[31mdatabase down\x1b[0m")])
    name = field(
        as_admin(
            server, "hooks", "create", f"organizations/{org}", "--display-name", "R", "--url", receiver.url(path)
        ).lines,
        "name",
    )
    [delivery] = console("publish", "--output", "json", stdin=event_json(org), **env_of(server)).json()["deliveries"]
    with server.client() as client:
        wait_for_delivery(client, delivery, WebhookDeliveryState.WEBHOOK_DELIVERY_STATE_FAILED)
    [row] = table(as_admin(server, "deliveries", "list", name).lines)
    assert (row["STATE"], row["CODE"], row["NEXT ATTEMPT"]) == ("failed", "500", "-")
    failed = as_admin(server, "deliveries", "get", delivery)
    assert field(failed.lines, "response body") == "\\x1b[2J\\x1b[31mdatabase down\\x1b[0m"
    assert "\x1b" not in failed.out
    assert json.loads(as_admin(server, "deliveries", "get", delivery, "--output", "json").out)[
        "response_body"
    ].startswith("\x1b[2J")

    receiver.script(path, [Reply()])
    assert as_admin(server, "deliveries", "recover", name, "--since", "1h").lines == ["queued 1 failed delivery again"]
    with server.client() as client:
        wait_for_delivery(client, delivery)
    # Nothing failed is left, and the count is in the JSON even when it is 0.
    none_left = as_admin(server, "deliveries", "recover", f"organizations/{org}", "--since", "2024-05-01T00:00:00Z")
    assert none_left.lines == ["queued 0 failed deliveries again"]
    assert as_admin(
        server, "deliveries", "recover", name, "--since", "2024-05-01T00:00:00Z", "--output", "json"
    ).json() == {"recovered_count": 0}
    bad = as_admin(server, "deliveries", "recover", name, "--since", "yesterday")
    assert bad.code == 2
    assert "'yesterday' is neither a time such as 2024-05-01T00:00:00Z nor a duration such as 2h" in bad.err


def env_of(server: RunningServer) -> dict[str, str]:
    return {"WEBHOOKS_SERVER": server.target, "WEBHOOKS_TOKEN": server.admin_token}


def test_errors_are_one_line_with_the_code_and_an_exit_status_per_code(server: RunningServer, org: str) -> None:
    parent = f"organizations/{org}"
    invalid = as_admin(server, "hooks", "create", parent, "--display-name", " ", "--url", "ftp://example.com/x")
    assert invalid.code == INVALID_ARGUMENT
    assert invalid.out == ""
    assert invalid.err == (
        "webhooks hooks create: INVALID_ARGUMENT: webhook.display_name: is required (FIELD_REQUIRED); "
        "webhook.payload_url: must be an http or https URL (INVALID_URL)\n"
    )
    # Nothing was created.
    assert as_admin(server, "hooks", "list", parent, "--output", "json").json()["webhooks"] == []

    missing_parent = as_admin(server, "deliveries", "list", f"{parent}/webhooks/nope")
    assert missing_parent.code == NOT_FOUND
    assert missing_parent.err.endswith("(WEBHOOK_NOT_FOUND)\n")
    bad_name = as_admin(server, "deliveries", "get", "not-a-delivery")
    assert bad_name.code == INVALID_ARGUMENT
    assert bad_name.err.startswith("webhooks deliveries get: INVALID_ARGUMENT: name: ")

    # Without a token, through the installed script: UNAUTHENTICATED, nothing on stdout.
    anonymous = console("hooks", "list", parent, "--server", server.target, WEBHOOKS_TOKEN="", WEBHOOKS_TOKEN_FILE="")
    assert anonymous.code == UNAUTHENTICATED
    assert anonymous.out == ""
    [line] = anonymous.err.splitlines()
    assert line.startswith("webhooks hooks list: UNAUTHENTICATED: ")
    assert line.endswith("(TOKEN_MISSING)")

    reader = create_token(server.settings.database, "reader", org)
    as_reader = ("--server", server.target, "--token", reader)
    assert webhooks("hooks", "list", parent, *as_reader).code == 0
    denied = webhooks("hooks", "create", parent, "--display-name", "x", "--url", "https://e.example.com", *as_reader)
    assert denied.code == PERMISSION_DENIED
    assert "(OPERATION_NOT_ALLOWED)" in denied.err

    unreachable = webhooks("hooks", "list", parent, "--server", "127.0.0.1:1", "--token", "x", "--timeout", "10s")
    assert unreachable.code == UNAVAILABLE
    assert unreachable.err.startswith("webhooks hooks list: UNAVAILABLE: ")


def test_the_token_comes_from_a_flag_a_file_or_the_environment(server: RunningServer, org: str, tmp_path: Path) -> None:
    parent = f"organizations/{org}"
    token_file = tmp_path / "token"
    token_file.write_text(server.admin_token + "\n")
    assert console("hooks", "list", parent, "--server", server.target, "--token-file", str(token_file)).code == 0
    by_env = console("hooks", "list", parent, "--output", "json", **env_of(server))
    assert by_env.json() == {"webhooks": [], "next_page_token": ""}
    both = webhooks("hooks", "list", parent, "--token", "a", "--token-file", str(token_file))
    assert both.code == 2
    assert "give --token or --token-file" in both.err
    unreadable = webhooks("hooks", "list", parent, "--token-file", str(tmp_path / "absent"))
    assert unreadable.code == 2
    assert unreadable.err == f"webhooks hooks list: --token-file {tmp_path / 'absent'}: No such file or directory\n"


def test_publish_reads_standard_input_and_refuses_what_is_not_an_event(server: RunningServer, org: str) -> None:
    stack = f"organizations/{org}/projects/website/stacks/prod"
    as_admin(server, "hooks", "create", stack, "--display-name", "x", "--url", "https://e.example.com/x")
    piped = console("publish", stdin=event_json(org), **env_of(server))
    assert piped.code == 0, piped.err
    first, delivery = piped.lines
    assert first.endswith(": 1 delivery queued")
    assert delivery.startswith(f"{stack}/webhooks/")
    # snake_case field names are proto JSON too.
    snake = json.dumps({"stack": stack, "deployment_event": {"status": "DEPLOYMENT_STATUS_QUEUED", "version": 3}})
    assert len(console("publish", "-", "--output", "json", stdin=snake, **env_of(server)).json()["deliveries"]) == 1

    not_json = console("publish", stdin="{", **env_of(server))
    assert not_json.code == 2
    [line] = not_json.err.splitlines()
    assert line.startswith("webhooks publish: standard input is not a webhooks.v1.Event in proto JSON: ")
    unknown = console("publish", stdin=json.dumps({"stack": stack, "colour": "red"}), **env_of(server))
    assert unknown.code == 2
    assert "colour" in unknown.err
    # Well-formed JSON that the service refuses names the field.
    no_payload = console("publish", stdin=json.dumps({"stack": stack}), **env_of(server))
    assert no_payload.code == INVALID_ARGUMENT
    assert no_payload.err.startswith("webhooks publish: INVALID_ARGUMENT: event.payload: ")
    assert console("publish", "/nonexistent/event.json", **env_of(server)).code == 2


def test_mutual_tls(start_server: Start, tmp_path: Path, org: str) -> None:
    server_ca, client_ca = Authority(tmp_path, "server CA"), Authority(tmp_path, "client CA")
    server_pem = server_ca.issue("server", server=True)
    client_pem = client_ca.issue("client", server=False)
    server = start_server(tls=TlsSettings(server_pem.cert, server_pem.key, client_ca.pem.cert))
    parent = f"organizations/{org}"
    tls = {
        "WEBHOOKS_TLS_CA": str(server_ca.pem.cert),
        "WEBHOOKS_TLS_CLIENT_CERT": str(client_pem.cert),
        "WEBHOOKS_TLS_CLIENT_KEY": str(client_pem.key),
    }
    done = console("hooks", "list", parent, "--output", "json", **env_of(server), **tls)
    assert done.json() == {"webhooks": [], "next_page_token": ""}
    flags = ("--tls-ca", str(server_ca.pem.cert), "--tls-client-cert", str(client_pem.cert))
    created = as_admin(
        server,
        *("hooks", "create", parent, "--display-name", "x", "--url", "https://e.example.com"),
        *(*flags, "--tls-client-key", str(client_pem.key)),
    )
    assert created.code == 0, created.err

    # Without a client certificate, or in plaintext, the server lets nothing through; each failure is one
    # line, with none of gRPC's own log lines around it.
    for refused in (
        console("hooks", "list", parent, "--tls-ca", str(server_ca.pem.cert), **env_of(server)),
        console("hooks", "list", parent, "--tls", **env_of(server)),
        console("hooks", "list", parent, **env_of(server)),
    ):
        assert refused.code == UNAVAILABLE
        [line] = refused.err.splitlines()
        assert line.startswith("webhooks hooks list: UNAVAILABLE: ")
    half = as_admin(server, "hooks", "list", parent, *flags)
    assert half.code == 2
    assert "--tls-client-cert and --tls-client-key go together" in half.err
    not_pem = as_admin(server, "hooks", "list", parent, "--tls-ca", str(client_pem.key.parent / "nothing.txt"))
    assert not_pem.code == 2
    (tmp_path / "garbage.crt").write_text("garbage")
    garbage = as_admin(server, "hooks", "list", parent, "--tls-ca", str(tmp_path / "garbage.crt"))
    assert garbage.code == 2
    assert garbage.err == f"webhooks hooks list: --tls-ca {tmp_path / 'garbage.crt'}: not PEM (no -----BEGIN line)\n"
