"""The README's REST API examples, run as written with curl against a real server and `webhooks receive`."""

from __future__ import annotations

import re

from tests.support.readme import run_script, section, walk_through_receiver
from tests.support.rest import Rest, token_auth
from tests.support.running import RunningServer
from tests.support.waiting import eventually


def test_rest_examples_run_as_written(server: RunningServer) -> None:
    assert server.server.http is not None
    [script] = re.findall(r"```sh\n(.*?)```", section("REST API"), re.S)
    with walk_through_receiver() as (receiver, receiver_address):
        done = run_script(
            script,
            {
                "127.0.0.1:8080": f"127.0.0.1:{server.server.http.port}",
                "127.0.0.1:8000": receiver_address,
                "data/admin-token": str(server.settings.admin_token_file),
            },
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
        # The ping and its redelivery, each signed with the webhook's secret.
        eventually(lambda: receiver.log.count("signature=valid") >= 2, 5, lambda: receiver.log, every=0.05)
        assert receiver.log.count("kind=ping") >= 2
        assert "INVALID" not in receiver.log
    # It cleans up after itself.
    assert Rest(server, token_auth(server.admin_token)).ok("GET", "/orgs/acme/hooks") == []
