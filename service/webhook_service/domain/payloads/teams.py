"""Microsoft Teams messages: one Adaptive Card, as Teams workflow (Power Automate) URLs accept."""

from __future__ import annotations

import re
from typing import Any

from webhook_service.domain.model import Event
from webhook_service.domain.payloads.summary import Outcome, summarize

COLOR = {
    Outcome.SUCCESS: "Good",
    Outcome.FAILURE: "Attention",
    Outcome.NEUTRAL: "Default",
}


# TextBlock and Fact text is Markdown: **bold**, _italic_, [label](url), and a list where a line starts with a
# marker. Stack and user names are user input, so they must not be able to make a link or change the formatting.
_MARKDOWN = re.compile(r"[\\*_\[\]<>]")
_BULLET = re.compile(r"^(\s*)([-+])")
_NUMBERED = re.compile(r"^(\s*\d+)([.)])")


def escape(text: str) -> str:
    """`text` as Teams should show it, Markdown backslash-escaped, on one line."""
    text = _MARKDOWN.sub(r"\\\g<0>", " ".join(text.splitlines()))
    return _NUMBERED.sub(r"\1\\\2", _BULLET.sub(r"\1\\\2", text))


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
            "text": escape(summary.title),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            "color": COLOR[summary.outcome],
        },
        {
            "type": "FactSet",
            "facts": [{"title": name, "value": escape(value)} for name, value in summary.facts],
        },
    ]
    actions: list[dict[str, Any]] = []
    if summary.link:
        actions.append({"type": "Action.OpenUrl", "title": summary.link_label, "url": summary.link})
    return adaptive_card_message(body, actions)
