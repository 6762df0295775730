"""Random and malformed requests at every RPC: never UNKNOWN or INTERNAL, the server keeps serving,
and a rejected request changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import seed
from tests.helpers import make_webhook, publish, wait_for_delivery
from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from webhooks.v1 import event_service_pb2, webhook_service_pb2, webhook_service_pb2_grpc

ORG = "fuzz"
FD = pb_descriptor.FieldDescriptor
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


class Target:
    """A server with one webhook and one delivery, so random names sometimes hit real things."""

    def __init__(self, server: RunningServer, receiver: Receiver) -> None:
        self.server = server
        self.channel = grpc.insecure_channel(server.target)
        self.metadata = [("authorization", f"Bearer {server.admin_token}")]
        with server.client() as client:
            self.webhook = make_webhook(client, f"organizations/{ORG}", receiver.url("/fuzz"), webhook_id="w1").name
            [self.delivery] = publish(
                client, seed.update_event(stack=f"organizations/{ORG}/projects/p/stacks/s")
            ).deliveries
            wait_for_delivery(client, self.delivery)
        self.names = [
            f"organizations/{ORG}",
            f"organizations/{ORG}/projects/p/stacks/s",
            self.webhook,
            self.delivery,
            f"organizations/{ORG}/webhooks/missing",
            f"{self.webhook}/deliveries/missing",
            "organizations/other/webhooks/w1",
            receiver.url("/fuzz"),
            "http://169.254.169.254/",
            "https://[::1]/x",
        ]

    def snapshot(self) -> tuple[Any, ...]:
        """What a rejected call must leave as it was: the organization's webhooks and the delivery log."""
        stub = webhook_service_pb2_grpc.WebhookServiceStub(self.channel)
        hooks = stub.ListWebhooks(
            webhook_service_pb2.ListWebhooksRequest(parent=f"organizations/{ORG}", page_size=1000),
            metadata=self.metadata,
        )
        stack_hooks = stub.ListWebhooks(
            webhook_service_pb2.ListWebhooksRequest(parent=f"organizations/{ORG}/projects/p/stacks/s", page_size=1000),
            metadata=self.metadata,
        )
        try:
            deliveries = stub.ListWebhookDeliveries(
                webhook_service_pb2.ListWebhookDeliveriesRequest(parent=self.webhook, page_size=1000),
                metadata=self.metadata,
            ).deliveries
        except grpc.RpcError as error:
            # A random DeleteWebhook may well have deleted it, legitimately.
            assert error.code() == grpc.StatusCode.NOT_FOUND
            deliveries = []
        return (
            [w.SerializeToString(deterministic=True) for w in hooks.webhooks],
            [w.SerializeToString(deterministic=True) for w in stack_hooks.webhooks],
            sorted((d.name, d.attempt_count, d.state) for d in deliveries),
        )

    def call(self, method: str, payload: bytes) -> grpc.StatusCode:
        """Sends raw bytes, so malformed messages reach the server as they are. A stream the server accepts
        runs until its deadline, which is short: what counts is how it ends when it is refused."""
        service = "EventService" if method in EVENT_METHODS else "WebhookService"
        path = f"/webhooks.v1.{service}/{method}"
        try:
            if method in STREAMS:
                for _ in self.channel.unary_stream(path)(payload, metadata=self.metadata, timeout=2):
                    pass
            else:
                self.channel.unary_unary(path)(payload, metadata=self.metadata, timeout=10)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code
        return grpc.StatusCode.OK

    def serving(self) -> bool:
        health = health_pb2_grpc.HealthStub(self.channel)
        return bool(health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1)


@pytest.fixture(scope="module")
def target(server: RunningServer, receiver: Receiver) -> Iterator[Target]:
    made = Target(server, receiver)
    yield made
    made.channel.close()


def field_values(field: pb_descriptor.FieldDescriptor, names: list[str], depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FD.TYPE_STRING:
        # No ':' in free text, so no random URL can point anywhere; real-looking names come from `names`.
        return st.one_of(
            st.sampled_from(names),
            st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=":"), max_size=40),
        )
    if kind in (FD.TYPE_INT32, FD.TYPE_ENUM):
        return st.integers(-(2**31), 2**31 - 1) | st.integers(-2, 20)
    if kind == FD.TYPE_INT64:
        return st.integers(-(2**63), 2**63 - 1)
    if kind == FD.TYPE_BOOL:
        return st.booleans()
    if kind == FD.TYPE_MESSAGE:
        return message_values(field.message_type, names, depth + 1)
    return st.nothing()


@st.composite
def _message(draw: st.DrawFn, message: pb_descriptor.Descriptor, names: list[str], depth: int) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in message.fields:
        if depth > 3 or not draw(st.booleans()):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            values[field.name] = draw(
                st.dictionaries(field_values(key, names, depth), field_values(value, names, depth), max_size=3)
            )
        elif field.is_repeated:
            values[field.name] = draw(st.lists(field_values(field, names, depth), max_size=4))
        else:
            values[field.name] = draw(field_values(field, names, depth))
    return values


def message_values(message: pb_descriptor.Descriptor, names: list[str], depth: int = 0) -> st.SearchStrategy[Any]:
    return _message(message, names, depth)


def build(message_class: type[Message], values: dict[str, Any]) -> bytes:
    built = message_class()
    _fill(built, values)
    return built.SerializeToString()


def _fill(message: Message, values: dict[str, Any]) -> None:
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        if isinstance(value, dict) and field.message_type is not None and not field.message_type.GetOptions().map_entry:
            _fill(getattr(message, name), value)
        elif isinstance(value, dict):
            target = getattr(message, name)
            for key, item in value.items():
                if isinstance(item, dict):
                    _fill(target[key], item)
                else:
                    target[key] = item
        elif isinstance(value, list):
            repeated = getattr(message, name)
            for item in value:
                if isinstance(item, dict):
                    _fill(repeated.add(), item)
                else:
                    repeated.append(item)
        else:
            setattr(message, name, value)


STREAMS = {
    method.name
    for method in webhook_service_pb2.DESCRIPTOR.services_by_name["WebhookService"].methods
    if method.server_streaming
}
REQUESTS: dict[str, type[Message]] = {
    method.name: getattr(webhook_service_pb2, method.input_type.name)
    for method in webhook_service_pb2.DESCRIPTOR.services_by_name["WebhookService"].methods
}
EVENT_METHODS = {
    method.name: getattr(event_service_pb2, method.input_type.name)
    for method in event_service_pb2.DESCRIPTOR.services_by_name["EventService"].methods
}
REQUESTS.update(EVENT_METHODS)

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("method", sorted(REQUESTS))
def test_random_requests_never_fail_unknown_or_internal(target: Target, method: str) -> None:
    message_class = REQUESTS[method]

    @FUZZ
    @given(values=message_values(message_class.DESCRIPTOR, target.names))
    def run(values: dict[str, Any]) -> None:
        before = target.snapshot()
        code = target.call(method, build(message_class, values))
        assert code not in FORBIDDEN, (method, values)
        if code != grpc.StatusCode.OK:
            assert target.snapshot() == before, (method, code, values)

    run()
    assert target.serving()


@pytest.mark.parametrize("method", sorted(REQUESTS))
def test_malformed_bytes_are_invalid_argument(target: Target, method: str) -> None:
    @FUZZ
    @given(payload=st.binary(max_size=200))
    def run(payload: bytes) -> None:
        before = target.snapshot()
        code = target.call(method, payload)
        assert code not in FORBIDDEN, (method, payload)
        if code != grpc.StatusCode.OK:
            assert target.snapshot() == before

    run()
    assert target.call(method, b"\xff\xff\xff") == grpc.StatusCode.INVALID_ARGUMENT
    assert target.serving()
