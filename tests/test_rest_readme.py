"""The README's REST API examples, run as written with curl against a real server and `webhooks receive`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.support.process import ServiceProcess
from tests.support.rest import Rest, token_auth
from tests.support.running import RunningServer
from tests.test_readme import free_port, section


def test_rest_examples_run_as_written(server: RunningServer) -> None:
    assert server.server.http is not None
    [receive_line] = re.findall(r"```console\n(.*?)\n```", section("Walk-through with grpcurl"), re.S)
    [script] = re.findall(r"```sh\n(.*?)```", section("REST API"), re.S)
    receiver_address = f"127.0.0.1:{free_port()}"
    receiver = ServiceProcess(receive_line.replace("127.0.0.1:8000", receiver_address).split()[1:], wait_for_port=False)
    try:
        assert receiver.wait_for_log("receiving on"), receiver.log
        script = (
            script.replace("127.0.0.1:8080", f"127.0.0.1:{server.server.http.port}")
            .replace("127.0.0.1:8000", receiver_address)
            .replace("data/admin-token", str(server.settings.admin_token_file))
        )
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert '"hasSecret": true' in done.stdout
        assert '"secret"' not in done.stdout and "s3cr3t" not in done.stdout
        assert '"stackName": "prod"' in done.stdout
        assert '"displayName": "CI failures"' in done.stdout
        assert '"kind": "ping"' in done.stdout
        assert '"attemptCount": 2' in done.stdout
        assert done.stdout.count('"previousSecretExpireTime"') == 1
        assert done.stdout.count('{"recoveredCount": 0}') == 2
        assert "n3w-s3cr3t" not in done.stdout
        assert '{"code": 404, "message": "webhook organizations/acme/webhooks/nope does not exist"}' in done.stdout
        deadline = time.monotonic() + 5
        while receiver.log.count("signature=valid") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        # The ping and its redelivery, each signed with the webhook's secret.
        assert receiver.log.count("kind=ping") >= 2
        assert receiver.log.count("signature=valid") >= 2
        assert "INVALID" not in receiver.log
    finally:
        receiver.kill()
    # It cleans up after itself.
    assert Rest(server, token_auth(server.admin_token)).ok("GET", "/orgs/acme/hooks") == []
