"""Microsoft Teams messages: one Adaptive Card, as Teams workflow (Power Automate) URLs accept."""

from __future__ import annotations

from typing import Any

from webhook_service.domain.model import Event
from webhook_service.domain.payloads.summary import Outcome, summarize

COLOR = {
    Outcome.SUCCESS: "Good",
    Outcome.FAILURE: "Attention",
    Outcome.NEUTRAL: "Default",
}


def adaptive_card_message(body: list[dict[str, Any]], actions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    # 1.4 is the newest version every Teams client renders.
                    "version": "1.4",
                    "body": body,
                    "actions": actions,
                },
            }
        ],
    }


def teams_payload(event: Event) -> dict[str, Any]:
    summary = summarize(event)
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": summary.title,
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            "color": COLOR[summary.outcome],
        },
        {
            "type": "FactSet",
            "facts": [{"title": name, "value": value} for name, value in summary.facts],
        },
    ]
    actions: list[dict[str, Any]] = []
    if summary.link:
        actions.append({"type": "Action.OpenUrl", "title": summary.link_label, "url": summary.link})
    return adaptive_card_message(body, actions)
