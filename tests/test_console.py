"""The web console walked through in a real browser, as a person managing webhooks would use it.

It runs on both engines (the `server` fixture), since every page reads the store; the screenshots in docs/,
which the README shows, are taken on the SQLite run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests import seed
from tests.helpers import publish
from tests.support.browser import chromium, console_url, reload_until, sign_in, visitor
from tests.support.databases import Databases
from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from webhooks.v1 import event_pb2
from webhooks_client import Client

DOCS = Path(__file__).parent.parent / "docs"
STACK = "organizations/acme/projects/website/stacks/prod"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as started:
        yield started


@pytest.fixture
def page(browser: Browser, server: RunningServer) -> Iterator[Page]:
    with visitor(browser, console_url(server)) as opened:
        yield opened


def screenshot(page: Page, databases: Databases, name: str) -> None:
    if databases.engine == "sqlite":
        page.screenshot(path=DOCS / f"console-{name}.png", full_page=True)


def test_managing_webhooks_in_the_console(
    page: Page, server: RunningServer, client: Client, receiver: Receiver, databases: Databases
) -> None:
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)

    # Sign in with the admin token, then open the organization's Settings > Webhooks.
    sign_in(page, server.admin_token)
    expect(page.get_by_role("heading", name="Organizations")).to_be_visible()
    page.get_by_label("Organization name").fill("acme")
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_role("heading", name="Webhooks acme")).to_be_visible()
    expect(page.get_by_text("No webhooks yet.")).to_be_visible()

    # Create webhook: the generic format, a secret, and two specific events from the menu.
    page.get_by_role("link", name="Create webhook").click()
    page.get_by_role("link", name=re.compile("^Webhook Pulumi")).click()
    page.get_by_label("Display name").fill("Update results")
    page.get_by_label("Payload URL").fill(receiver.url("/console-org"))
    page.get_by_label("Secret (optional)").fill("console-s3cr3t")
    page.get_by_label("Specific events").check()
    stack_filters = page.get_by_role("group", name="Stack (organization webhooks only)")
    expect(stack_filters.get_by_label("Stack created")).to_be_visible()
    page.get_by_label("Update succeeded").check()
    page.get_by_label("Update failed").check()
    screenshot(page, databases, "create")
    page.get_by_role("button", name="Create webhook").click()
    expect(page.get_by_role("status")).to_have_text("Webhook created.")
    expect(page.get_by_role("heading", name="Update results")).to_be_visible()
    expect(page.locator("dl.details")).to_contain_text("Update succeeded")
    expect(page.locator("dl.details")).to_contain_text("Update failed")
    expect(page.locator("dl.details")).to_contain_text("Set (never shown)")
    expect(page.get_by_text("No deliveries yet.")).to_be_visible()

    # An internal service publishes a failed update over gRPC: its delivery shows up in the log.
    publish(client, seed.update_event(event_pb2.UPDATE_KIND_UPDATE, event_pb2.UPDATE_RESULT_FAILED, stack=STACK))
    log = page.locator("table.deliveries tbody tr")
    reload_until(page, lambda: log.count() == 1 and "Succeeded" in log.first.inner_text())
    expect(log.first).to_contain_text("stack_update")
    expect(log.first.locator("td").nth(2)).to_have_text("200")
    expect(log.first.locator("td").nth(4)).to_have_text("1")

    # Open it: the payload, the request's headers and the attempt; then redeliver.
    log.first.get_by_role("link").click()
    expect(page.locator("pre.payload")).to_contain_text('"kind": "update"')
    expect(page.locator("pre.payload")).to_contain_text('"result": "failed"')
    headers = page.get_by_role("region", name="Request headers")
    expect(headers).to_contain_text("Pulumi-Webhook-Kind")
    expect(headers).to_contain_text("Pulumi-Webhook-Signature")
    expect(page.get_by_role("heading", name=re.compile(r"^Attempt 1 200"))).to_be_visible()
    page.get_by_role("button", name="Redeliver").click()
    expect(page.get_by_role("status")).to_have_text("Redelivered: sent again as attempt 2.")
    expect(page.get_by_role("heading", name=re.compile(r"^Attempt 2 200"))).to_be_visible()
    received = receiver.wait_for("/console-org", 2)
    assert received[0].headers["Pulumi-Webhook-ID"] == received[1].headers["Pulumi-Webhook-ID"]
    screenshot(page, databases, "delivery")

    # Ping, and see its result.
    page.get_by_role("link", name="Update results").click()
    page.get_by_role("button", name="Ping").click()
    expect(page.get_by_role("status")).to_contain_text("Ping delivered: response 200")
    assert receiver.wait_for("/console-org", 3)[2].headers["Pulumi-Webhook-Kind"] == "ping"
    expect(log.first).to_contain_text("ping")
    screenshot(page, databases, "webhook")

    # Deactivate, and see the state here and on the organization's page.
    page.get_by_role("button", name="Deactivate").click()
    expect(page.get_by_role("status")).to_contain_text("Webhook deactivated")
    expect(page.locator(".heading .state")).to_have_text("Deactivated")
    expect(page.get_by_role("button", name="Activate")).to_be_visible()
    page.get_by_role("link", name="Settings › Webhooks").click()
    row = page.get_by_role("row", name=re.compile("Update results"))
    expect(row).to_contain_text("Deactivated")
    expect(row).to_contain_text("Update succeeded")
    expect(row.locator(".state.succeeded")).to_be_visible()

    # A stack webhook, from the stack's page: Slack, with no organization-only filters on offer.
    page.get_by_label("Project", exact=True).fill("website")
    page.get_by_label("Stack", exact=True).fill("prod")
    page.get_by_role("button", name="Open stack webhooks").click()
    expect(page.get_by_role("heading", name="Webhooks acme/website/prod")).to_be_visible()
    page.get_by_role("link", name="Create webhook").click()
    page.get_by_role("link", name=re.compile("^Slack")).click()
    expect(page.get_by_label("Secret (optional)")).to_have_count(0)
    page.get_by_label("Display name").fill("Prod deployments")
    page.get_by_label("Slack incoming webhook URL").fill(receiver.url("/console-slack"))
    page.get_by_label("Specific events").check()
    expect(page.get_by_label("Stack created")).to_have_count(0)
    page.get_by_label("Every deployment event (the deployments group)").check()
    page.get_by_role("button", name="Create webhook").click()
    expect(page.get_by_role("status")).to_have_text("Webhook created.")
    expect(page.locator("dl.details")).to_contain_text("Slack")
    expect(page.locator("dl.details")).to_contain_text("deployments group")

    # The organization's page lists the stack that now has a webhook.
    page.get_by_role("link", name="acme", exact=True).click()
    expect(page.get_by_role("region", name="Stacks with webhooks").get_by_role("link")).to_have_text("website/prod")
    screenshot(page, databases, "webhooks")

    # Delete it, confirming first; the stack has no webhooks left.
    page.get_by_role("link", name="website/prod").click()
    page.get_by_role("link", name="Prod deployments").click()
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete webhook “Prod deployments”?")).to_be_visible()
    page.get_by_role("button", name="Delete webhook").click()
    expect(page.get_by_role("status")).to_have_text("Webhook deleted, with its delivery log.")
    expect(page.get_by_text("No webhooks yet.")).to_be_visible()
    page.get_by_role("link", name="acme", exact=True).click()
    expect(page.get_by_text("No stack of acme has webhooks of its own.")).to_be_visible()

    # Nothing the pages asked for was refused, by the Content-Security-Policy or otherwise.
    assert problems == []
