"""Slack incoming-webhook messages: Block Kit, with `text` as the notification fallback."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from webhook_service.domain.model import Event
from webhook_service.domain.payloads.summary import Outcome, summarize

EMOJI = {
    # The drink and the siren are what Pulumi's own Slack relay example uses.
    Outcome.SUCCESS: ":tropical_drink:",
    Outcome.FAILURE: ":rotating_light:",
    Outcome.NEUTRAL: ":information_source:",
}


# What a URL may hold unencoded: its reserved characters, and % so that what was encoded stays so.
URL_CHARACTERS = ":/?#[]@!$&'()*+,;=%~"


def escape(text: str) -> str:
    # Slack reads &, < and > as control characters in mrkdwn (<!channel> pings everyone); stack and user names
    # are user input.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    """A mrkdwn link. The first | in <url|label> ends the URL, so a | (or a space, or anything else a URL
    may not hold) is percent-encoded, as it would be in a valid URL: it cannot pass for the label."""
    return f"<{escape(quote(url, safe=URL_CHARACTERS))}|{escape(label)}>"


def slack_payload(event: Event) -> dict[str, Any]:
    summary = summarize(event)
    emoji = EMOJI[summary.outcome]
    fields: list[dict[str, Any]] = [
        {"type": "mrkdwn", "text": f"*{name}*\n{escape(value)}"} for name, value in summary.facts
    ]
    if summary.link:
        # A mrkdwn link rather than a button: link buttons need an interactive Slack app.
        fields.append({"type": "mrkdwn", "text": f"*Link*\n{link(summary.link, summary.link_label)}"})
    return {
        # The notification text is mrkdwn too.
        "text": f"{emoji} {escape(summary.title)}",
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"{emoji} *{escape(summary.title)}*",
                },
                "fields": fields,
            }
        ],
    }
