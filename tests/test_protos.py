"""The contract explains itself to callers in any language: language options, field behaviours, resource
annotations, comments buf lint insists on, `buf breaking` against the last change, and one descriptor set
for tools without reflection."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from google.api import field_behavior_pb2, resource_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from tests.support.running import RunningServer
from tests.test_grpcurl import grpcurl
from webhooks.v1 import delivery_pb2, event_pb2, event_service_pb2, webhook_pb2, webhook_service_pb2

ROOT = Path(__file__).parent.parent
BUF = ROOT / ".tools" / "node_modules" / ".bin" / "buf"
FILES = (delivery_pb2, event_pb2, event_service_pb2, webhook_pb2, webhook_service_pb2)
Behavior = field_behavior_pb2.FieldBehavior

# Pinned here: buf.yaml lets breaking ignore these options' first appearance, not a later change.
LANGUAGE_OPTIONS = {
    "go_package": "webhooks.internal/gen/go/webhooks/v1;webhooksv1",
    "java_package": "internal.webhooks.v1",
    "java_multiple_files": True,
    "csharp_namespace": "Webhooks.V1",
    "php_namespace": "Webhooks\\V1",
    "ruby_package": "Webhooks::V1",
}


def buf() -> str:
    assert BUF.exists(), f"{BUF} is missing: `make lint` installs it"
    return str(BUF)


def file_proto(module: object) -> descriptor_pb2.FileDescriptorProto:
    descriptor: FileDescriptor = module.DESCRIPTOR  # type: ignore[attr-defined]
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor.CopyToProto(proto)
    return proto


@pytest.mark.parametrize("module", FILES, ids=lambda m: m.__name__)
def test_every_file_names_its_package_in_every_language(module: object) -> None:
    options = file_proto(module).options
    assert {name: getattr(options, name) for name in LANGUAGE_OPTIONS} == LANGUAGE_OPTIONS


def behaviors(message: descriptor_pb2.DescriptorProto, field: str) -> set[int]:
    [found] = [f for f in message.field if f.name == field]
    return set(found.options.Extensions[field_behavior_pb2.field_behavior])


def test_fields_say_how_they_behave_and_resources_their_names() -> None:
    [webhook] = file_proto(webhook_pb2).message_type
    assert behaviors(webhook, "name") == {Behavior.IDENTIFIER}
    assert behaviors(webhook, "display_name") == behaviors(webhook, "payload_url") == {Behavior.REQUIRED}
    assert Behavior.INPUT_ONLY in behaviors(webhook, "secret")
    for output in ("has_secret", "disabled_reason", "create_time", "update_time"):
        assert behaviors(webhook, output) == {Behavior.OUTPUT_ONLY}, output
    resource = webhook.options.Extensions[resource_pb2.resource]
    assert list(resource.pattern) == [
        "organizations/{organization}/webhooks/{webhook}",
        "organizations/{organization}/projects/{project}/stacks/{stack}/webhooks/{webhook}",
    ]
    requests = {m.name: m for m in file_proto(webhook_service_pb2).message_type}
    parent = requests["CreateWebhookRequest"].field[0]
    assert parent.options.Extensions[resource_pb2.resource_reference].child_type == resource.type
    assert behaviors(requests["CreateWebhookRequest"], "parent") == {Behavior.REQUIRED}
    # Every field of the resources and requests says how it behaves; only List responses need not.
    for module in FILES:
        for message in file_proto(module).message_type:
            if not message.name.endswith("Response"):
                for field in message.field:
                    if not field.HasField("oneof_index"):
                        assert behaviors(message, field.name), f"{message.name}.{field.name}"


def copy_of_protos(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    shutil.copy(ROOT / "buf.yaml", tmp_path)
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "check-breaking", tmp_path / "scripts")
    return tmp_path


def test_buf_lint_wants_a_comment_on_every_element(tmp_path: Path) -> None:
    copy = copy_of_protos(tmp_path)
    assert subprocess.run([buf(), "lint"], cwd=copy, capture_output=True, text=True).returncode == 0
    proto = copy / "protos" / "webhooks" / "v1" / "webhook.proto"
    proto.write_text(proto.read_text().replace("  // Whether a secret is set.\n", ""))

    linted = subprocess.run([buf(), "lint"], cwd=copy, capture_output=True, text=True)

    assert linted.returncode != 0
    assert 'Field "has_secret" should have a non-empty comment' in linted.stdout


def git(folder: Path, *args: str) -> None:
    identity = ("-c", "user.name=test", "-c", "user.email=test@example.com")
    subprocess.run(["git", *identity, *args], cwd=folder, check=True, capture_output=True)


def check_breaking(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(folder / "scripts" / "check-breaking"), buf()], cwd=folder, capture_output=True, text=True, timeout=120
    )


def test_buf_breaking_fails_on_a_broken_copy_and_passes_an_added_field(tmp_path: Path) -> None:
    """What `make lint` runs, in a repository whose last commit changes the protos, as a merge to main would."""
    copy = copy_of_protos(tmp_path)
    git(copy, "init", "-q")
    git(copy, "add", ".")
    git(copy, "commit", "-qm", "the contract")
    proto = copy / "protos" / "webhooks" / "v1" / "webhook_service.proto"
    original = proto.read_text()

    proto.write_text(original.replace("  string page_token = 3", "  string next_token = 3"))
    git(copy, "commit", "-qam", "renames a field")
    broken = check_breaking(copy)
    assert broken.returncode != 0
    assert 'on message "ListWebhooksRequest" changed name from "page_token" to "next_token"' in broken.stdout, (
        broken.stdout + broken.stderr
    )

    git(copy, "reset", "-q", "--hard", "HEAD~1")
    proto.write_text(original.replace("  string page_token = 3", "  string page_token = 3;\n  // New.\n  bool x = 9"))
    git(copy, "commit", "-qam", "adds a field")
    added = check_breaking(copy)
    assert added.returncode == 0, added.stdout + added.stderr


def test_one_descriptor_set_serves_tools_without_reflection(tmp_path: Path, server: RunningServer, org: str) -> None:
    target = tmp_path / "webhooks.binpb"
    made = subprocess.run(
        ["make", "--no-print-directory", "descriptors", f"DESCRIPTORS={target}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    files = {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(target.read_bytes()).file}
    # With its imports, and with the comments (source info).
    assert {"google/protobuf/timestamp.proto", "google/api/field_behavior.proto"} <= files.keys()
    comments = [location.leading_comments for location in files["webhooks/v1/webhook.proto"].source_code_info.location]
    assert " Whether a secret is set.\n" in comments

    auth = ("-H", f"authorization: Bearer {server.admin_token}")
    body = json.dumps({"parent": f"organizations/{org}"})
    method = "webhooks.v1.WebhookService/ListWebhooks"
    listed = grpcurl("-protoset", str(target), *auth, "-d", body, server.target, method)
    assert listed.returncode == 0, listed.stderr


def test_the_python_client_takes_googleapis_from_its_package_not_a_copy() -> None:
    """Generating webhooks/v1 alone: a second google.api or google.rpc would clash with googleapis-common-protos."""
    packages = [path.name for path in (ROOT / "clients" / "python" / "src").iterdir() if path.suffix != ".egg-info"]
    assert sorted(packages) == ["webhooks", "webhooks_client"]
    assert "site-packages" in (field_behavior_pb2.__file__ or "")
