"""The parts under the console's pages: the application's list of stacks with webhooks (on each engine) and
the console's sessions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.application import build_application
from tests.support.databases import Databases
from webhook_service.api.console.sessions import Sessions
from webhook_service.app import webhooks as app_webhooks
from webhook_service.domain.access import Principal, Role
from webhook_service.domain.errors import InvalidArgument, PermissionDenied
from webhook_service.domain.model import WebhookFields
from webhook_service.domain.names import Parent

ACMEROOT = Principal("t-admin", Role.ADMIN, frozenset({"acme"}))
ACME_READER = Principal("t-reader", Role.READER, frozenset({"acme"}))
ACME_PUBLISHER = Principal("t-publisher", Role.PUBLISHER, frozenset({"acme"}))
ROOT = Principal("t-root", Role.ADMIN, None)


def test_the_stacks_with_webhooks_of_an_organization(
    tmp_path: Path, databases: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each stack once, by project and stack, none of another organization's; a reader may list them, a
    publisher may not, and an organization out of reach is refused."""
    app = build_application(databases.new(tmp_path))
    fields = WebhookFields(display_name="CI", payload_url="https://example.com/hook")

    async def scenario() -> None:
        for parent in (
            "organizations/acme",
            "organizations/acme/projects/web/stacks/prod",
            "organizations/acme/projects/web/stacks/prod",
            "organizations/acme/projects/api/stacks/staging",
            "organizations/acme/projects/web/stacks/dev",
            "organizations/globex/projects/web/stacks/other",
        ):
            await app.webhooks.create(ACMEROOT if "acme" in parent else ROOT, parent, "", fields)
        listed = await app.webhooks.stacks(ACME_READER, "acme")
        assert listed.stacks == [
            Parent("acme", "api", "staging"),
            Parent("acme", "web", "dev"),
            Parent("acme", "web", "prod"),
        ]
        assert not listed.truncated
        monkeypatch.setattr(app_webhooks, "MAX_STACKS_LISTED", 2)
        cut = await app.webhooks.stacks(ACME_READER, "acme")
        assert (cut.stacks, cut.truncated) == (listed.stacks[:2], True)
        assert (await app.webhooks.stacks(ROOT, "initech")).stacks == []
        with pytest.raises(PermissionDenied, match="may not call ListWebhooks"):
            await app.webhooks.stacks(ACME_PUBLISHER, "acme")
        with pytest.raises(PermissionDenied, match="no access to organization 'globex'"):
            await app.webhooks.stacks(ACME_READER, "globex")
        with pytest.raises(InvalidArgument) as invalid:
            await app.webhooks.stacks(ROOT, "acme/projects/web/stacks/prod")
        assert invalid.value.field == "organization"

    try:
        asyncio.run(scenario())
    finally:
        app.store.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_expire_and_stay_bounded() -> None:
    clock = Clock()
    sessions = Sessions(seconds=60, entries=3, clock=clock)
    first = sessions.start("token-1")
    found = sessions.find(first)
    assert found is not None and found.token == "token-1" and len(found.csrf) >= 32
    assert first != sessions.start("token-1"), "each sign-in is a session of its own"
    clock.now += 59
    assert sessions.find(first) is not None
    clock.now += 1
    assert sessions.find(first) is None

    # Past the bound, the oldest session makes room.
    made = [sessions.start(f"token-{n}") for n in range(4)]
    assert sessions.find(made[0]) is None
    assert all(sessions.find(session) is not None for session in made[1:])
    sessions.end(made[1])
    assert sessions.find(made[1]) is None
    assert sessions.find("made-up") is None
