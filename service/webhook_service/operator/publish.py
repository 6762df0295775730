"""`webhooks publish`: an event, as an internal service would send it; with --dry-run, which webhooks it would
reach and why not (TestEventMatch)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from webhook_service.operator import show
from webhook_service.operator.choices import REASONS
from webhook_service.operator.command import UsageError, command, read_text
from webhooks_client import (
    Client,
    Event,
    PublishEventRequest,
    PublishEventResponse,
    TestEventMatchRequest,
    TestEventMatchResponse,
)

EPILOG = (
    "The event is webhooks.v1.Event in proto JSON: `stack` (organizations/ORG/projects/PROJECT/stacks/STACK), "
    "optional `user` and `organization`, and one of `stackEvent`, `updateEvent` or `deploymentEvent`; field "
    "names in camelCase or as the .proto spells them, enum values by name, such as "
    '{"stack": "organizations/acme/projects/website/stacks/prod", '
    '"updateEvent": {"kind": "UPDATE_KIND_UPDATE", "result": "UPDATE_RESULT_SUCCEEDED"}}.'
)


def register(commands: Any) -> None:
    publish = command(
        commands,
        "publish",
        "publish an event from a JSON file or standard input, and show the deliveries it queued; or, with "
        "--dry-run, which webhooks it would reach",
        _publish,
        _published,
        epilog=EPILOG,
    )
    publish.add_argument("file", nargs="?", default="-", metavar="FILE", help="the event; - or none: standard input")
    publish.add_argument(
        "--request-id",
        default="",
        metavar="ID",
        help="idempotency key: a repeat within 24 hours answers the first result and queues nothing new "
        "(made up when absent)",
    )
    publish.add_argument(
        "--dry-run",
        action="store_true",
        help="store and send nothing: show every webhook of the event's organization and stacks, whether it "
        "would receive the event, and why not (readers may too)",
    )


def _publish(client: Client, args: argparse.Namespace) -> PublishEventResponse | TestEventMatchResponse:
    if args.dry_run:
        if args.request_id:
            raise UsageError("--request-id has no use with --dry-run, which stores nothing")
        return client.events.TestEventMatch(TestEventMatchRequest(event=_event(args.file)))
    event = _event(args.file)
    return client.events.PublishEvent(PublishEventRequest(event=event, request_id=args.request_id))


def _event(file: str) -> Event:
    if file == "-":
        if sys.stdin.isatty():
            raise UsageError("give the event as FILE, or on standard input through a pipe")
        where, text = "standard input", sys.stdin.read()
    else:
        where, text = file, read_text(Path(file))
    try:
        return json_format.Parse(text, Event())
    except json_format.ParseError as error:
        raise UsageError(f"{where} is not a webhooks.v1.Event in proto JSON: {error}") from None


def _published(response: PublishEventResponse | TestEventMatchResponse, args: argparse.Namespace) -> None:
    if isinstance(response, TestEventMatchResponse):
        _matched(response)
        return
    queued = show.counted(len(response.deliveries), "delivery", "deliveries")
    print(f"published event {response.event_id}: {queued} queued")
    for name in response.deliveries:
        print(name)


def _matched(response: TestEventMatchResponse) -> None:
    count = sum(match.matched for match in response.matches)
    webhooks = show.counted(len(response.matches), "webhook", "webhooks")
    print(f"dry run, nothing stored or sent: {count} of {webhooks} would receive the event")
    if response.matches:
        show.table(
            ("WEBHOOK", "MATCHED", "REASON", "DETAIL"),
            [
                (match.webhook, show.yes(match.matched), REASONS.label(match.reason), match.detail)
                for match in response.matches
            ],
        )
    if response.other_stacks_truncated:
        print("other stacks have more webhooks than the 1000 listed", file=sys.stderr)
