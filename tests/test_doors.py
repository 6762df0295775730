"""One behaviour table, run once through the gRPC door and once through the REST door.

Each door has a small driver that speaks its wire format and answers in plain values: an Outcome with the
status (gRPC's code names), the field an INVALID_ARGUMENT names (by its JSON name) and, on success, the
webhook or delivery as a dict of Pulumi's words. The table says what every operation must answer; the same
row must hold through both doors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format

from tests.helpers import WS
from tests.support.receiver import Receiver
from tests.support.rest import Rest, token_auth
from tests.support.running import RunningServer
from tests.support.tokens import create_token
from webhooks.v1 import delivery_pb2, webhook_pb2
from webhooks_client import Client, field_violations

Fields = dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    code: str = "OK"
    field: str = ""
    value: Any = None


class Door(Protocol):
    """`parent` is a resource name (`organizations/o` or `.../projects/p/stacks/s`); `fields` use JSON names."""

    def create(self, parent: str, webhook_id: str, fields: Fields) -> Outcome: ...
    def get(self, parent: str, webhook_id: str) -> Outcome: ...
    def list(self, parent: str) -> Outcome: ...
    def update(self, parent: str, webhook_id: str, fields: Fields) -> Outcome: ...
    def delete(self, parent: str, webhook_id: str) -> Outcome: ...
    def ping(self, parent: str, webhook_id: str) -> Outcome: ...
    def list_deliveries(self, parent: str, webhook_id: str) -> Outcome: ...
    def redeliver(self, parent: str, webhook_id: str, delivery: str) -> Outcome: ...


def _enum_word(descriptor: Any, number: int, prefix: str) -> str:
    return str(descriptor.values_by_number[number].name).removeprefix(prefix).lower()


_FORMAT = webhook_pb2.WebhookFormat.DESCRIPTOR
_FILTER = webhook_pb2.WebhookFilter.DESCRIPTOR
_GROUP = webhook_pb2.WebhookGroup.DESCRIPTOR
_STATE = delivery_pb2.WebhookDeliveryState.DESCRIPTOR


class GrpcDoor:
    def __init__(self, client: Client) -> None:
        self.client = client

    def _call(self, method: Callable[[Any], Any], request: Any, convert: Callable[[Any], Any]) -> Outcome:
        try:
            return Outcome(value=convert(method(request)))
        except grpc.RpcError as error:
            fields = list(field_violations(error))
            return Outcome(error.code().name, _json_name(fields[0]) if fields else "")

    @staticmethod
    def _message(fields: Fields) -> webhook_pb2.Webhook:
        """Through protobuf's JSON mapping, with the enum words spelled as the proto names them."""
        spelled = dict(fields)
        if "format" in spelled:
            spelled["format"] = "WEBHOOK_FORMAT_" + spelled["format"].upper()
        for key, prefix in (("filters", "WEBHOOK_FILTER_"), ("groups", "WEBHOOK_GROUP_")):
            if key in spelled:
                spelled[key] = [prefix + word.upper() for word in spelled[key]]
        return json_format.ParseDict(spelled, webhook_pb2.Webhook())

    @staticmethod
    def _webhook(message: webhook_pb2.Webhook) -> Fields:
        return {
            "name": message.name.rsplit("/", 1)[1],
            "displayName": message.display_name,
            "payloadUrl": message.payload_url,
            "active": message.active,
            "hasSecret": message.has_secret,
            "format": _enum_word(_FORMAT, message.format, "WEBHOOK_FORMAT_"),
            "filters": [_enum_word(_FILTER, number, "WEBHOOK_FILTER_") for number in message.filters],
            "groups": [_enum_word(_GROUP, number, "WEBHOOK_GROUP_") for number in message.groups],
            "disabledReason": message.disabled_reason,
            "pendingDeliveries": message.pending_deliveries,
            "succeededAttempts24h": message.succeeded_attempts_24h,
            "failedAttempts24h": message.failed_attempts_24h,
        }

    @staticmethod
    def _delivery(message: delivery_pb2.WebhookDelivery) -> Fields:
        return {
            "id": message.name.rsplit("/", 1)[1],
            "kind": message.kind,
            "state": _enum_word(_STATE, message.state, "WEBHOOK_DELIVERY_STATE_"),
            "attemptCount": message.attempt_count,
            "responseCode": message.response_code,
        }

    def create(self, parent: str, webhook_id: str, fields: Fields) -> Outcome:
        request = WS.CreateWebhookRequest(parent=parent, webhook_id=webhook_id, webhook=self._message(fields))
        return self._call(self.client.webhooks.CreateWebhook, request, self._webhook)

    def get(self, parent: str, webhook_id: str) -> Outcome:
        request = WS.GetWebhookRequest(name=f"{parent}/webhooks/{webhook_id}")
        return self._call(self.client.webhooks.GetWebhook, request, self._webhook)

    def list(self, parent: str) -> Outcome:
        request = WS.ListWebhooksRequest(parent=parent)
        return self._call(
            self.client.webhooks.ListWebhooks, request, lambda page: [self._webhook(w) for w in page.webhooks]
        )

    def update(self, parent: str, webhook_id: str, fields: Fields) -> Outcome:
        webhook = self._message(fields)
        webhook.name = f"{parent}/webhooks/{webhook_id}"
        request = WS.UpdateWebhookRequest(webhook=webhook, update_mask=field_mask_pb2.FieldMask(paths=list(fields)))
        return self._call(self.client.webhooks.UpdateWebhook, request, self._webhook)

    def delete(self, parent: str, webhook_id: str) -> Outcome:
        request = WS.DeleteWebhookRequest(name=f"{parent}/webhooks/{webhook_id}")
        return self._call(self.client.webhooks.DeleteWebhook, request, lambda _: None)

    def ping(self, parent: str, webhook_id: str) -> Outcome:
        request = WS.PingWebhookRequest(name=f"{parent}/webhooks/{webhook_id}")
        return self._call(self.client.webhooks.PingWebhook, request, self._delivery)

    def list_deliveries(self, parent: str, webhook_id: str) -> Outcome:
        request = WS.ListWebhookDeliveriesRequest(parent=f"{parent}/webhooks/{webhook_id}")
        return self._call(
            self.client.webhooks.ListWebhookDeliveries,
            request,
            lambda page: [self._delivery(d) for d in page.deliveries],
        )

    def redeliver(self, parent: str, webhook_id: str, delivery: str) -> Outcome:
        request = WS.RedeliverWebhookDeliveryRequest(name=f"{parent}/webhooks/{webhook_id}/deliveries/{delivery}")
        return self._call(self.client.webhooks.RedeliverWebhookDelivery, request, self._delivery)


def _json_name(field: str) -> str:
    """A gRPC field path by the name the REST API gives it."""
    field = field.removeprefix("webhook.")
    return "name" if field == "webhook_id" else re.sub(r"_([a-z])", lambda m: m[1].upper(), field)


_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}


class RestDoor:
    def __init__(self, rest: Rest) -> None:
        self.rest = rest

    @staticmethod
    def _hooks(parent: str) -> str:
        parts = parent.split("/")
        return (
            "/orgs/{}/hooks".format(*parts[1:2]) if len(parts) == 2 else "/stacks/{}/{}/{}/hooks".format(*parts[1::2])
        )

    def _call(
        self, method: str, path: str, body: Any = None, convert: Callable[[Any], Any] = lambda value: value
    ) -> Outcome:
        answer = self.rest.call(method, path, body)
        if 200 <= answer.status < 300:
            return Outcome(value=convert(answer.json) if answer.body else None)
        assert answer.json["code"] == answer.status
        code = _CODES[answer.status]
        return Outcome(code, answer.json["message"].split(":", 1)[0] if code == "INVALID_ARGUMENT" else "")

    @staticmethod
    def _webhook(value: Fields) -> Fields:
        # The health times are compared in tests/test_health.py: here both doors answer for new webhooks.
        left_out = ("organizationName", "projectName", "stackName", "lastSuccessTime", "failingSince")
        return {key: item for key, item in value.items() if key not in left_out}

    @staticmethod
    def _delivery(value: Fields) -> Fields:
        return {key: value[key] for key in ("id", "kind", "state", "attemptCount", "responseCode")}

    def create(self, parent: str, webhook_id: str, fields: Fields) -> Outcome:
        return self._call("POST", self._hooks(parent), {"name": webhook_id, **fields}, self._webhook)

    def get(self, parent: str, webhook_id: str) -> Outcome:
        return self._call("GET", f"{self._hooks(parent)}/{webhook_id}", convert=self._webhook)

    def list(self, parent: str) -> Outcome:
        return self._call("GET", self._hooks(parent), convert=lambda hooks: [self._webhook(w) for w in hooks])

    def update(self, parent: str, webhook_id: str, fields: Fields) -> Outcome:
        return self._call("PATCH", f"{self._hooks(parent)}/{webhook_id}", fields, self._webhook)

    def delete(self, parent: str, webhook_id: str) -> Outcome:
        return self._call("DELETE", f"{self._hooks(parent)}/{webhook_id}")

    def ping(self, parent: str, webhook_id: str) -> Outcome:
        return self._call("POST", f"{self._hooks(parent)}/{webhook_id}/ping", convert=self._delivery)

    def list_deliveries(self, parent: str, webhook_id: str) -> Outcome:
        path = f"{self._hooks(parent)}/{webhook_id}/deliveries"
        return self._call("GET", path, convert=lambda found: [self._delivery(d) for d in found])

    def redeliver(self, parent: str, webhook_id: str, delivery: str) -> Outcome:
        path = f"{self._hooks(parent)}/{webhook_id}/deliveries/{delivery}/redeliver"
        return self._call("POST", path, convert=self._delivery)


@dataclass(frozen=True)
class Ctx:
    """A fresh organization with one webhook, `existing`, pinged once."""

    parent: str
    hook: Fields
    delivery: str
    url: str

    @property
    def stack(self) -> str:
        return f"{self.parent}/projects/web/stacks/prod"


@dataclass(frozen=True)
class Case:
    act: Callable[[Door, Ctx], Outcome]
    who: str = "admin"
    code: str = "OK"
    field: str = ""
    # The value a success returns, given the context.
    value: Callable[[Ctx], Any] = lambda ctx: None


NEW = {"displayName": "New", "secret": "s", "format": "slack", "filters": ["update_failed"], "groups": ["deployments"]}


def _new(ctx: Ctx) -> Fields:
    return {**NEW, "payloadUrl": ctx.url}


def _created(ctx: Ctx) -> Fields:
    created = {key: value for key, value in _new(ctx).items() if key != "secret"}
    health = {"pendingDeliveries": 0, "succeededAttempts24h": 0, "failedAttempts24h": 0}
    return created | {"name": "new", "active": True, "hasSecret": True, "disabledReason": ""} | health


def _ping_delivery(ctx: Ctx, attempts: int = 1) -> Fields:
    return {"id": ctx.delivery, "kind": "ping", "state": "succeeded", "attemptCount": attempts, "responseCode": 200}


def _without_id(outcome: Outcome) -> Outcome:
    if outcome.code != "OK":
        return outcome
    return Outcome(value={key: value for key, value in outcome.value.items() if key != "id"})


def _delete_then_get(door: Door, ctx: Ctx) -> Outcome:
    assert door.delete(ctx.parent, "existing") == Outcome()
    return door.get(ctx.parent, "existing")


DENIED = "PERMISSION_DENIED"
CASES: dict[str, Case] = {
    # Good input
    "create": Case(lambda d, c: d.create(c.parent, "new", _new(c)), value=_created),
    "create a stack webhook": Case(lambda d, c: d.create(c.stack, "new", _new(c)), value=_created),
    "get": Case(lambda d, c: d.get(c.parent, "existing"), value=lambda c: c.hook),
    "list": Case(lambda d, c: d.list(c.parent), value=lambda c: [c.hook]),
    "update one field": Case(
        lambda d, c: d.update(c.parent, "existing", {"displayName": "renamed"}),
        value=lambda c: c.hook | {"displayName": "renamed"},
    ),
    "update every field": Case(
        lambda d, c: d.update(c.parent, "existing", _new(c) | {"active": False}),
        value=lambda c: _created(c) | {"name": "existing", "active": False},
    ),
    "delete": Case(lambda d, c: d.delete(c.parent, "existing")),
    "a deleted webhook is gone": Case(_delete_then_get, code="NOT_FOUND"),
    "ping": Case(
        lambda d, c: _without_id(d.ping(c.parent, "existing")),
        value=lambda c: {k: v for k, v in _ping_delivery(c).items() if k != "id"},
    ),
    "list deliveries": Case(lambda d, c: d.list_deliveries(c.parent, "existing"), value=lambda c: [_ping_delivery(c)]),
    "redeliver": Case(lambda d, c: d.redeliver(c.parent, "existing", c.delivery), value=lambda c: _ping_delivery(c, 2)),
    # Invalid fields
    "create without a display name": Case(
        lambda d, c: d.create(c.parent, "new", _new(c) | {"displayName": ""}),
        code="INVALID_ARGUMENT",
        field="displayName",
    ),
    "create with an ftp URL": Case(
        lambda d, c: d.create(c.parent, "new", _new(c) | {"payloadUrl": "ftp://e.com"}),
        code="INVALID_ARGUMENT",
        field="payloadUrl",
    ),
    "create with a bad name": Case(
        lambda d, c: d.create(c.parent, "no spaces", _new(c)), code="INVALID_ARGUMENT", field="name"
    ),
    "a stack webhook asking for stack_created": Case(
        lambda d, c: d.create(c.stack, "new", _new(c) | {"filters": ["stack_created"]}),
        code="INVALID_ARGUMENT",
        field="filters[0]",
    ),
    "update to a metadata address": Case(
        lambda d, c: d.update(c.parent, "existing", {"payloadUrl": "http://169.254.169.254/"}),
        code="INVALID_ARGUMENT",
        field="payloadUrl",
    ),
    # Not found
    "get a missing webhook": Case(lambda d, c: d.get(c.parent, "missing"), code="NOT_FOUND"),
    "update a missing webhook": Case(
        lambda d, c: d.update(c.parent, "missing", {"displayName": "x"}), code="NOT_FOUND"
    ),
    "delete a missing webhook": Case(lambda d, c: d.delete(c.parent, "missing"), code="NOT_FOUND"),
    "ping a missing webhook": Case(lambda d, c: d.ping(c.parent, "missing"), code="NOT_FOUND"),
    "deliveries of a missing webhook": Case(lambda d, c: d.list_deliveries(c.parent, "missing"), code="NOT_FOUND"),
    "redeliver a missing delivery": Case(lambda d, c: d.redeliver(c.parent, "existing", "missing"), code="NOT_FOUND"),
    # Already exists
    "create an existing name": Case(lambda d, c: d.create(c.parent, "existing", _new(c)), code="ALREADY_EXISTS"),
    # Wrong organization: an admin of another one
    "a stranger gets": Case(lambda d, c: d.get(c.parent, "existing"), who="stranger", code=DENIED),
    "a stranger lists": Case(lambda d, c: d.list(c.parent), who="stranger", code=DENIED),
    "a stranger creates": Case(lambda d, c: d.create(c.parent, "new", _new(c)), who="stranger", code=DENIED),
    "a stranger deletes": Case(lambda d, c: d.delete(c.parent, "existing"), who="stranger", code=DENIED),
    "a stranger redelivers": Case(
        lambda d, c: d.redeliver(c.parent, "existing", c.delivery), who="stranger", code=DENIED
    ),
    # Wrong role: a reader of every organization
    "a reader gets": Case(lambda d, c: d.get(c.parent, "existing"), who="reader", value=lambda c: c.hook),
    "a reader lists deliveries": Case(
        lambda d, c: d.list_deliveries(c.parent, "existing"), who="reader", value=lambda c: [_ping_delivery(c)]
    ),
    "a reader creates": Case(lambda d, c: d.create(c.parent, "new", _new(c)), who="reader", code=DENIED),
    "a reader updates": Case(
        lambda d, c: d.update(c.parent, "existing", {"displayName": "x"}), who="reader", code=DENIED
    ),
    "a reader pings": Case(lambda d, c: d.ping(c.parent, "existing"), who="reader", code=DENIED),
    "a publisher lists": Case(lambda d, c: d.list(c.parent), who="publisher", code=DENIED),
    # Unauthenticated
    "an unknown token lists": Case(lambda d, c: d.list(c.parent), who="unknown", code="UNAUTHENTICATED"),
    "no token creates": Case(lambda d, c: d.create(c.parent, "new", _new(c)), who="nobody", code="UNAUTHENTICATED"),
}


@pytest.fixture(scope="module")
def tokens(server: RunningServer) -> dict[str, str | None]:
    database = server.settings.database
    return {
        "admin": server.admin_token,
        "stranger": create_token(database, "admin", "somewhere-else"),
        "reader": create_token(database, "reader", "*"),
        "publisher": create_token(database, "publisher", "*"),
        "unknown": "whk_not-a-token-this-server-made",
        "nobody": None,
    }


@pytest.fixture(params=["grpc", "rest"])
def open_door(request: pytest.FixtureRequest, server: RunningServer) -> Iterator[Callable[[str | None], Door]]:
    """Opens the door under test for a token (None: no Authorization at all)."""
    clients: list[Client] = []

    def open_with(token: str | None) -> Door:
        if request.param == "rest":
            return RestDoor(Rest(server, None if token is None else token_auth(token)))
        clients.append(Client(server.target, token=token))
        return GrpcDoor(clients[-1])

    yield open_with
    for client in clients:
        client.close()


@pytest.mark.parametrize("case", list(CASES))
def test_the_same_behaviour_through_each_door(
    open_door: Callable[[str | None], Door], tokens: dict[str, str | None], receiver: Receiver, org: str, case: str
) -> None:
    admin = open_door(tokens["admin"])
    parent, url = f"organizations/{org}", receiver.url(f"/doors/{org}")
    made = admin.create(
        parent, "existing", {"displayName": "Existing", "payloadUrl": url, "filters": ["update_failed"]}
    )
    pinged = admin.ping(parent, "existing")
    assert made.code == pinged.code == "OK", (made, pinged)
    ctx = Ctx(parent, made.value, pinged.value["id"], url)

    row = CASES[case]
    outcome = row.act(open_door(tokens[row.who]), ctx)
    assert outcome == Outcome(row.code, row.field, row.value(ctx) if row.code == "OK" else None)
