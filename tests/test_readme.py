"""The README's walk-through, run as written against a real server and the `webhooks receive` receiver."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import WS, make_webhook
from tests.support.process import ServiceProcess
from tests.support.readme import BIN, README, free_port, grpc_replacements, run_script, section, walk_through_receiver
from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from tests.support.waiting import eventually


def test_walk_through_runs_as_written(server: RunningServer) -> None:
    [script] = re.findall(r"```sh\n(.*?)```", section("Walk-through with grpcurl"), re.S)
    with walk_through_receiver() as (receiver, receiver_address):
        done = run_script(script, grpc_replacements(server, receiver_address))
        assert done.returncode == 0, done.stdout + done.stderr
        assert '"display_name": "Everything"' in done.stdout
        # The dry run: all-events would get the update, prod-failures's filters leave it out.
        assert '"matched": true' in done.stdout
        assert '"reason": "MISMATCH_REASON_FILTER"' in done.stdout
        assert '"status": "SERVING"' in done.stdout
        assert '"state": "WEBHOOK_DELIVERY_STATE_SUCCEEDED"' in done.stdout
        # The event, its redelivery and the ping, each signed with the webhook's secret.
        eventually(lambda: receiver.log.count("signature=valid") >= 3, 5, lambda: receiver.log, every=0.05)
        assert receiver.log.count("kind=stack_update id=") >= 2
        assert "kind=ping" in receiver.log
        assert "INVALID" not in receiver.log
        assert '"resourceChanges"' in receiver.log


def test_rotation_and_recovery_run_as_written(server: RunningServer) -> None:
    [script] = re.findall(r"```sh\n(.*?)```", section("Rotating secrets and recovering deliveries"), re.S)
    with walk_through_receiver() as (receiver, receiver_address):
        done = run_script(script, grpc_replacements(server, receiver_address))
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count('"previous_secret_expire_time"') == 1
        assert done.stdout.count('"recovered_count": 0') == 3
        assert "n3w-s3cr3t" not in done.stdout
        eventually(lambda: receiver.log.count("POST /rotating") >= 2, 5, lambda: receiver.log, every=0.05)
        # The ping during the overlap verifies with the old secret both ways; the one after it with neither.
        pings = [line for line in receiver.log.splitlines() if line.startswith("POST /rotating")]
        assert len(pings) == 2, receiver.log
        assert pings[0].endswith("signature=valid webhook-signature=valid")
        assert pings[1].endswith("signature=INVALID webhook-signature=INVALID")


def test_operator_commands_run_as_written(server: RunningServer) -> None:
    """The tail in the background lasts its 15 s whatever the rest takes, and the script waits for it."""
    [script] = re.findall(r"```sh\n(.*?)```", section("Command line"), re.S)
    with walk_through_receiver() as (receiver, receiver_address):
        done = run_script(script, grpc_replacements(server, receiver_address), timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stderr == "webhooks tail: watching organizations/acme for 15s\n"
        assert "organizations/acme/webhooks/cli-events  yes     raw     unordered" in done.stdout
        assert "events:         filters update-failed, destroy-failed; groups deployments" in done.stdout
        assert "ordering:       per-stack" in done.stdout
        # The dry run: both new webhooks would receive the failed update.
        assert re.search(r"^dry run, nothing stored or sent: \d+ of \d+ webhooks would receive", done.stdout, re.M)
        assert re.search(r"^organizations/acme/webhooks/cli-events +yes +- +it has no filters", done.stdout, re.M)
        assert re.search(
            r"^organizations/acme/projects/website/stacks/prod/webhooks/cli-failures +yes +- +its filter update_failed",
            done.stdout,
            re.M,
        )
        assert "published event " in done.stdout and ": 2 deliveries queued" in done.stdout
        # The tail's lines for the event's two deliveries, each below the organization.
        attempt = r"^\d\d:\d\d:\d\d  {} +stack_update +attempt 1 +200 +\S+ +succeeded$"
        assert re.search(attempt.format(r"cli-events/[0-9a-f]+"), done.stdout, re.M), done.stdout
        assert re.search(attempt.format(r"website/prod/cli-failures/[0-9a-f]+"), done.stdout, re.M), done.stdout
        assert "kind:           ping" in done.stdout
        assert re.search(r"^queued \d+ failed deliver(y|ies) again$", done.stdout, re.M)
        assert "display name:   CLI, paused" in done.stdout
        assert "deleted organizations/acme/projects/website/stacks/prod/webhooks/cli-failures" in done.stdout
        # The event to each webhook, its redelivery and the ping, each signed with the secret given on create.
        eventually(lambda: receiver.log.count("signature=valid") >= 4, 5, lambda: receiver.log, every=0.05)
        assert receiver.log.count("POST /cli kind=stack_update") == 2
        assert receiver.log.count("POST /cli-failures kind=stack_update") == 1
        assert "POST /cli kind=ping" in receiver.log
        assert "INVALID" not in receiver.log


def test_watching_runs_as_written(server: RunningServer, receiver: Receiver, org: str) -> None:
    """Each watch of the section for 4 s (grpcurl's -max-time, which ends it with DEADLINE_EXCEEDED, exit code
    68), while pings are made: an organization webhook's, which succeed, and a stack webhook's, which fail."""
    [script] = re.findall(r"```sh\n(.*?)```", section("Watching deliveries"), re.S)
    script = (
        script.replace("organizations/acme", f"organizations/{org}")
        .replace("grpcurl -plaintext", "grpcurl -max-time 4 -plaintext")
        .replace("/WatchWebhookDeliveries\n", "/WatchWebhookDeliveries || [ $? -eq 68 ]\n")
        .replace("# Only one stack's", "echo SECOND\n# Only one stack's")
    )
    stack = f"organizations/{org}/projects/website/stacks/prod"
    with server.client() as client:
        good = make_webhook(client, f"organizations/{org}", receiver.url(f"/{org}/watched"))
        bad = make_webhook(client, stack, "http://127.0.0.1:9/closed")
        done = threading.Event()

        def ping() -> None:
            while not done.wait(0.2):
                for hook in (good, bad):
                    client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))

        pinging = threading.Thread(target=ping)
        pinging.start()
        try:
            ran = run_script(script, grpc_replacements(server, ""))
        finally:
            done.set()
            pinging.join()
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stderr.count("DeadlineExceeded") == 2, ran.stderr
    first, second = ran.stdout.split("SECOND\n")
    assert '"kind": "ping"' in first
    assert '"state": "WEBHOOK_DELIVERY_STATE_SUCCEEDED"' in first and f'"delivery": "{good.name}/' in first
    assert f'"delivery": "{bad.name}/' in first
    assert second.count('"state": "WEBHOOK_DELIVERY_STATE_FAILED"') == second.count('"delivery"') > 0
    assert second.count(f'"delivery": "{bad.name}/') == second.count('"delivery"')


def test_ordering_example_runs_as_written(server: RunningServer) -> None:
    [script] = re.findall(r"```sh\n(.*?)```", section("Delivery guarantees"), re.S)
    with walk_through_receiver() as (_, receiver_address):
        done = run_script(script, grpc_replacements(server, receiver_address))
    assert done.returncode == 0, done.stdout + done.stderr
    # Set by the create; the update's answer leaves the default out.
    assert done.stdout.count('"ordering": "ORDERING_PER_STACK"') == 1, done.stdout
    assert done.stdout.count('"name": "organizations/acme/webhooks/in-order"') == 2, done.stdout


def test_token_commands_run_as_written(tmp_path: Path) -> None:
    [script] = re.findall(r"```sh\n(.*?)```", section("Security"), re.S)
    script = script.replace(".venv/bin/webhooks", str(Path(sys.executable).parent / "webhooks"))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("created token") == 2
    assert "publisher  acme" in done.stdout
    assert "reader     *" in done.stdout
    assert "revoked token" in done.stdout


def test_every_make_target_and_subcommand_in_the_readme_exists() -> None:
    makefile = (README.parent / "Makefile").read_text()
    for target in set(re.findall(r"`make (\w+)`", README.read_text())):
        assert re.search(rf"^{target}:", makefile, re.M), target
    help_text = subprocess.run(
        [str(Path(sys.executable).parent / "webhooks"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in set(re.findall(r"bin/webhooks (\w+) |^webhooks (\w+) ", README.read_text(), re.M)):
        assert "".join(command) in help_text, command


def test_running_at_scale_runs_as_written(tmp_path: Path) -> None:
    """The scale-out block as written, in a fresh folder, on free ports: its own PostgreSQL cluster, two API
    servers, two dispatchers, and a delivery to the walk-through's receiver."""
    [script] = re.findall(r"```sh\n(.*?)```", section("Running at scale"), re.S)
    ports = {old: f"127.0.0.1:{free_port()}" for old in ("127.0.0.1:50071", "127.0.0.1:50072")}
    replacements = {
        "55432": str(free_port()),
        **ports,
        "127.0.0.1:8081": f"127.0.0.1:{free_port()}",
        "127.0.0.1:8082": f"127.0.0.1:{free_port()}",
    }
    # Whatever fails, the processes started in the background and the cluster go with the script.
    prologue = (
        "trap 'kill $(jobs -p) 2>/dev/null; wait; pg_ctl -D data/scale/pg -m immediate stop >/dev/null || :' EXIT\n"
    )
    check = "".join(f"grpcurl -plaintext {port} grpc.health.v1.Health/Check\n" for port in ports.values())
    with as_a_user(tmp_path) as (folder, env), walk_through_receiver() as (receiver, receiver_address):
        replacements["127.0.0.1:8000"] = receiver_address
        for old, new in replacements.items():
            script = script.replace(old, new)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", f"{prologue}{script}{check}sleep 1\njobs -r | wc -l\n"],
            capture_output=True,
            text=True,
            env=env,
            cwd=folder,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        try:
            receiver.wait_for_log(r"POST /scale .*kind=stack_update .*signature=valid", timeout=30)
        except AssertionError as error:
            error.add_note(done.stderr)  # the servers and dispatchers the script started log there
            raise
        assert (folder / "data" / "scale" / "secret.key").exists()
    assert done.stdout.count('"status": "SERVING"') == 2
    assert done.stdout.strip().splitlines()[-1].strip() == "4", done.stdout + done.stderr
    assert done.stderr.count("dispatching from database postgresql") == 2


@contextlib.contextmanager
def as_a_user(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A folder and an environment to run the README's commands in as a user would. initdb refuses to run as
    root, so as root PostgreSQL's two server commands run as the `postgres` user instead (their words
    unchanged), in a folder it may enter and write."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    if os.geteuid() != 0:
        yield tmp_path, env
        return
    folder = Path(tempfile.mkdtemp(prefix="webhooks-scale-"))
    os.chmod(folder, 0o755)
    shims = tmp_path / "as-postgres"
    shims.mkdir()
    server_bin = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    for tool in ("initdb", "pg_ctl"):
        shim = shims / tool
        shim.write_text(
            f'#!/bin/sh\nchown -R postgres "{folder}"\nexec runuser -u postgres -- {server_bin}/{tool} "$@"\n'
        )
        shim.chmod(0o755)
    try:
        yield folder, {**env, "PATH": f"{shims}:{env['PATH']}"}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_python_client_example_runs_as_written(server: RunningServer, tmp_path: Path) -> None:
    """Saved as the README says and run from another folder, with the admin token file's full path."""
    [script] = re.findall(r"```python\n(.*?)```", section("Python client"), re.S)
    example = tmp_path / "example.py"
    example.write_text(script.replace("127.0.0.1:50051", server.target))
    unused = subprocess.run(
        [str(BIN / "ruff"), "check", "--isolated", "--select", "F401,F811", str(example)],
        capture_output=True,
        text=True,
    )
    assert unused.returncode == 0, f"the example imports what it does not use:\n{unused.stdout}"
    token_file = str(server.settings.admin_token_file)
    done = subprocess.run(
        [sys.executable, "example.py", token_file], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    created, missing = done.stdout.strip().splitlines()
    assert re.fullmatch(r"organizations/acme/webhooks/[0-9a-f]+", created)
    assert missing == "NOT_FOUND WEBHOOK_NOT_FOUND"


def test_tls_runs_as_written(tmp_path: Path) -> None:
    """The certificates, the server and the calls, each block as written, in a fresh folder, on free ports."""
    text = section("TLS")
    certificates, calls = re.findall(r"```sh\n(.*?)```", text, re.S)
    [serve] = re.findall(r"```console\n(.*?)```", text, re.S)
    ports = {"127.0.0.1:50061": f"127.0.0.1:{free_port()}", "127.0.0.1:8443": f"127.0.0.1:{free_port()}"}

    made = run_script(certificates, {}, cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    for old, new in ports.items():
        serve = serve.replace(old, new)
    service = ServiceProcess(shlex.split(serve.replace("\\\n", " "))[1:], cwd=tmp_path)
    try:
        done = run_script(calls, ports, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        service.wait_for_log("TLS handshake with 127.0.0.1:")
    finally:
        assert service.terminate() == 0
    assert "(mutual TLS)" in service.log
    assert [line.strip() for line in done.stdout.splitlines() if line.strip()] == [
        "{",
        "}",
        "ready",
        "refused: no client certificate",
    ], done.stdout
    assert f'Failed to dial target host "{ports["127.0.0.1:50061"]}"' in done.stderr
    [shown] = re.findall(r"```text\n(.*?)\n```", text, re.S)
    said = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", shown.split(" ", 1)[1])
    assert said in re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", service.log), service.log
    # Whatever the section makes, git ignores.
    made_files = sorted(str(path.relative_to(tmp_path)) for path in (tmp_path / "tls").iterdir())
    assert made_files == [f"tls/{stem}.{kind}" for stem in ("ca", "client", "server") for kind in ("crt", "key")]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *made_files], cwd=README.parent, capture_output=True, text=True
    )
    assert sorted(ignored.stdout.split()) == made_files, ignored
