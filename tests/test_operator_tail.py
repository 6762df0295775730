"""`webhooks tail` against a real server, run as a person runs it: a line per attempt (or a JSON object per line),
coloured states on a terminal only, Ctrl-C ending it with 130, the server's shutdown with 0."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from types import TracebackType

import pytest

from tests import seed
from tests.helpers import WS, delivery_id, make_webhook, publish, wait_for_delivery
from tests.support.process import webhooks_command
from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from tests.support.terminal import sigint_as_in_a_terminal
from tests.support.waiting import eventually
from webhook_service.cli import build_parser
from webhooks.v1 import delivery_pb2
from webhooks_client import Client

Start = Callable[..., RunningServer]
# Nothing listens there: each attempt fails at once, without an answer.
CLOSED = "http://127.0.0.1:9/closed"
GREEN, RED, YELLOW, RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[0m"
TIME = re.compile(r"\d\d:\d\d:\d\d")
TOOK = re.compile(r"\d+ms|\d+\.\d\ds")


def environment_for(server: RunningServer, **env: str) -> dict[str, str]:
    """Where the server is and its admin token, as a person exports them; no NO_COLOR the tests' runner has."""
    environment = {name: value for name, value in os.environ.items() if name != "NO_COLOR"}
    return {**environment, "WEBHOOKS_SERVER": server.target, "WEBHOOKS_TOKEN": server.admin_token, **env}


class Tail:
    """`webhooks tail PARENT ...` as a child process, its output read as it comes; on a pseudo-terminal when
    `terminal`, as when a person runs it in one."""

    def __init__(self, server: RunningServer, *args: str, terminal: bool = False, **env: str) -> None:
        self.out: list[str] = []
        self.err: list[str] = []
        self._stdout = -1
        if terminal:
            self._stdout, screen = pty.openpty()
        # Ctrl-C reaches it as it does a command a person starts in a terminal.
        with sigint_as_in_a_terminal():
            self.process = subprocess.Popen(
                [webhooks_command(), "tail", *args],
                stdout=screen if terminal else subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=environment_for(server, **env),
            )
        if terminal:
            os.close(screen)
        self._readers = [
            threading.Thread(target=self._read_terminal if terminal else self._read_pipe, daemon=True),
            threading.Thread(target=self._read_errors, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_pipe(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.out.append(line)

    def _read_terminal(self) -> None:
        text = ""
        while True:
            try:
                chunk = os.read(self._stdout, 4096)
            except OSError:  # EIO: the terminal's other side closed with the process
                chunk = b""
            if not chunk:
                break
            text += chunk.decode()
            # A terminal ends lines with \r\n.
            *lines, text = text.split("\r\n")
            self.out.extend(line + "\n" for line in lines)
        os.close(self._stdout)

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.err.append(line)

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
        eventually(
            condition,
            timeout,
            lambda: f"{what}\nstdout:\n{''.join(self.out)}\nstderr:\n{''.join(self.err)}",
            every=0.02,
        )

    def wait_for_watch(self) -> None:
        """Until tail says its watch is in place: from then on no attempt is missed."""
        self.wait_until(lambda: any(" watching " in line for line in self.err), "watching line")

    def wait_for_lines(self, count: int) -> list[str]:
        self.wait_until(lambda: len(self.out) >= count, f"{count} lines")
        return [line.rstrip("\n") for line in self.out]

    def wait(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(10)
        return code

    def interrupt(self) -> int:
        """Ctrl-C."""
        self.process.send_signal(signal.SIGINT)
        return self.wait()

    def __enter__(self) -> Tail:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.wait()


def columns(line: str) -> dict[str, str]:
    """A tail line's columns: when, delivery, kind, attempt, code, took, state, and error if any."""
    when, delivery, kind, word, number, code, took, state, *error = line.split(None, 8)
    assert word == "attempt", line
    return {
        "when": when,
        "delivery": delivery,
        "kind": kind,
        "attempt": number,
        "code": code,
        "took": took,
        "state": state,
        "error": error[0] if error else "",
    }


def by_delivery(lines: list[str]) -> dict[str, dict[str, str]]:
    shown = [columns(line) for line in lines]
    return {row["delivery"]: row for row in shown}


def prod_event(org: str) -> object:
    return seed.update_event(stack=f"organizations/{org}/projects/website/stacks/prod")


@pytest.fixture
def hooks(server: RunningServer, receiver: Receiver, org: str) -> Iterator[tuple[Client, str, str]]:
    """A client, and the names of an organization webhook whose receiver answers 200 (`good`) and of a stack
    webhook nothing answers (`bad`)."""
    with server.client() as client:
        good = make_webhook(client, f"organizations/{org}", receiver.url(f"/{org}/tail"), webhook_id="good")
        bad = make_webhook(client, f"organizations/{org}/projects/website/stacks/prod", CLOSED, webhook_id="bad")
        yield client, good.name, bad.name


def ping(client: Client, name: str) -> str:
    return client.webhooks.PingWebhook(WS.PingWebhookRequest(name=name)).name


def test_a_line_per_attempt_without_colour_in_a_pipe_until_ctrl_c(
    server: RunningServer, org: str, hooks: tuple[Client, str, str]
) -> None:
    client, good, bad = hooks
    with Tail(server, f"organizations/{org}") as tail:
        tail.wait_for_watch()
        pinged = ping(client, good)
        published = publish(client, prod_event(org)).deliveries
        [to_good] = [name for name in published if name.startswith(good)]
        [to_bad] = [name for name in published if name.startswith(bad)]
        lines = tail.wait_for_lines(3)
        code = tail.interrupt()
    # Ctrl-C: the status a shell gives a command SIGINT ended, no traceback, nothing more said.
    assert code == 130
    assert tail.err == [f"webhooks tail: watching organizations/{org} until Ctrl-C\n"]
    assert len(lines) == 3
    # The ping came back before the event was published, so its line is first.
    assert columns(lines[0])["delivery"] == f"good/{delivery_id(pinged)}"
    shown = by_delivery(lines)
    # Below the organization: WEBHOOK/ID for its own webhooks, PROJECT/STACK/WEBHOOK/ID for its stacks'.
    assert shown[f"good/{delivery_id(pinged)}"] | {"when": "", "took": ""} == {
        "when": "",
        "delivery": f"good/{delivery_id(pinged)}",
        "kind": "ping",
        "attempt": "1",
        "code": "200",
        "took": "",
        "state": "succeeded",
        "error": "",
    }
    assert shown[f"good/{delivery_id(to_good)}"]["kind"] == "stack_update"
    assert shown[f"good/{delivery_id(to_good)}"]["state"] == "succeeded"
    failing = shown[f"website/prod/bad/{delivery_id(to_bad)}"]
    # No answer: no code; the first attempt failed, so the delivery waits for its retry.
    assert (failing["kind"], failing["attempt"], failing["code"], failing["state"]) == (
        "stack_update",
        "1",
        "-",
        "pending",
    )
    assert "Cannot connect to host 127.0.0.1:9" in failing["error"]
    for row in shown.values():
        assert TIME.fullmatch(row["when"]), row
        assert TOOK.fullmatch(row["took"]), row
    assert not any("\x1b" in line for line in lines)


def test_json_lines_of_only_the_states_asked_for(
    server: RunningServer, org: str, hooks: tuple[Client, str, str]
) -> None:
    client, good, bad = hooks
    with Tail(server, f"organizations/{org}", "--output", "json", "--state", "failed", "--state", "PENDING") as tail:
        tail.wait_for_watch()
        ping(client, good)
        published = publish(client, prod_event(org)).deliveries
        [to_good] = [name for name in published if name.startswith(good)]
        [to_bad] = [name for name in published if name.startswith(bad)]
        wait_for_delivery(client, to_good)
        wait_for_delivery(client, to_bad, delivery_pb2.WEBHOOK_DELIVERY_STATE_PENDING)
        # Recorded after every attempt above, so once its line is there, theirs would be too.
        last = ping(client, bad)
        tail.wait_until(lambda: last in "".join(tail.out), "line of the last ping")
        lines = tail.wait_for_lines(2)
        tail.interrupt()
    objects = [json.loads(line) for line in lines]
    assert [(o["delivery"], o["kind"], o["state"]) for o in objects] == [
        (to_bad, "stack_update", "WEBHOOK_DELIVERY_STATE_PENDING"),
        (last, "ping", "WEBHOOK_DELIVERY_STATE_FAILED"),
    ]
    # Every field, by the name the .proto gives it, as the other commands' JSON; 64-bit counts as strings.
    assert set(objects[1]) == {
        "delivery",
        "kind",
        "attempt_number",
        "response_code",
        "duration",
        "state",
        "error",
        "finish_time",
        "dropped_count",
    }
    assert (objects[1]["attempt_number"], objects[1]["response_code"], objects[1]["dropped_count"]) == (1, 0, "0")
    assert "Cannot connect" in objects[1]["error"]


def test_states_are_coloured_on_a_terminal_unless_no_color_is_set(
    server: RunningServer, org: str, hooks: tuple[Client, str, str]
) -> None:
    client, good, bad = hooks
    with (
        Tail(server, f"organizations/{org}", terminal=True) as coloured,
        Tail(server, f"organizations/{org}", terminal=True, NO_COLOR="1") as plain,
    ):
        coloured.wait_for_watch()
        plain.wait_for_watch()
        ping(client, good)
        ping(client, bad)
        publish(client, prod_event(org))
        lines = coloured.wait_for_lines(4)
        plain_lines = plain.wait_for_lines(4)
        assert coloured.interrupt() == plain.interrupt() == 130
    states = [columns(line)["state"] for line in lines]
    assert states[:2] == [f"{GREEN}succeeded{RESET}", f"{RED}failed{RESET}"]
    assert sorted(states[2:]) == sorted([f"{GREEN}succeeded{RESET}", f"{YELLOW}pending{RESET}"])
    # Only the state is coloured.
    assert all(line.count("\x1b") == 2 for line in lines)
    assert [columns(line)["state"] for line in plain_lines[:2]] == ["succeeded", "failed"]
    assert not any("\x1b" in line for line in plain_lines)


def test_the_server_shutting_down_ends_tail_with_status_0(start_server: Start, org: str) -> None:
    server = start_server()
    with Tail(server, f"organizations/{org}") as tail:
        tail.wait_for_watch()
        server.stop()
        code = tail.wait()
    assert code == 0
    assert tail.err[1:] == ["webhooks tail: the server ended the watch: it is shutting down\n"]
    assert tail.out == []


def test_for_ends_tail_with_status_0(server: RunningServer, org: str) -> None:
    with Tail(server, f"organizations/{org}", "--for", "1s") as tail:
        code = tail.wait()
    assert code == 0
    assert tail.err == [f"webhooks tail: watching organizations/{org} for 1s\n"]


def test_a_reader_that_goes_away_ends_tail_quietly(
    server: RunningServer, org: str, hooks: tuple[Client, str, str]
) -> None:
    """As `webhooks tail ... | head -1`: the next line finds no reader, and tail ends as SIGPIPE would end it,
    without a traceback."""
    client, good, _ = hooks
    process = subprocess.Popen(
        [webhooks_command(), "tail", f"organizations/{org}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment_for(server),
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        assert " watching " in process.stderr.readline()
        pinged = ping(client, good)
        assert delivery_id(pinged) in process.stdout.readline()
        process.stdout.close()
        ping(client, good)
        code = process.wait(30)
        rest = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 141
    assert rest == ""


def test_errors_are_one_line_with_an_exit_status_per_code(server: RunningServer, org: str) -> None:
    missing = Tail(server, f"organizations/{org}/webhooks/nope")
    assert missing.wait() == 64 + 5
    assert missing.err == [
        f"webhooks tail: NOT_FOUND: webhook organizations/{org}/webhooks/nope does not exist (WEBHOOK_NOT_FOUND)\n"
    ]
    malformed = Tail(server, "organizations/")
    assert malformed.wait() == 64 + 3
    [line] = malformed.err
    assert line.startswith("webhooks tail: INVALID_ARGUMENT: parent: ")
    unknown = Tail(server, f"organizations/{org}", "--state", "retrying")
    assert unknown.wait() == 2
    assert "argument --state: 'retrying' is not one of pending, succeeded or failed" in "".join(unknown.err)


def test_a_server_that_never_answers_is_deadline_exceeded_after_the_timeout(org: str) -> None:
    """A listener that takes the connection and never speaks HTTP/2: without --timeout tail would wait for ever."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        done = subprocess.run(
            [webhooks_command(), "tail", f"organizations/{org}", "--timeout", "1s", "--token", "x"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "WEBHOOKS_SERVER": f"127.0.0.1:{silent.getsockname()[1]}", "WEBHOOKS_TOKEN_FILE": ""},
        )
    assert done.returncode == 64 + 4
    assert done.stderr == "webhooks tail: DEADLINE_EXCEEDED: the watch was not in place within 1s\n"
    assert done.stdout == ""


def test_states_are_given_repeated_or_comma_separated() -> None:
    args = build_parser().parse_args(
        ["tail", "organizations/acme", "--state", "failed,pending", "--state", "Succeeded"]
    )
    assert args.states == [
        delivery_pb2.WEBHOOK_DELIVERY_STATE_FAILED,
        delivery_pb2.WEBHOOK_DELIVERY_STATE_PENDING,
        delivery_pb2.WEBHOOK_DELIVERY_STATE_SUCCEEDED,
    ]


def test_attempts_a_stopped_tail_missed_are_counted(start_server: Start, receiver: Receiver, org: str) -> None:
    """A tail stopped (SIGSTOP, as Ctrl-Z does) while attempts go on reads none of them; the server keeps 8
    for it (the setting) and its connection some hundreds, counts the rest, and says how many on the next
    attempt, which tail reports on stderr."""
    server = start_server(watch_mailbox_size=8)
    parent = f"organizations/{org}"
    with server.client() as client:
        hooks = [make_webhook(client, parent, receiver.url(f"/{org}/stopped")).name for _ in range(25)]
        with Tail(server, parent, "--output", "json") as tail:
            tail.wait_for_watch()
            tail.process.send_signal(signal.SIGSTOP)
            try:
                published = [name for _ in range(24) for name in publish(client, prod_event(org)).deliveries]
                for name in published:
                    wait_for_delivery(client, name, timeout=60)
            finally:
                tail.process.send_signal(signal.SIGCONT)
            last = ping(client, hooks[0])
            tail.wait_until(lambda: last in "".join(tail.out), "line of the ping", timeout=60)
            tail.interrupt()
    seen = [json.loads(line) for line in tail.out]
    notes = tail.err[1:]
    dropped = [int(watched["dropped_count"]) for watched in seen if watched["dropped_count"] != "0"]
    assert dropped
    assert notes == [
        f"webhooks tail: {count} {'attempt' if count == 1 else 'attempts'} missed here: they finished faster than "
        "tail read them\n"
        for count in dropped
    ]
    assert len(seen) + sum(dropped) == len(published) + 1
