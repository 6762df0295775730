"""The README's walk-through, run as written against a real server and the `webhooks receive` receiver."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tests.support.postgres import PostgresCluster
from tests.support.process import ServiceProcess
from tests.support.readme import BIN, README, free_port, grpc_replacements, run_script, section, walk_through_receiver
from tests.support.running import RunningServer


def test_walk_through_runs_as_written(server: RunningServer) -> None:
    [script] = re.findall(r"```sh\n(.*?)```", section("Walk-through with grpcurl"), re.S)
    with walk_through_receiver() as (receiver, receiver_address):
        done = run_script(script, grpc_replacements(server, receiver_address))
        assert done.returncode == 0, done.stdout + done.stderr
        assert '"display_name": "Everything"' in done.stdout
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
        assert service.wait_for_log("TLS handshake with 127.0.0.1:"), service.log
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
