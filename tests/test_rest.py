"""Pulumi's REST API under /api, driven with a plain HTTP client against the real server."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import seed
from tests.helpers import delivery_id, make_webhook, publish
from tests.support.databases import Databases
from tests.support.outage import database_outage
from tests.support.process import ServiceProcess
from tests.support.receiver import Receiver, Reply
from tests.support.rest import Rest, bearer_auth, token_auth
from tests.support.running import RunningServer
from tests.support.tokens import create_key, create_token
from webhooks_client import Client

SECRET = "rest-s3cr3t"


# The health of a webhook no queued delivery was attempted for (pings do not count).
NO_ATTEMPTS_YET = {"pendingDeliveries": 0, "succeededAttempts24h": 0, "failedAttempts24h": 0}


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Rest:
    return Rest(server, token_auth(server.admin_token))


@pytest.fixture(scope="module")
def grpc_admin(server: RunningServer) -> Iterator[Client]:
    with server.client() as connected:
        yield connected


def scopes(org: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Each scope's route prefix and the placement fields its webhooks carry."""
    return {
        "organization": (f"/orgs/{org}", {"organizationName": org}),
        "stack": (
            f"/stacks/{org}/website/prod",
            {"organizationName": org, "projectName": "website", "stackName": "prod"},
        ),
    }


def signed_with(secret: str, received: Any) -> bool:
    expected = hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received.headers.get("Pulumi-Webhook-Signature", ""))


@pytest.mark.parametrize("scope", ["organization", "stack"])
def test_every_route_in_both_scopes(admin: Rest, receiver: Receiver, org: str, scope: str) -> None:
    prefix, placement = scopes(org)[scope]
    path = f"/rest/{org}/{scope}"
    sent = {
        **placement,
        "name": "ci-hook",
        "displayName": "CI",
        "payloadUrl": receiver.url(path),
        "secret": SECRET,
        "active": True,
        "format": "raw",
        "filters": ["update_failed", "destroy_failed"],
        "groups": ["deployments"],
    }
    expected = {key: value for key, value in sent.items() if key != "secret"} | {
        "hasSecret": True,
        "disabledReason": "",
        **NO_ATTEMPTS_YET,
    }
    answers: list[bytes] = []

    def ok(method: str, route: str, body: Any = None) -> Any:
        answer = admin.call(method, route, body)
        answers.append(answer.body)
        assert 200 <= answer.status < 300, (method, route, answer.status, answer.body)
        return answer.json if answer.body else None

    assert ok("POST", f"{prefix}/hooks", sent) == expected
    assert ok("GET", f"{prefix}/hooks") == [expected]
    assert ok("GET", f"{prefix}/hooks/ci-hook") == expected

    before_ping = int(time.time())
    ping = ok("POST", f"{prefix}/hooks/ci-hook/ping")
    [received] = receiver.wait_for(path, 1)
    assert received.headers["Pulumi-Webhook-ID"] == ping["id"]
    assert signed_with(SECRET, received)
    assert ping["kind"] == "ping"
    assert json.loads(ping["payload"])["message"] == "🍹 Just a friendly ping from Pulumi 🍹"
    assert ping["payload"].encode() == received.body
    # Pulumi's units: unix seconds and whole milliseconds.
    assert isinstance(ping["timestamp"], int) and before_ping - 1 <= ping["timestamp"] <= time.time() + 1
    assert isinstance(ping["duration"], int) and 0 <= ping["duration"] < 60_000
    assert ping["requestUrl"] == receiver.url(path)
    assert "Pulumi-Webhook-Kind: ping\r\n" in ping["requestHeaders"]
    assert f"Pulumi-Webhook-ID: {ping['id']}\r\n" in ping["requestHeaders"]
    assert ping["responseCode"] == 200
    assert "Content-Type: text/plain" in ping["responseHeaders"]
    assert ping["responseBody"] == "ok"
    assert (ping["state"], ping["attemptCount"], ping["error"]) == ("succeeded", 1, "")

    [listed] = ok("GET", f"{prefix}/hooks/ci-hook/deliveries")
    assert listed == ping

    again = ok("POST", f"{prefix}/hooks/ci-hook/deliveries/{ping['id']}/redeliver")
    assert (again["id"], again["attemptCount"], again["payload"]) == (ping["id"], 2, ping["payload"])
    first, second = receiver.wait_for(path, 2)
    assert second.headers["Pulumi-Webhook-ID"] == first.headers["Pulumi-Webhook-ID"]
    assert second.body == first.body

    renamed = ok("PATCH", f"{prefix}/hooks/ci-hook", {"displayName": "renamed"})
    assert renamed == expected | {"displayName": "renamed"}

    assert ok("DELETE", f"{prefix}/hooks/ci-hook") is None
    gone = admin.call("GET", f"{prefix}/hooks/ci-hook")
    assert (gone.status, gone.json["code"]) == (404, 404)
    assert ok("GET", f"{prefix}/hooks") == []
    assert not [body for body in answers if SECRET.encode() in body or b'"secret"' in body]


def test_a_patch_changes_only_the_fields_it_sends(admin: Rest, receiver: Receiver, org: str) -> None:
    created = admin.ok(
        "POST",
        f"/orgs/{org}/hooks",
        {
            "name": "one",
            "displayName": "One",
            "payloadUrl": receiver.url("/one"),
            "secret": SECRET,
            "filters": ["update_failed"],
            "format": "slack",
        },
    )
    for change in ({"active": False}, {"filters": []}, {"payloadUrl": receiver.url("/moved")}):
        updated = admin.ok("PATCH", f"/orgs/{org}/hooks/one", change)
        assert updated == created | change
        created = updated
    assert admin.ok("GET", f"/orgs/{org}/hooks/one") == created
    assert created["hasSecret"] and created["format"] == "slack" and created["displayName"] == "One"


def test_a_patch_with_the_whole_object_as_pulumis_provider_sends_it(admin: Rest, receiver: Receiver, org: str) -> None:
    """The provider sends every field on update, and `secret` only when it sets one: the secret then stays."""
    admin.ok(
        "POST",
        f"/orgs/{org}/hooks",
        {
            "organizationName": org,
            "name": "whole",
            "displayName": "Old",
            "payloadUrl": receiver.url("/old"),
            "secret": SECRET,
            "active": True,
            "format": "raw",
            "filters": ["update_failed"],
        },
    )
    whole = {
        "organizationName": org,
        "name": "whole",
        "displayName": "New",
        "payloadUrl": receiver.url(f"/whole/{org}"),
        "active": True,
        "format": "ms_teams",
        "filters": ["deployment_failed"],
        "groups": ["stacks"],
    }
    replaced = admin.ok("PATCH", f"/orgs/{org}/hooks/whole", whole)
    assert replaced == whole | {"hasSecret": True, "disabledReason": "", **NO_ATTEMPTS_YET}
    admin.ok("POST", f"/orgs/{org}/hooks/whole/ping")
    [kept] = receiver.wait_for(f"/whole/{org}", 1)
    assert signed_with(SECRET, kept)

    # With a secret, it is replaced; and a body as GET returns it can be sent back.
    fetched = admin.ok("GET", f"/orgs/{org}/hooks/whole")
    admin.ok("PATCH", f"/orgs/{org}/hooks/whole", fetched | {"secret": "rotated"})
    admin.ok("POST", f"/orgs/{org}/hooks/whole/ping")
    _, rotated = receiver.wait_for(f"/whole/{org}", 2)
    assert signed_with("rotated", rotated)


def test_deliveries_come_newest_first_a_page_at_a_time(admin: Rest, receiver: Receiver, org: str) -> None:
    admin.ok("POST", f"/orgs/{org}/hooks", {"name": "paged", "displayName": "P", "payloadUrl": receiver.url("/p")})
    pinged = [admin.ok("POST", f"/orgs/{org}/hooks/paged/ping")["id"] for _ in range(3)]
    first = admin.call("GET", f"/orgs/{org}/hooks/paged/deliveries?pageSize=2")
    assert [d["id"] for d in first.json] == pinged[:0:-1]
    link = first.headers["Link"]
    assert link.startswith(f"</api/orgs/{org}/hooks/paged/deliveries?") and link.endswith('>; rel="next"')
    second = admin.call("GET", link[len("</api") : -len('>; rel="next"')])
    assert [d["id"] for d in second.json] == pinged[:1]
    assert "Link" not in second.headers


@pytest.mark.parametrize("scheme", [token_auth, bearer_auth])
def test_both_token_schemes_are_accepted(server: RunningServer, scheme: Callable[[str], str], org: str) -> None:
    answer = Rest(server, scheme(server.admin_token)).call("GET", f"/orgs/{org}/hooks")
    assert (answer.status, answer.json) == (200, [])


@pytest.mark.parametrize(
    "authorization", [None, "", "token", "Basic dXNlcjpwdw==", "token whk_not-a-real-token", "whk_no-scheme"]
)
def test_missing_malformed_and_unknown_tokens_are_401(server: RunningServer, authorization: str | None) -> None:
    answer = Rest(server, authorization).call("GET", "/orgs/acme/hooks")
    assert answer.status == 401
    assert answer.json["code"] == 401 and answer.json["message"]
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


OWN, FOREIGN = "rest-own", "rest-foreign"
READS = {"list", "get", "deliveries"}
ROUTES: dict[str, tuple[str, str, Any]] = {
    "list": ("GET", "/orgs/{org}/hooks", None),
    "create": ("POST", "/orgs/{org}/hooks", {"displayName": "x", "payloadUrl": "https://example.com/x"}),
    "get": ("GET", "/orgs/{org}/hooks/fixed", None),
    "update": ("PATCH", "/orgs/{org}/hooks/fixed", {"displayName": "changed"}),
    "delete": ("DELETE", "/orgs/{org}/hooks/fixed", None),
    "ping": ("POST", "/orgs/{org}/hooks/fixed/ping", None),
    "deliveries": ("GET", "/orgs/{org}/hooks/fixed/deliveries", None),
    "redeliver": ("POST", "/orgs/{org}/hooks/fixed/deliveries/{delivery}/redeliver", None),
    "rotate secret": ("POST", "/orgs/{org}/hooks/fixed/rotate-secret", {"overlap": "1h"}),
    "recover": ("POST", "/orgs/{org}/hooks/fixed/deliveries/recover", {"since": 0}),
    "recover the organization's": ("POST", "/orgs/{org}/deliveries/recover", {"since": 0}),
    "recover a stack's": ("POST", "/stacks/{org}/p/s/deliveries/recover", {"since": 0}),
}


@pytest.fixture(scope="module")
def fixed_hooks(admin: Rest, receiver: Receiver) -> dict[str, str]:
    """A webhook named `fixed` in each organization, with one delivery: organization -> delivery ID."""
    deliveries = {}
    for org in (OWN, FOREIGN):
        admin.ok("POST", f"/orgs/{org}/hooks", {"name": "fixed", "displayName": "F", "payloadUrl": receiver.url("/f")})
        deliveries[org] = admin.ok("POST", f"/orgs/{org}/hooks/fixed/ping")["id"]
    return deliveries


@pytest.fixture(scope="module")
def role_tokens(server: RunningServer) -> dict[str, str]:
    return {role: create_token(server.settings.database, role, OWN) for role in ("reader", "publisher", "admin")}


@pytest.mark.parametrize(
    ("role", "route", "org"),
    # What an admin may do in its own organization, the tests above show.
    [
        case
        for case in itertools.product(["reader", "publisher", "admin"], ROUTES, [OWN, FOREIGN])
        if case[::2] != ("admin", OWN)
    ],
)
def test_roles_and_organizations(
    server: RunningServer, fixed_hooks: dict[str, str], role_tokens: dict[str, str], role: str, route: str, org: str
) -> None:
    """A reader reads its organizations' webhooks, a publisher calls none of these, and no token reaches an
    organization it does not name."""
    method, template, body = ROUTES[route]
    answer = Rest(server, token_auth(role_tokens[role])).call(
        method, template.format(org=org, delivery=fixed_hooks[org]), body
    )
    if role == "reader" and org == OWN and route in READS:
        assert answer.status == 200, answer.body
    else:
        assert (answer.status, answer.json["code"]) == (403, 403), answer.body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"\xff\xfe", "body"),
        (b"[]", "body"),
        (b"", "body"),
        (b"[" * 100_000, "body"),
        ({"displayName": "x", "payloadUrl": "https://example.com", "webhookId": "x"}, "webhookId"),
        ({"displayName": "x", "payloadUrl": "https://example.com", "active": "yes"}, "active"),
        ({"displayName": "x", "payloadUrl": "https://example.com", "format": "WEBHOOK_FORMAT_RAW"}, "format"),
        ({"displayName": "x", "payloadUrl": "https://example.com", "filters": ["refresh failed"]}, "filters"),
        ({"displayName": "x", "payloadUrl": "https://example.com", "groups": "stacks"}, "groups"),
        ({"displayName": "", "payloadUrl": "https://example.com"}, "displayName"),
        ({"displayName": "x", "payloadUrl": "ftp://example.com"}, "payloadUrl"),
        ({"displayName": "x"}, "payloadUrl"),
        ({"displayName": "x", "payloadUrl": "https://example.com", "secret": 7}, "secret"),
        ({"displayName": "x", "payloadUrl": "https://example.com", "name": "no spaces"}, "name"),
        (
            {"displayName": "x", "payloadUrl": "https://example.com", "organizationName": "elsewhere"},
            "organizationName",
        ),
        ({"displayName": "x", "payloadUrl": "https://example.com", "stackName": "prod"}, "stackName"),
    ],
)
def test_bad_bodies_are_400_naming_the_json_field(admin: Rest, org: str, body: Any, field: str) -> None:
    answer = admin.call(
        "POST",
        f"/orgs/{org}/hooks",
        None if isinstance(body, bytes) else body,
        raw=body if isinstance(body, bytes) else None,
    )
    assert answer.status == 400, answer.body
    assert answer.json["code"] == 400
    assert answer.json["message"].startswith(f"{field}: "), answer.json
    assert admin.ok("GET", f"/orgs/{org}/hooks") == []


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/orgs/{org}/hooks/kept", {"name": "other"}, "name"),
        ("/orgs/{org}/hooks/kept", {"payloadUrl": "http://169.254.169.254/latest"}, "payloadUrl"),
        ("/orgs/{org}/hooks/kept", {"displayName": None}, "displayName"),
        (
            "/stacks/{org}/p/s/hooks",
            {"displayName": "x", "payloadUrl": "https://e.com", "filters": ["stack_created"]},
            "filters[0]",
        ),
        ("/orgs/{org}/hooks/kept/deliveries?pageSize=-1", None, "pageSize"),
        ("/orgs/{org}/hooks/kept/deliveries?continuationToken=forged", None, "continuationToken"),
        ("/orgs/{org}%2Fprojects%2Fp%2Fstacks%2Fs/hooks", None, "path"),
        ("/orgs/{org}/hooks/" + "x" * 33, None, "name"),
    ],
)
def test_bad_input_elsewhere_is_400_and_changes_nothing(
    admin: Rest, org: str, route: str, body: Any, field: str
) -> None:
    kept = admin.ok("POST", f"/orgs/{org}/hooks", {"name": "kept", "displayName": "K", "payloadUrl": "https://e.com"})
    method = "PATCH" if route.endswith("/kept") else "GET" if body is None else "POST"
    answer = admin.call(method, route.format(org=org), body)
    assert (answer.status, answer.json["code"]) == (400, 400), answer.body
    assert answer.json["message"].startswith(f"{field}: "), answer.json
    assert admin.ok("GET", f"/orgs/{org}/hooks/kept") == kept


def test_unknown_webhooks_deliveries_and_routes_are_404(admin: Rest, org: str) -> None:
    admin.ok("POST", f"/orgs/{org}/hooks", {"name": "here", "displayName": "H", "payloadUrl": "https://e.com"})
    for method, route in [
        ("GET", "/orgs/{org}/hooks/nope"),
        ("PATCH", "/orgs/{org}/hooks/nope"),
        ("DELETE", "/orgs/{org}/hooks/nope"),
        ("POST", "/orgs/{org}/hooks/nope/ping"),
        ("GET", "/orgs/{org}/hooks/nope/deliveries"),
        ("POST", "/orgs/{org}/hooks/nope/deliveries/d1/redeliver"),
        ("POST", "/orgs/{org}/hooks/here/deliveries/d1/redeliver"),
        ("GET", "/stacks/{org}/p/s/hooks/here"),
        ("GET", "/orgs/{org}/webhooks"),
    ]:
        answer = admin.call(method, route.format(org=org), {} if method == "PATCH" else None)
        assert (answer.status, answer.json["code"]) == (404, 404), (method, route, answer.body)
        assert answer.json["message"]


def test_a_method_a_route_does_not_take_is_405_with_allow(admin: Rest, org: str) -> None:
    answer = admin.call("PUT", f"/orgs/{org}/hooks")
    assert (answer.status, answer.json["code"]) == (405, 405)
    assert set(answer.headers["Allow"].split(",")) >= {"GET", "POST"}


def test_an_existing_name_is_409(admin: Rest, org: str) -> None:
    body = {"name": "twice", "displayName": "T", "payloadUrl": "https://e.com/1"}
    admin.ok("POST", f"/orgs/{org}/hooks", body)
    answer = admin.call("POST", f"/orgs/{org}/hooks", body | {"payloadUrl": "https://e.com/2"})
    assert (answer.status, answer.json["code"]) == (409, 409)
    assert admin.ok("GET", f"/orgs/{org}/hooks/twice")["payloadUrl"] == "https://e.com/1"


def test_redelivering_while_an_attempt_is_in_flight_is_409(
    admin: Rest, grpc_admin: Client, receiver: Receiver, org: str
) -> None:
    """FAILED_PRECONDITION: the call conflicts with the delivery's state now, and may be retried."""
    path = f"/slow/{org}"
    receiver.script(path, [Reply(delay=3)])
    hook = make_webhook(grpc_admin, f"organizations/{org}", receiver.url(path), "slow")
    [delivery] = publish(grpc_admin, seed.update_event(stack=f"organizations/{org}/projects/p/stacks/s")).deliveries
    receiver.wait_for(path, 1)
    answer = admin.call(
        "POST", f"/orgs/{org}/hooks/{hook.name.rsplit('/', 1)[1]}/deliveries/{delivery_id(delivery)}/redeliver"
    )
    assert (answer.status, answer.json["code"]) == (409, 409), answer.body
    assert "being sent right now" in answer.json["message"]


def test_a_body_over_the_limit_is_413(admin: Rest, org: str) -> None:
    huge = json.dumps({"displayName": "x" * (1024 * 1024 + 1), "payloadUrl": "https://e.com"}).encode()
    answer = admin.call("POST", f"/orgs/{org}/hooks", raw=huge)
    assert (answer.status, answer.json["code"]) == (413, 413)
    assert admin.ok("GET", f"/orgs/{org}/hooks") == []


def test_over_the_rate_limit_is_429_with_retry_after(start_server: Callable[..., RunningServer]) -> None:
    running = start_server(rate_limit=1)
    rest = Rest(running, token_auth(running.admin_token))
    answers = [rest.call("GET", "/orgs/acme/hooks") for _ in range(3)]
    assert answers[0].status == 200
    refused = [answer for answer in answers if answer.status == 429]
    assert refused, [answer.status for answer in answers]
    for answer in refused:
        assert answer.json["code"] == 429 and "rate limit" in answer.json["message"]
        assert answer.headers["Retry-After"] == "1"


def test_an_unavailable_database_is_503(start_server: Callable[..., RunningServer]) -> None:
    running = start_server(concurrency=0)
    rest = Rest(running, token_auth(running.admin_token))
    body = {"displayName": "x", "payloadUrl": "https://e.com"}
    with database_outage(running.settings.database):
        answer = rest.call("POST", f"/orgs/{uuid.uuid4().hex[:8]}/hooks", body)
    assert (answer.status, answer.json["code"]) == (503, 503), answer.body
    assert answer.json["message"] == "the database is unavailable; try again"


def test_dispatch_processes_do_not_serve_the_rest_api(tmp_path: Path, databases: Databases) -> None:
    """`webhooks dispatch` has an HTTP listener for operators, and no API."""
    url = databases.new(tmp_path)
    create_key(tmp_path / "data" / "secret.key")
    dispatcher = ServiceProcess(
        ["dispatch", "--database", url, "--http-listen", "127.0.0.1:0"], wait_for_port=False, cwd=tmp_path
    )
    try:
        port = int(dispatcher.wait_for_log(r"HTTP on http://127\.0\.0\.1:(\d+)", 30)[1])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/api/orgs/acme/hooks", headers={"Authorization": "token whk_anything"})
        answer = connection.getresponse()
        assert answer.status == 404
        assert answer.read() == b"404: Not Found"
        connection.close()
    finally:
        dispatcher.terminate()
