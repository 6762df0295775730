"""The README's walk-through, run as written against a real server and the `webhooks receive` receiver."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.helpers import WS, make_webhook
from tests.support.postgres import PostgresCluster
from tests.support.readme import README, free_port, grpc_replacements, run_script, section, walk_through_receiver
from tests.support.receiver import Receiver
from tests.support.running import RunningServer


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
        deadline = time.monotonic() + 5
        while receiver.log.count("signature=valid") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        # The event, its redelivery and the ping, each signed with the webhook's secret.
        assert receiver.log.count("kind=stack_update id=") >= 2
        assert "kind=ping" in receiver.log
        assert receiver.log.count("signature=valid") >= 3
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
        deadline = time.monotonic() + 5
        while receiver.log.count("POST /rotating") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
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
        deadline = time.monotonic() + 5
        while receiver.log.count("signature=valid") < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        # The event to each webhook, its redelivery and the ping, each signed with the secret given on create.
        assert receiver.log.count("POST /cli kind=stack_update") == 2
        assert receiver.log.count("POST /cli-failures kind=stack_update") == 1
        assert "POST /cli kind=ping" in receiver.log
        assert receiver.log.count("signature=valid") >= 4
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


def test_running_at_scale_runs_as_written(tmp_path: Path, postgres_cluster: PostgresCluster) -> None:
    """The scale-out commands against the test session's PostgreSQL, on free ports."""
    [script] = re.findall(r"```sh\n(.*?)```", section("Running at scale"), re.S)
    ports = [free_port(), free_port()]
    http_ports = [free_port(), free_port()]
    script = (
        script.replace("127.0.0.1:5432", f"127.0.0.1:{postgres_cluster.port}")
        .replace("-h 127.0.0.1", f"-h 127.0.0.1 -p {postgres_cluster.port}")
        .replace("/etc/webhooks/secret.key", str(tmp_path / "secret.key"))
        .replace(".venv/bin/webhooks", str(Path(sys.executable).parent / "webhooks"))
        .replace("0.0.0.0:50051", f"127.0.0.1:{ports[0]}")
        .replace("0.0.0.0:50052", f"127.0.0.1:{ports[1]}")
        .replace("0.0.0.0:8081", f"127.0.0.1:{http_ports[0]}")
        .replace("0.0.0.0:8082", f"127.0.0.1:{http_ports[1]}")
        .replace("webhooks tokens create", "webhooks tokens create --description scale")
    )
    check = "\n".join(
        f"for i in $(seq 150); do grpcurl -plaintext 127.0.0.1:{port} list >/dev/null 2>&1 && break; sleep 0.1; done\n"
        f"grpcurl -plaintext 127.0.0.1:{port} grpc.health.v1.Health/Check"
        for port in ports
    )
    # Whatever fails, the servers started in the background go with the script.
    script = "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + script
    script += f"\n{check}\nsleep 1\njobs -r | wc -l\n"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count('"status": "SERVING"') == 2
    assert done.stdout.strip().splitlines()[-1].strip() == "4", done.stdout + done.stderr
    assert done.stderr.count("dispatching from database postgresql") == 2
    assert (tmp_path / "secret.key").exists()


def test_python_client_example_runs_as_written(server: RunningServer) -> None:
    [script] = re.findall(r"```python\n(.*?)```", section("Python client"), re.S)
    script = script.replace("127.0.0.1:50051", server.target).replace(
        "data/admin-token", str(server.settings.admin_token_file)
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    created, missing = done.stdout.strip().splitlines()
    assert re.fullmatch(r"organizations/acme/webhooks/[0-9a-f]+", created)
    assert missing == "NOT_FOUND WEBHOOK_NOT_FOUND"
