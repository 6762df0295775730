"""The console's rules in a real browser: sessions, roles, organizations out of reach, CSRF, escaping, the
secret, and the delivery log's pages. They concern the pages, not the store, so they run on SQLite alone."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.helpers import make_webhook
from tests.support.browser import chromium, console_url, csrf_of, sign_in, visitor
from tests.support.databases import SqliteDatabases
from tests.support.receiver import Receiver
from tests.support.running import RunningServer, settings_in
from tests.support.tokens import create_token
from webhooks.v1 import webhook_service_pb2 as ws
from webhooks_client import Client, verify_signature

NOT_FOUND = "There is no such page, or this token cannot see it."
UNLABELLED = "[...document.querySelectorAll('input:not([type=hidden])')].filter(i => !i.labels.length).length"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("console")
    running = RunningServer(settings_in(folder, SqliteDatabases().new(folder)))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(console: RunningServer) -> Iterator[Client]:
    with console.client() as connected:
        yield connected


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as started:
        yield started


@pytest.fixture
def page(browser: Browser, console: RunningServer) -> Iterator[Page]:
    with visitor(browser, console_url(console)) as opened:
        yield opened


def ping(client: Client, webhook: str) -> str:
    """The console path of a delivery made by pinging `webhook` over gRPC."""
    return path_of(client.webhooks.PingWebhook(ws.PingWebhookRequest(name=webhook)).name)


def status(page: Page, path: str) -> int:
    response = page.goto(path)
    assert response is not None
    return response.status


def path_of(name: str) -> str:
    """The console's path of a resource name: organizations/o/webhooks/w -> /orgs/o/webhooks/w."""
    return "/" + name.replace("organizations/", "orgs/", 1).replace("/projects/", "/").replace("/stacks/", "/")


def test_signing_in_and_out(page: Page, browser: Browser, console: RunningServer, org: str) -> None:
    """A page asked for before signing in is where the sign-in leads; the cookie is HttpOnly, SameSite=Strict,
    expiring and not the token; after signing out the same cookie opens nothing."""
    page.goto(f"/orgs/{org}/webhooks")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate(UNLABELLED) == 0

    page.get_by_label("API token").fill("whk_" + "A" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#token-error")).to_have_text("API token unknown or revoked token")

    # With the keyboard alone: the token field has the focus, Enter sends the form.
    page.keyboard.type(console.admin_token)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"Webhooks {org}")).to_be_visible()
    [cookie] = [c for c in page.context.cookies() if c["name"] == "webhooks_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert time.time() + 3600 < cookie["expires"] < time.time() + 24 * 3600
    assert console.admin_token not in cookie["value"]
    response = page.reload()
    assert response is not None
    assert response.headers["content-security-policy"].startswith("default-src 'self';")
    assert response.headers["cache-control"] == "no-store"

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    with visitor(browser, console_url(console)) as thief:
        thief.context.add_cookies([{**cookie}])
        thief.goto(f"/orgs/{org}/webhooks")
        expect(thief.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_reader_sees_no_button_that_changes_anything_and_its_posts_are_refused(
    page: Page, console: RunningServer, admin: Client, receiver: Receiver, org: str
) -> None:
    hook = make_webhook(admin, f"organizations/{org}", receiver.url("/read"), display_name="Read me")
    delivery = ping(admin, hook.name)
    sign_in(page, create_token(console.settings.database, "reader", org))

    page.goto(f"/orgs/{org}/webhooks")
    expect(page.get_by_role("link", name="Read me")).to_be_visible()
    expect(page.get_by_role("link", name="Create webhook")).to_have_count(0)
    page.get_by_role("link", name="Read me").click()
    expect(page.get_by_role("heading", name="Read me")).to_be_visible()
    expect(page.locator("table.deliveries tbody tr")).to_have_count(1)
    for name in ("Edit", "Delete"):
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
    expect(page.get_by_role("button")).to_have_text(["Sign out"])
    page.goto(delivery)
    expect(page.locator("pre.payload")).to_contain_text("Just a friendly ping")
    expect(page.get_by_role("button")).to_have_text(["Sign out"])

    # Posted anyway, with the session's own CSRF token: refused, and nothing changes.
    csrf = csrf_of(page)
    webhook = path_of(hook.name)
    posts = {
        f"/orgs/{org}/new-webhook": {"display_name": "Mine", "payload_url": "https://example.com/x"},
        f"{webhook}/edit": {"display_name": "Renamed", "payload_url": "https://example.com/x"},
        f"{webhook}/deactivate": {},
        f"{webhook}/ping": {},
        f"{webhook}/delete": {},
        f"{delivery}/redeliver": {},
    }
    for path, form in posts.items():
        refused = page.request.post(path, form={"csrf": csrf, **form})
        assert refused.status == 403, path
        assert "a reader token may not call" in refused.text()
    assert status(page, f"/orgs/{org}/new-webhook") == 403
    [still] = admin.webhooks.ListWebhooks(ws.ListWebhooksRequest(parent=f"organizations/{org}")).webhooks
    assert (still.display_name, still.active) == ("Read me", True)
    log = admin.webhooks.ListWebhookDeliveries(ws.ListWebhookDeliveriesRequest(parent=hook.name)).deliveries
    assert [d.attempt_count for d in log] == [1]


def test_an_organization_out_of_reach_is_not_found(
    page: Page, console: RunningServer, admin: Client, receiver: Receiver, org: str
) -> None:
    other = f"{org}-other"
    hook = make_webhook(admin, f"organizations/{other}", receiver.url("/theirs"), display_name="Their secret plans")
    make_webhook(admin, f"organizations/{other}/projects/site/stacks/prod", "https://example.com/s", display_name="x")
    delivery = ping(admin, hook.name)
    sign_in(page, create_token(console.settings.database, "reader", org))
    webhook = path_of(hook.name)
    for path in (f"/orgs/{other}/webhooks", f"/orgs/{other}/site/prod/webhooks", webhook, delivery):
        assert status(page, path) == 404, path
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        expect(page.locator("main")).to_contain_text(NOT_FOUND)
        html = page.content()
        assert "Their secret plans" not in html and hook.name.rsplit("/", 1)[1] not in html and "site" not in html
    # The same page as for a webhook of its own organization that does not exist.
    assert status(page, f"/orgs/{org}/webhooks/nothing-here") == 404


def test_forms_without_the_sessions_csrf_token_are_refused(
    page: Page, browser: Browser, console: RunningServer, admin: Client, org: str
) -> None:
    hook = make_webhook(admin, f"organizations/{org}", "https://example.com/hook")
    delete = path_of(hook.name) + "/delete"
    sign_in(page, console.admin_token)
    with visitor(browser, console_url(console)) as other:
        sign_in(other, console.admin_token)
        others_csrf = csrf_of(other)
    # Each carries this browser's session cookie, as a forged cross-site form would.
    for form in ({}, {"csrf": ""}, {"csrf": others_csrf}, {"csrf": csrf_of(page) + "x"}):
        refused = page.request.post(delete, form=form)
        assert refused.status == 403
        assert "This form did not come from a page of this console" in refused.text()
    admin.webhooks.GetWebhook(ws.GetWebhookRequest(name=hook.name))

    # Signing in too needs the token its form was served with.
    with visitor(browser, console_url(console)) as stranger:
        refused = stranger.request.post("/sign-in", form={"token": console.admin_token, "csrf": "made-up"})
        assert refused.status == 403
        assert not stranger.context.cookies()


def test_what_people_type_is_shown_as_text_and_the_secret_never_reaches_the_html(
    page: Page, console: RunningServer, admin: Client, receiver: Receiver, org: str
) -> None:
    name = '<script>alert("owned")</script><b>bold</b>'
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    pages: list[str] = []
    page.on("load", lambda loaded: pages.append(loaded.content()))
    sign_in(page, console.admin_token)
    page.goto(f"/orgs/{org}/new-webhook?format=raw")
    assert page.evaluate(UNLABELLED) == 0

    # A refused form: the error beside its field, what was typed kept, but never the secret.
    page.get_by_label("Display name").fill(name)
    page.get_by_label("Payload URL").fill("ftp://example.com/hook")
    page.get_by_label("Secret (optional)").fill(secret)
    page.get_by_role("button", name="Create webhook").click()
    expect(page.locator("#payload_url-error")).to_have_text("Payload URL must be an http or https URL")
    expect(page.get_by_label("Payload URL")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Display name")).to_have_value(name)
    expect(page.get_by_label("Secret (optional)")).to_have_value("")
    expect(page.locator("#secret-error")).to_contain_text("type it again")

    page.get_by_label("Payload URL").fill(receiver.url("/typed"))
    page.get_by_label("Secret (optional)").fill(secret)
    page.get_by_role("button", name="Create webhook").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    assert "&lt;script&gt;alert(" in page.content()
    page.get_by_role("button", name="Ping").click()
    expect(page.get_by_role("status")).to_contain_text("Ping delivered")
    [received] = receiver.wait_for("/typed", 1)
    assert verify_signature(secret, received.body, received.headers["Pulumi-Webhook-Signature"])

    # Edited without typing the secret: it stays, and the form never shows it.
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Secret (optional)")).to_have_value("")
    page.get_by_label("Display name").fill(name + " (edited)")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_have_text("Changes saved.")
    [hook] = admin.webhooks.ListWebhooks(ws.ListWebhooksRequest(parent=f"organizations/{org}")).webhooks
    assert hook.display_name == name + " (edited)" and hook.has_secret
    page.locator("table.deliveries tbody tr").first.get_by_role("link").click()
    expect(page.locator("pre.payload")).to_contain_text("Just a friendly ping")
    page.get_by_role("link", name="Settings › Webhooks").click()
    expect(page.get_by_role("row", name=re.compile("edited"))).to_contain_text(name)

    assert page.locator("script").count() == 0
    assert len(pages) >= 8
    assert not [html for html in pages if secret in html]


def test_organization_only_filters_are_refused_on_a_stack_webhook(page: Page, console: RunningServer, org: str) -> None:
    sign_in(page, console.admin_token)
    form = {
        "csrf": csrf_of(page),
        "format": "raw",
        "display_name": "Hand-made",
        "payload_url": "https://example.com/hook",
        "events": "specific",
        "filters": "stack_created",
    }
    refused = page.request.post(f"/orgs/{org}/website/prod/new-webhook", form=form)
    assert refused.status == 400
    assert re.search(r'id="filters-error">Events stack_created is for organization webhooks only<', refused.text())


def test_the_delivery_log_is_paged_newest_first(
    page: Page, console: RunningServer, admin: Client, receiver: Receiver, org: str
) -> None:
    hook = make_webhook(admin, f"organizations/{org}", receiver.url("/paged"))
    pings = [ping(admin, hook.name) for _ in range(21)]
    sign_in(page, console.admin_token)
    page.goto(path_of(hook.name))
    rows = page.locator("table.deliveries tbody tr")
    expect(rows).to_have_count(20)
    links = [rows.nth(n).get_by_role("link").get_attribute("href") for n in range(20)]
    assert links == pings[::-1][:20]
    expect(page.get_by_role("link", name="Newest deliveries")).to_have_count(0)
    page.get_by_role("link", name="Older deliveries").click()
    expect(rows).to_have_count(1)
    assert rows.first.get_by_role("link").get_attribute("href") == pings[0]
    expect(page.get_by_role("link", name="Older deliveries")).to_have_count(0)
    page.get_by_role("link", name="Newest deliveries").click()
    expect(rows).to_have_count(20)
