"""Slack incoming-webhook messages: Block Kit, with `text` as the notification fallback."""

from __future__ import annotations

from typing import Any

from webhook_service.domain.model import Event
from webhook_service.domain.payloads.summary import Outcome, summarize

EMOJI = {
    # The drink and the siren are what Pulumi's own Slack relay example uses.
    Outcome.SUCCESS: ":tropical_drink:",
    Outcome.FAILURE: ":rotating_light:",
    Outcome.NEUTRAL: ":information_source:",
}


def escape(text: str) -> str:
    # Slack reads &, < and > as control characters in mrkdwn; stack and user names are user input.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(event: Event) -> dict[str, Any]:
    summary = summarize(event)
    emoji = EMOJI[summary.outcome]
    fields: list[dict[str, Any]] = [
        {"type": "mrkdwn", "text": f"*{name}*\n{escape(value)}"} for name, value in summary.facts
    ]
    if summary.link:
        # A mrkdwn link rather than a button: link buttons need an interactive Slack app.
        link = f"<{escape(summary.link)}|{escape(summary.link_label)}>"
        fields.append({"type": "mrkdwn", "text": f"*Link*\n{link}"})
    return {
        "text": f"{emoji} {summary.title}",
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
