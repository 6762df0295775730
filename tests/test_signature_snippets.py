"""The README's Standard Webhooks verification examples (the `standardwebhooks` package, plain Python, Node and
Go), each run as written against real deliveries: one made during a rotation, with two signatures."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import WebhookVerificationError

from tests.helpers import WS, make_webhook
from tests.support.receiver import Receiver
from tests.test_readme import section
from webhook_service.domain.requests import delivery_headers
from webhooks_client import Client

OLD, NEW = "s3cr3t", "n3w-s3cr3t"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section("What a receiver gets"), re.S)


@pytest.fixture(scope="module")
def cases(client: Client, receiver: Receiver) -> list[dict[str, Any]]:
    """(secret, headers by lower-case name, body in base64, whether it must verify), from a real delivery
    made during a rotation from OLD to NEW, and forgeries of it."""
    path = f"/snippets/{uuid.uuid4().hex}"
    hook = make_webhook(client, "organizations/snippets", receiver.url(path), secret=OLD)
    client.webhooks.RotateWebhookSecret(WS.RotateWebhookSecretRequest(name=hook.name, secret=NEW))
    client.webhooks.PingWebhook(WS.PingWebhookRequest(name=hook.name))
    [real] = receiver.received(path)
    headers = {key.lower(): value for key, value in real.headers.items()}
    assert len(headers["webhook-signature"].split()) == 2
    # Signed as the service would have ten minutes ago: the signature is right, the time is not.
    signed_then = delivery_headers(headers["webhook-id"], "ping", real.body, NEW, int(time.time()) - 600)
    aged = {key.lower(): value for key, value in signed_then.items()}
    later = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 60)}
    found = [
        (NEW, headers, real.body, True),
        (OLD, headers, real.body, True),
        ("wrong", headers, real.body, False),
        (NEW, headers, real.body + b" ", False),
        (NEW, aged, real.body, False),
        (NEW, later, real.body, False),
        (NEW, {**headers, "webhook-timestamp": "soon"}, real.body, False),
    ]
    return [
        {"secret": secret, "headers": h, "body": base64.b64encode(body).decode(), "valid": valid}
        for secret, h, body, valid in found
    ]


def expected(cases: list[dict[str, Any]]) -> list[bool]:
    return [case["valid"] for case in cases]


def verdicts(cases: list[dict[str, Any]], verify: Callable[[str, dict[str, str], bytes], bool]) -> list[bool]:
    return [verify(case["secret"], case["headers"], base64.b64decode(case["body"])) for case in cases]


def test_the_standardwebhooks_package_example(cases: list[dict[str, Any]]) -> None:
    [snippet] = [block for block in blocks("python") if "standardwebhooks" in block]

    def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
        namespace: dict[str, Any] = {}
        exec(snippet.replace('b"s3cr3t"', repr(secret.encode())), namespace)
        try:
            namespace["receive"](headers, body)
        except WebhookVerificationError:
            return False
        return True

    assert verdicts(cases, verify) == expected(cases)


def test_the_plain_python_example(cases: list[dict[str, Any]]) -> None:
    [snippet] = [block for block in blocks("python") if "def verify_standard" in block]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    assert verdicts(cases, namespace["verify_standard"]) == expected(cases)


def test_the_node_example(cases: list[dict[str, Any]], tmp_path: Path) -> None:
    [snippet] = blocks("js")
    script = tmp_path / "verify.js"
    script.write_text(
        snippet
        + "\nconst cases = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));\n"
        + "const verdicts = cases.map((c) => verifyStandard(c.secret, c.headers, Buffer.from(c.body, 'base64')));\n"
        + "console.log(JSON.stringify(verdicts));\n"
    )
    node = shutil.which("node")
    assert node, "node is not installed"
    done = subprocess.run([node, str(script)], input=json.dumps(cases), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected(cases)


GO_MAIN = """
func main() {
	var cases []struct {
		Secret  string            `json:"secret"`
		Headers map[string]string `json:"headers"`
		Body    []byte            `json:"body"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	verdicts := []bool{}
	for _, c := range cases {
		header := http.Header{}
		for name, value := range c.Headers {
			header.Set(name, value)
		}
		verdicts = append(verdicts, VerifyStandard(c.Secret, header, c.Body, 5*time.Minute))
	}
	out, _ := json.Marshal(verdicts)
	fmt.Println(string(out))
}
"""


@pytest.mark.skipif(shutil.which("go") is None, reason="no Go toolchain here (apt: golang-go)")
def test_the_go_example(cases: list[dict[str, Any]], tmp_path: Path) -> None:
    [snippet] = blocks("go")
    program = snippet.replace("package webhooks", "package main").replace(
        "import (", 'import (\n\t"encoding/json"\n\t"fmt"\n\t"os"', 1
    )
    (tmp_path / "main.go").write_text(program + GO_MAIN)
    env = {**os.environ, "GOCACHE": str(tmp_path / "cache"), "GOPATH": str(tmp_path / "gopath"), "GOFLAGS": ""}
    done = subprocess.run(
        ["go", "run", "main.go"],
        cwd=tmp_path,
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected(cases)
