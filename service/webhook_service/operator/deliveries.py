"""`webhooks deliveries list|get|redeliver|recover`."""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from webhook_service.domain.durations import parse_duration
from webhook_service.operator import show
from webhook_service.operator.choices import STATES, VIEWS
from webhook_service.operator.command import DELIVERY_HELP, PARENT_HELP, WEBHOOK_HELP, add_page_flags, command, pages
from webhooks_client import (
    Client,
    GetWebhookDeliveryRequest,
    ListWebhookDeliveriesRequest,
    ListWebhookDeliveriesResponse,
    RecoverWebhookDeliveriesRequest,
    RecoverWebhookDeliveriesResponse,
    RedeliverWebhookDeliveryRequest,
    WebhookDelivery,
)


def register(commands: Any) -> None:
    deliveries = commands.add_parser("deliveries", help="see what was sent to a webhook, and send it again")
    verbs = deliveries.add_subparsers(dest="deliveries_command", required=True, metavar="COMMAND")

    listing = command(
        verbs, "list", "list a webhook's deliveries, newest first, with each one's latest outcome", _list, _table
    )
    listing.add_argument("parent", metavar="WEBHOOK", help=WEBHOOK_HELP)
    _add_view_flag(listing, "full adds payloads and attempts to JSON")
    add_page_flags(listing)

    get = command(verbs, "get", "show one delivery with every attempt and its payload", _get, show_delivery)
    get.add_argument("name", metavar="DELIVERY", help=DELIVERY_HELP)
    _add_view_flag(get, "basic leaves out payload and attempts")

    redeliver = command(
        verbs,
        "redeliver",
        "send a delivery's payload again now, under the same delivery ID, and show the new attempt",
        _redeliver,
        show_delivery,
    )
    redeliver.add_argument("name", metavar="DELIVERY", help=DELIVERY_HELP)

    recover = command(
        verbs,
        "recover",
        "queue again, with a fresh retry schedule, the failed deliveries created since a time (admin only)",
        _recover,
        _recovered,
        epilog="Under an organization or a stack it covers the active webhooks; naming an inactive webhook is "
        "FAILED_PRECONDITION.",
    )
    recover.add_argument(
        "parent", metavar="PARENT", help=f"a webhook's name, or {PARENT_HELP} (an organization's stacks included)"
    )
    recover.add_argument(
        "--since",
        required=True,
        type=_since,
        metavar="TIME",
        help="deliveries created at or after this time: 2024-05-01T00:00:00Z, or a duration ago such as 2h (required)",
    )
    recover.add_argument(
        "--request-id",
        default="",
        metavar="ID",
        help="idempotency key: a repeat within 24 hours answers the first count and queues nothing new",
    )


def _add_view_flag(parser: argparse.ArgumentParser, meaning: str) -> None:
    parser.add_argument("--view", type=VIEWS.parse, default=0, metavar="VIEW", help=f"{VIEWS.names}: {meaning}")


def _since(text: str) -> Timestamp:
    stamp = Timestamp()
    try:
        seconds = parse_duration(text)
    except ValueError:
        try:
            stamp.FromJsonString(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is neither a time such as 2024-05-01T00:00:00Z nor a duration such as 2h"
            ) from None
        return stamp
    stamp.FromDatetime(datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds))
    return stamp


def _list(client: Client, args: argparse.Namespace) -> ListWebhookDeliveriesResponse:
    request = ListWebhookDeliveriesRequest(parent=args.parent, page_size=args.page_size or 0, view=args.view)
    response: ListWebhookDeliveriesResponse = pages(client.webhooks.ListWebhookDeliveries, request, "deliveries", args)
    return response


def _get(client: Client, args: argparse.Namespace) -> WebhookDelivery:
    return client.webhooks.GetWebhookDelivery(GetWebhookDeliveryRequest(name=args.name, view=args.view))


def _redeliver(client: Client, args: argparse.Namespace) -> WebhookDelivery:
    return client.webhooks.RedeliverWebhookDelivery(RedeliverWebhookDeliveryRequest(name=args.name))


def _recover(client: Client, args: argparse.Namespace) -> RecoverWebhookDeliveriesResponse:
    request = RecoverWebhookDeliveriesRequest(parent=args.parent, since=args.since, request_id=args.request_id)
    return client.webhooks.RecoverWebhookDeliveries(request)


def _table(response: ListWebhookDeliveriesResponse, args: argparse.Namespace) -> None:
    rows = [
        (
            delivery.name,
            delivery.kind,
            STATES.label(delivery.state),
            str(delivery.attempt_count),
            show.code(delivery.response_code),
            show.took(delivery.duration),
            show.when(delivery, "create_time"),
            show.when(delivery, "next_attempt_time"),
            show.shorten(delivery.error, 80) or show.NONE,
        )
        for delivery in response.deliveries
    ]
    headers = ("NAME", "KIND", "STATE", "ATTEMPTS", "CODE", "TOOK", "CREATED", "NEXT ATTEMPT", "ERROR")
    show.listing(headers, rows, response, f"deliveries of {args.parent}")


def show_delivery(delivery: WebhookDelivery, args: argparse.Namespace) -> None:
    pairs = [
        ("name", delivery.name),
        ("kind", delivery.kind),
        ("event", delivery.event_id or show.NONE),
        ("state", STATES.label(delivery.state)),
        ("attempts", str(delivery.attempt_count)),
        ("created", show.moment(delivery, "create_time")),
    ]
    if delivery.HasField("next_attempt_time"):
        pairs.append(("next attempt", show.moment(delivery, "next_attempt_time")))
    if delivery.request_url:
        pairs.append(("url", delivery.request_url))
    if delivery.attempt_count:
        pairs.append(("response", f"{show.code(delivery.response_code)} in {show.took(delivery.duration)}"))
    if delivery.error:
        pairs.append(("error", delivery.error))
    if delivery.response_body:
        pairs.append(("response body", show.shorten(delivery.response_body)))
    show.fields(pairs)
    if delivery.attempts:
        print()
        show.table(
            ("ATTEMPT", "STARTED", "CODE", "TOOK", "ERROR"),
            [
                (
                    str(attempt.attempt_number),
                    show.when(attempt, "start_time"),
                    show.code(attempt.response_code),
                    show.took(attempt.duration),
                    show.shorten(attempt.error, 80) or show.NONE,
                )
                for attempt in delivery.attempts
            ],
        )
    if delivery.payload:
        print()
        print("payload:")
        print(show.lines(_pretty(delivery.payload)))


def _pretty(payload: str) -> str:
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        return payload


def _recovered(response: RecoverWebhookDeliveriesResponse, args: argparse.Namespace) -> None:
    print(f"queued {show.counted(response.recovered_count, 'failed delivery', 'failed deliveries')} again")
