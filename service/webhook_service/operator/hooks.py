"""`webhooks hooks list|get|create|update|delete|ping`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from google.protobuf.empty_pb2 import Empty

from webhook_service.operator import show
from webhook_service.operator.choices import FILTERS, FORMATS, GROUPS, ORDERINGS
from webhook_service.operator.command import (
    PARENT_HELP,
    WEBHOOK_HELP,
    UsageError,
    add_page_flags,
    command,
    pages,
    read_text,
)
from webhook_service.operator.deliveries import show_delivery
from webhooks_client import (
    Client,
    CreateWebhookRequest,
    DeleteWebhookRequest,
    FieldMask,
    GetWebhookRequest,
    ListWebhooksRequest,
    ListWebhooksResponse,
    PingWebhookRequest,
    UpdateWebhookRequest,
    Webhook,
    WebhookDelivery,
)


def register(commands: Any) -> None:
    hooks = commands.add_parser("hooks", help="list, show, create, change, delete and ping webhooks")
    verbs = hooks.add_subparsers(dest="hooks_command", required=True, metavar="COMMAND")

    listing = command(verbs, "list", "list the webhooks of an organization or of a stack, oldest first", _list, _table)
    listing.add_argument(
        "parent", metavar="PARENT", help=PARENT_HELP + " (a stack's list leaves out its organization's)"
    )
    add_page_flags(listing)

    get = command(verbs, "get", "show one webhook, its health among the rest", _get, show_webhook)
    get.add_argument("name", metavar="WEBHOOK", help=WEBHOOK_HELP)

    create = command(
        verbs,
        "create",
        "create a webhook under an organization or a stack",
        _create,
        show_webhook,
        epilog="Without --filters or --groups the webhook receives every event.",
    )
    create.add_argument("parent", metavar="PARENT", help=PARENT_HELP)
    create.add_argument(
        "--id",
        dest="webhook_id",
        default="",
        metavar="ID",
        help="the webhook's ID, 1-32 characters of [a-zA-Z0-9._-]; made up by the service when absent",
    )
    _add_webhook_flags(create, creating=True)
    create.add_argument(
        "--request-id",
        default="",
        metavar="ID",
        help="idempotency key: a repeat returns the first result and creates nothing (made up when absent)",
    )

    update = command(
        verbs,
        "update",
        "change the fields given, leaving the rest as they are",
        _update,
        show_webhook,
        epilog="--secret '' removes the secret; --filters '' and --groups '' empty those lists.",
    )
    update.add_argument("name", metavar="WEBHOOK", help=WEBHOOK_HELP)
    _add_webhook_flags(update, creating=False)
    update.add_argument(
        "--etag",
        default="",
        metavar="ETAG",
        help="change it only if it is still at this etag (ABORTED otherwise): no overwriting someone else's edit",
    )

    delete = command(verbs, "delete", "delete a webhook and its delivery log", _delete, _deleted)
    delete.add_argument("name", metavar="WEBHOOK", help=WEBHOOK_HELP)

    ping = command(
        verbs,
        "ping",
        "send the ping payload now, and show the delivery with its one attempt",
        _ping,
        show_delivery,
        epilog="A receiver that fails makes a failed delivery, not an error.",
    )
    ping.add_argument("name", metavar="WEBHOOK", help=WEBHOOK_HELP)


def _add_webhook_flags(parser: argparse.ArgumentParser, creating: bool) -> None:
    """Every field a caller sets; on update only those given change."""
    required = " (required)" if creating else ""
    parser.add_argument("--display-name", required=creating, metavar="TEXT", help=f"shown to people{required}")
    parser.add_argument(
        "--url", required=creating, metavar="URL", help=f"the http or https URL deliveries are posted to{required}"
    )
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument(
        "--secret",
        metavar="TEXT",
        help="the key that signs deliveries (HMAC-SHA256); other users may see it in the process list, "
        "so prefer --secret-file",
    )
    secret.add_argument("--secret-file", type=Path, metavar="FILE", help="a file holding the secret")
    parser.add_argument("--format", type=FORMATS.parse, metavar="FORMAT", help=f"{FORMATS.names} (default raw)")
    parser.add_argument(
        "--filters",
        type=FILTERS.parse_list,
        metavar="LIST",
        help=f"events to receive, comma-separated: {FILTERS.names}",
    )
    parser.add_argument(
        "--groups",
        type=GROUPS.parse_list,
        metavar="LIST",
        help=f"sets of filters, comma-separated: {GROUPS.names} (each stands for all its filters)",
    )
    parser.add_argument(
        "--active",
        action=argparse.BooleanOptionalAction,
        help="whether events are delivered (a new webhook is active; --active also clears a disabled reason)",
    )
    parser.add_argument(
        "--ordering",
        type=ORDERINGS.parse,
        metavar="ORDERING",
        help=f"{ORDERINGS.names}: per-stack sends a stack's deliveries one at a time, in publish order "
        "(default unordered)",
    )


def _webhook_from(args: argparse.Namespace) -> tuple[Webhook, list[str]]:
    """The webhook the flags describe, and the paths of the fields they set."""
    hook = Webhook()
    paths = []
    if args.display_name is not None:
        hook.display_name = args.display_name
        paths.append("display_name")
    if args.url is not None:
        hook.payload_url = args.url
        paths.append("payload_url")
    secret = args.secret
    if args.secret_file is not None:
        # An editor's final newline is not part of the secret.
        secret = read_text(args.secret_file, "--secret-file").rstrip("\r\n")
    if secret is not None:
        hook.secret = secret
        paths.append("secret")
    if args.format is not None:
        hook.format = args.format
        paths.append("format")
    if args.filters is not None:
        hook.filters.extend(args.filters)
        paths.append("filters")
    if args.groups is not None:
        hook.groups.extend(args.groups)
        paths.append("groups")
    if args.active is not None:
        hook.active = args.active
        paths.append("active")
    if args.ordering is not None:
        hook.ordering = args.ordering
        paths.append("ordering")
    return hook, paths


def _list(client: Client, args: argparse.Namespace) -> ListWebhooksResponse:
    request = ListWebhooksRequest(parent=args.parent, page_size=args.page_size or 0)
    response: ListWebhooksResponse = pages(client.webhooks.ListWebhooks, request, "webhooks", args)
    return response


def _get(client: Client, args: argparse.Namespace) -> Webhook:
    return client.webhooks.GetWebhook(GetWebhookRequest(name=args.name))


def _create(client: Client, args: argparse.Namespace) -> Webhook:
    hook, _ = _webhook_from(args)
    request = CreateWebhookRequest(
        parent=args.parent, webhook_id=args.webhook_id, webhook=hook, request_id=args.request_id
    )
    return client.webhooks.CreateWebhook(request)


def _update(client: Client, args: argparse.Namespace) -> Webhook:
    hook, paths = _webhook_from(args)
    if not paths:
        raise UsageError(
            "nothing to change: give at least one of --display-name, --url, --secret, --secret-file, --format, "
            "--filters, --groups, --active, --no-active or --ordering"
        )
    hook.name = args.name
    hook.etag = args.etag
    return client.webhooks.UpdateWebhook(UpdateWebhookRequest(webhook=hook, update_mask=FieldMask(paths=paths)))


def _delete(client: Client, args: argparse.Namespace) -> Empty:
    return client.webhooks.DeleteWebhook(DeleteWebhookRequest(name=args.name))


def _ping(client: Client, args: argparse.Namespace) -> WebhookDelivery:
    return client.webhooks.PingWebhook(PingWebhookRequest(name=args.name))


def _table(response: ListWebhooksResponse, args: argparse.Namespace) -> None:
    rows = [
        (
            hook.name,
            _active(hook),
            FORMATS.label(hook.format),
            ORDERINGS.label(hook.ordering),
            hook.payload_url,
            show.when(hook, "last_success_time"),
            show.when(hook, "failing_since"),
            str(hook.pending_deliveries),
            f"{hook.succeeded_attempts_24h}/{hook.failed_attempts_24h}",
            hook.display_name,
        )
        for hook in response.webhooks
    ]
    headers = (
        "NAME",
        "ACTIVE",
        "FORMAT",
        "ORDERING",
        "URL",
        "LAST SUCCESS",
        "FAILING SINCE",
        "PENDING",
        "24H OK/FAILED",
        "DISPLAY NAME",
    )
    show.listing(headers, rows, response, f"webhooks under {args.parent}")


def _active(hook: Webhook) -> str:
    """A webhook the service deactivated itself says so, unlike one a person turned off."""
    if hook.disabled_reason and not hook.active:
        return "disabled"
    return show.yes(hook.active)


def show_webhook(hook: Webhook, args: argparse.Namespace) -> None:
    secret = "set" if hook.has_secret else "none"
    if hook.HasField("previous_secret_expire_time"):
        secret += f"; the one it replaced signs too until {show.moment(hook, 'previous_secret_expire_time')}"
    active = show.yes(hook.active) + (f" (disabled: {hook.disabled_reason})" if hook.disabled_reason else "")
    show.fields(
        [
            ("name", hook.name),
            ("display name", hook.display_name),
            ("url", hook.payload_url),
            ("active", active),
            ("format", FORMATS.label(hook.format)),
            ("events", _events(hook)),
            ("ordering", ORDERINGS.label(hook.ordering)),
            ("secret", secret),
            ("last success", show.moment(hook, "last_success_time")),
            ("failing since", show.moment(hook, "failing_since")),
            ("pending", show.counted(hook.pending_deliveries, "delivery", "deliveries")),
            (
                "last 24 hours",
                f"{show.counted(hook.succeeded_attempts_24h, 'attempt', 'attempts')} succeeded, "
                f"{hook.failed_attempts_24h} failed",
            ),
            ("created", show.moment(hook, "create_time")),
            ("updated", show.moment(hook, "update_time")),
            ("etag", hook.etag),
        ]
    )


def _events(hook: Webhook) -> str:
    if not hook.filters and not hook.groups:
        return "every event"
    parts = []
    if hook.filters:
        parts.append("filters " + ", ".join(FILTERS.label(number) for number in hook.filters))
    if hook.groups:
        parts.append("groups " + ", ".join(GROUPS.label(number) for number in hook.groups))
    return "; ".join(parts)


def _deleted(response: Empty, args: argparse.Namespace) -> None:
    print(f"deleted {args.name}")
