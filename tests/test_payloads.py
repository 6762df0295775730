import html
import json
import re
from typing import Any

import pytest

from tests import seed
from webhook_service.domain.model import (
    DeploymentChange,
    Event,
    Identity,
    StackChange,
    UpdateChange,
    WebhookFormat,
)
from webhook_service.domain.payloads import (
    PING_MESSAGE,
    event_kind,
    render_event,
    render_ping,
)

RAW, SLACK, TEAMS = WebhookFormat.RAW, WebhookFormat.SLACK, WebhookFormat.MS_TEAMS

MORTY = Identity("Morty Smith", "morty", "https://crazy-adventures.net/morty.png")
ORG = Identity("Crazy Adventures", "crazy-adventures", "https://crazy-adventures.net/logo.png")
BASE = seed.BASE
CHANGES = {"update": 3, "delete": 1, "update-replace": 2}
PREVIEW_URL = f"{BASE}/previews/11bf162b-d9d5-4715-8f88-20dcd0e0b167"


def event(change: StackChange | UpdateChange | DeploymentChange) -> Event:
    return Event("crazy-adventures", "website", "website-prod", MORTY, ORG, change)


STACK_CREATED = event(StackChange("created"))
REFRESH = event(UpdateChange(f"{BASE}/updates/42", "refresh", "succeeded", dict(CHANGES)))
PREVIEW = event(UpdateChange(PREVIEW_URL, "update", "failed", dict(CHANGES), is_preview=True))
DEPLOYMENT = event(DeploymentChange(f"{BASE}/deployments/127", 127, "update", "running"))


def raw(ev: Event) -> Any:
    return json.loads(render_event(RAW, ev))


def assert_same_ordered(actual: Any, expected: Any) -> None:
    assert actual == expected
    assert list(actual) == list(expected)
    for key in ("user", "organization"):
        assert list(actual[key]) == list(expected[key])


def test_raw_stack_creation() -> None:
    assert_same_ordered(raw(STACK_CREATED), seed.STACK_CREATION)


def test_raw_stack_update() -> None:
    assert_same_ordered(raw(REFRESH), seed.STACK_UPDATE)
    assert list(raw(REFRESH)["resourceChanges"]) == ["update", "delete", "update-replace"]


def test_raw_stack_preview() -> None:
    assert_same_ordered(raw(PREVIEW), seed.STACK_PREVIEW)


def test_raw_deployment() -> None:
    assert_same_ordered(raw(DEPLOYMENT), seed.DEPLOYMENT)
    assert isinstance(raw(DEPLOYMENT)["version"], int)


def test_event_kind() -> None:
    assert event_kind(STACK_CREATED) == "stack"
    assert event_kind(event(StackChange("deleted"))) == "stack"
    assert event_kind(REFRESH) == "stack_update"
    assert event_kind(PREVIEW) == "stack_preview"
    assert event_kind(DEPLOYMENT) == "deployment"


def slack_text(ev: Event) -> tuple[str, str]:
    """The fallback text, and everything the blocks show joined together."""
    msg = json.loads(render_event(SLACK, ev))
    (section,) = msg["blocks"]
    assert section["type"] == "section"
    shown = "\n".join([section["text"]["text"], *(f["text"] for f in section["fields"])])
    return msg["text"], shown


def test_slack_update_succeeded() -> None:
    update = event(UpdateChange(f"{BASE}/updates/42", "update", "succeeded", dict(CHANGES)))
    text, shown = slack_text(update)
    assert text == ":tropical_drink: crazy-adventures/website/website-prod update succeeded."
    for needle in (
        "*Stack*\ncrazy-adventures/website/website-prod",
        "*Operation*\nupdate",
        "*Result*\nsucceeded",
        "Morty Smith",
        "*Resource changes*\nupdate: 3, delete: 1, update-replace: 2",
        f"<{BASE}/updates/42|",
    ):
        assert needle in shown


def test_slack_preview_failed() -> None:
    text, shown = slack_text(PREVIEW)
    assert text == ":rotating_light: crazy-adventures/website/website-prod preview failed."
    assert "*Operation*\npreview" in shown
    assert PREVIEW_URL in shown
    assert ":tropical_drink:" not in text + shown


def test_slack_deployment_and_stack() -> None:
    text, shown = slack_text(DEPLOYMENT)
    assert "deployment #127 (update) running" in text
    assert ":tropical_drink:" not in text and ":rotating_light:" not in text
    assert f"{BASE}/deployments/127" in shown
    assert "Resource changes" not in shown

    text, shown = slack_text(STACK_CREATED)
    assert text.endswith("crazy-adventures/website/website-prod stack created.")
    assert "Link" not in shown and "Resource changes" not in shown


def test_slack_escapes_control_characters() -> None:
    sneaky = Event(
        "o",
        "p",
        "s",
        Identity(name="<!channel> & co"),
        Identity(),
        StackChange("created"),
    )
    _, shown = slack_text(sneaky)
    assert "&lt;!channel&gt; &amp; co" in shown
    assert "<!channel>" not in shown


def test_org_falls_back_to_name_then_organization_name() -> None:
    by_name = Event("o", "p", "s", MORTY, Identity(name="Org"), StackChange("created"))
    bare = Event("o", "p", "s", MORTY, Identity(), StackChange("deleted"))
    assert slack_text(by_name)[0].endswith("Org/p/s stack created.")
    assert slack_text(bare)[0].endswith("o/p/s stack deleted.")


def card(data: bytes) -> Any:
    msg = json.loads(data)
    assert msg["type"] == "message"
    (attachment,) = msg["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    content = attachment["content"]
    assert content["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert content["type"] == "AdaptiveCard"
    assert content["version"] == "1.4"
    return content


def test_teams_refresh_succeeded() -> None:
    content = card(render_event(TEAMS, REFRESH))
    title, facts = content["body"]
    assert title["type"] == "TextBlock"
    assert title["text"] == "crazy-adventures/website/website-prod refresh succeeded."
    assert title["color"] == "Good"
    assert facts["type"] == "FactSet"
    assert {f["title"]: f["value"] for f in facts["facts"]} == {
        "Stack": "crazy-adventures/website/website-prod",
        "Operation": "refresh",
        "Result": "succeeded",
        "User": "Morty Smith (morty)",
        "Resource changes": "update: 3, delete: 1, update-replace: 2",
    }
    assert content["actions"] == [{"type": "Action.OpenUrl", "title": "View refresh", "url": f"{BASE}/updates/42"}]


def test_teams_failure_and_neutral_colours() -> None:
    assert card(render_event(TEAMS, PREVIEW))["body"][0]["color"] == "Attention"
    deployment = card(render_event(TEAMS, DEPLOYMENT))
    assert deployment["body"][0]["color"] == "Default"
    assert deployment["actions"][0]["url"] == f"{BASE}/deployments/127"
    assert card(render_event(TEAMS, STACK_CREATED))["actions"] == []


def test_ping_each_format() -> None:
    assert json.loads(render_ping(RAW, 1700000000)) == {
        "timestamp": 1700000000,
        "message": PING_MESSAGE,
    }
    assert json.loads(render_ping(SLACK, 1))["text"] == PING_MESSAGE
    content = card(render_ping(TEAMS, 1))
    assert content["body"][0]["text"] == PING_MESSAGE


def test_output_is_compact_utf8() -> None:
    data = render_ping(RAW, 5)
    assert data == '{"timestamp":5,"message":"🍹 Just a friendly ping from Pulumi 🍹"}'.encode()
    assert b"\\u" not in data
    body = render_event(RAW, STACK_CREATED)
    assert b": " not in body and b", " not in body and b"\n" not in body


# Names that would ping, link or format if a chat client read them as markup.
HOSTILE_NAME = "<!channel> & <@U123> *Pwned* _x_ [log in](https://evil.example) <https://evil.example|here>"
HOSTILE_USER = Identity(name=HOSTILE_NAME, github_login="eve")
SLACK_MARKUP = re.compile(r"<([^<>]*)>")


def slack_shows(mrkdwn: str) -> tuple[str, list[tuple[str, str]]]:
    """What Slack displays for mrkdwn text, and the links in it as (url, label): <...> is markup (a link, a
    mention, <!channel>), and &lt; &gt; &amp; are the characters themselves."""
    links = []

    def markup(match: re.Match[str]) -> str:
        url, _, label = match[1].partition("|")
        assert url.startswith("https://"), f"{match[0]} is a mention or command, not a link"
        links.append((html.unescape(url), html.unescape(label)))
        return label

    return html.unescape(SLACK_MARKUP.sub(markup, mrkdwn)), links


def test_slack_shows_hostile_names_as_text_everywhere() -> None:
    stack = Event(
        "o", "p", "s", HOSTILE_USER, Identity(name="<!here>"), UpdateChange(f"{BASE}/u/1", "update", "failed", {})
    )
    text, shown = slack_text(stack)
    assert slack_shows(text) == (":rotating_light: <!here>/p/s update failed.", [])
    displayed, links = slack_shows(shown)
    assert HOSTILE_NAME in displayed
    assert links == [(f"{BASE}/u/1", "View update")]


def test_slack_link_url_cannot_set_its_label() -> None:
    sneaky = f"{BASE}/updates/1|Your session expired: sign in again>"
    _, shown = slack_text(event(UpdateChange(sneaky, "update", "failed", {})))
    _, links = slack_shows(shown)
    assert links == [(f"{BASE}/updates/1%7CYour%20session%20expired:%20sign%20in%20again%3E", "View update")]


def teams_shows(markdown: str) -> tuple[str, str]:
    """What Teams displays for TextBlock or Fact text, and the Markdown it acts on: *, _, [, ] and a list marker
    starting the text, unless backslash-escaped."""
    displayed, markup = [], []
    escaped = False
    for char in markdown:
        if escaped:
            displayed.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            displayed.append(char)
            if char in "*_[]":
                markup.append(char)
    text = "".join(displayed)
    if re.match(r"\s*([-+]|\d+[.)])\s", markdown):
        markup.append("list")
    return text, "".join(markup)


def test_teams_shows_hostile_names_as_text() -> None:
    names = Event(
        "o",
        "p",
        "s",
        Identity(name="- **Pwned** [log in](https://evil.example)\n1. _x_ \\"),
        Identity(name="[acme](https://evil.example)"),
        StackChange("created"),
    )
    content = card(render_event(TEAMS, names))
    title, facts = content["body"]
    assert teams_shows(title["text"]) == ("[acme](https://evil.example)/p/s stack created.", "")
    shown = {f["title"]: teams_shows(f["value"]) for f in facts["facts"]}
    assert shown["User"] == ("- **Pwned** [log in](https://evil.example) 1. _x_ \\", "")
    assert shown["Stack"] == ("[acme](https://evil.example)/p/s", "")


@pytest.mark.parametrize(
    "url", ["javascript:alert(document.cookie)", "file:///etc/passwd", "//evil.example/x", "https://", "data:,hi"]
)
def test_links_that_are_not_web_links_are_left_out_of_chat_messages(url: str) -> None:
    update = event(UpdateChange(url, "update", "failed", {}))
    deployment = event(DeploymentChange(url, 1, "update", "failed"))
    for ev in (update, deployment):
        _, shown = slack_text(ev)
        assert slack_shows(shown)[1] == [] and "Link" not in shown
        assert card(render_event(TEAMS, ev))["actions"] == []
        assert url in json.dumps(raw(ev))
