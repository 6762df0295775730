"""The README's Go client section, as written: the example that `make go` generates and builds from protos/,
run against the real server, and the code generation it shows for a Go user's own module.

The example starts its own receiver on loopback (the `server` fixture lets deliveries reach it) and checks
every answer itself; these tests read what it prints and what it left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.running import RunningServer
from tests.test_readme import section
from webhooks.v1 import webhook_service_pb2

ROOT = Path(__file__).resolve().parents[1]
USER_IMPORT = "example.com/billing/internal/gen/webhooks/v1"


@pytest.fixture(scope="module")
def example() -> Path:
    """The example binary, rebuilt when the protos or its source changed since the last `make go`."""
    built = subprocess.run(
        ["make", "--no-print-directory", "go"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return ROOT / "clients" / "go" / "bin" / "webhooks-example"


def shown(language: str) -> str:
    [block] = re.findall(rf"```{language}\n(.*?)```", section("Go client"), re.S)
    return block


def without_ids(lines: list[str]) -> list[str]:
    return [re.sub(r"\b[0-9a-f]{16,}\b", "<id>", line) for line in lines]


def test_the_example_runs_as_the_readme_shows(example: Path, server: RunningServer) -> None:
    [_, command, *output] = shown("console").splitlines()
    assert server.settings.admin_token_file is not None
    command = (
        command.removeprefix("$ ")
        .replace("127.0.0.1:50051", server.target)
        .replace("data/admin-token", str(server.settings.admin_token_file))
    )
    ran = subprocess.run(command.split(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    printed = ran.stdout.splitlines()
    assert without_ids(printed) == without_ids(output)
    webhook = printed[0].split()[1]
    assert printed[7] == f"deleted {webhook}"
    delivery = printed[3].split(":")[0].removeprefix("delivery ")
    # The receiver's request carried this delivery's ID and a signature the example checked with its secret.
    assert printed[4] == f"receiver got stack_update {delivery}, signature verified"

    with server.client() as client:
        left = client.webhooks.ListWebhooks(webhook_service_pb2.ListWebhooksRequest(parent="organizations/acme"))
    assert list(left.webhooks) == []


def test_a_failing_call_fails_the_example(example: Path, server: RunningServer, tmp_path: Path) -> None:
    unknown = tmp_path / "token"
    unknown.write_text("not-a-token\n")
    ran = subprocess.run(
        [str(example), "-target", server.target, "-token-file", str(unknown)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 1
    assert ran.stdout == ""
    assert "CreateWebhook: rpc error: code = Unauthenticated" in ran.stderr


def generate_with_protoc(module: Path) -> None:
    # `go install` and `go get` need the module proxy, which this machine lacks; Debian's packages stand in.
    script = "\n".join(line for line in shown("sh").replace("\\\n", "").splitlines() if not line.startswith("go "))
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=module, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def generate_with_buf(module: Path) -> None:
    (module / "buf.gen.yaml").write_text(shown("yaml"))
    buf = ROOT / ".tools" / "node_modules" / ".bin" / "buf"
    assert buf.exists(), "buf is installed by `make lint`"
    done = subprocess.run([str(buf), "generate"], cwd=module, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.usefixtures("example")  # for the Go packages `make go` installs
@pytest.mark.parametrize("generate", [generate_with_protoc, generate_with_buf], ids=["protoc", "buf"])
def test_a_go_module_generates_the_client_as_the_readme_shows(tmp_path: Path, generate: Callable[[Path], None]) -> None:
    """The README's generation run in a module's tree, then the example built there against that code."""
    module = tmp_path / "src" / "example.com" / "billing"
    module.mkdir(parents=True)
    # The README's user keeps this repository at ../webhook-service, beside the module.
    (module.parent / "webhook-service").symlink_to(ROOT)
    generate(module)

    assert f'import webhooksv1 "{USER_IMPORT}"' in section("Go client")
    program = module / "cmd" / "example"
    program.mkdir(parents=True)
    source = (ROOT / "clients" / "go" / "example" / "main.go").read_text()
    (program / "main.go").write_text(source.replace("webhooks.internal/gen/go/webhooks/v1", USER_IMPORT))
    go = shutil.which("go")
    assert go, "Go is installed by `make go`"
    gopath = {"GO111MODULE": "off", "GOPATH": f"{tmp_path}:/usr/share/gocode", "CGO_ENABLED": "0", "GOFLAGS": ""}
    built = subprocess.run(
        [go, "build", "-o", str(tmp_path / "example"), "."],
        cwd=program,
        env={**os.environ, **gopath},
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
