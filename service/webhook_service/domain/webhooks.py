"""Rules a webhook must satisfy, and how a field-mask update changes one."""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from ipaddress import ip_address
from urllib.parse import urlsplit

from webhook_service.domain.errors import Aborted, InvalidArgument, Reason, Violations
from webhook_service.domain.filters import ORGANIZATION_ONLY
from webhook_service.domain.limits import MAX_FILTER_ENTRIES
from webhook_service.domain.model import Webhook, WebhookFields
from webhook_service.domain.network import BLOCKED_HINT, Network, blocked_range, literal_address

LOCALHOST = ip_address("127.0.0.1")
MAX_DISPLAY_NAME = 256
MAX_PAYLOAD_URL = 2048
MAX_SECRET = 512
MAX_ECHOED = 64

UPDATABLE_FIELDS = ("display_name", "payload_url", "secret", "active", "format", "filters", "groups", "ordering")
OUTPUT_ONLY_FIELDS = (
    "name",
    "has_secret",
    "disabled_reason",
    "create_time",
    "update_time",
    "previous_secret_expire_time",
    "last_success_time",
    "failing_since",
    "pending_deliveries",
    "succeeded_attempts_24h",
    "failed_attempts_24h",
)
# What changes with the secret: the one a rotation replaced and how long it stays.
SECRET_FIELDS = ("secret", "previous_secret", "previous_secret_expire_time")

DEFAULT_OVERLAP = 24 * 3600.0
MAX_OVERLAP = 7 * 86400.0


def new_webhook_id() -> str:
    """A short random hex ID, as Pulumi makes up when none is given."""
    return secrets.token_hex(8)


def new_secret() -> str:
    """A secret of 256 random bits, for a rotation that names none."""
    return secrets.token_urlsafe(32)


def validate_webhook(webhook: Webhook, allowed: Sequence[Network], prefix: str = "webhook") -> Webhook:
    """The webhook with duplicate filters and groups dropped; raises InvalidArgument listing every bad field.

    `allowed` are the networks opened to deliveries despite the request-forgery guard.
    """
    found = Violations()
    if not webhook.display_name.strip():
        found.add(f"{prefix}.display_name", "is required", Reason.FIELD_REQUIRED)
    elif len(webhook.display_name) > MAX_DISPLAY_NAME:
        found.add(f"{prefix}.display_name", f"must be at most {MAX_DISPLAY_NAME} characters", Reason.FIELD_TOO_LARGE)
    found.check(_check_payload_url, webhook.payload_url, f"{prefix}.payload_url", allowed)
    if len(webhook.secret) > MAX_SECRET:
        found.add(f"{prefix}.secret", f"must be at most {MAX_SECRET} characters", Reason.FIELD_TOO_LARGE)
    for field, entries in (("filters", webhook.filters), ("groups", webhook.groups)):
        if len(entries) > MAX_FILTER_ENTRIES:
            found.add(f"{prefix}.{field}", f"must have at most {MAX_FILTER_ENTRIES} entries", Reason.FIELD_TOO_LARGE)
    if webhook.parent.is_stack:
        for index, wanted in enumerate(webhook.filters):
            if wanted in ORGANIZATION_ONLY:
                field = f"{prefix}.filters[{index}]"
                found.add(field, f"{wanted} is for organization webhooks only", Reason.FILTER_NOT_ALLOWED)
    found.raise_any()
    return dataclasses.replace(
        webhook,
        filters=tuple(dict.fromkeys(webhook.filters)),
        groups=tuple(dict.fromkeys(webhook.groups)),
    )


def _check_payload_url(url: str, field: str, allowed: Sequence[Network]) -> None:
    if not url:
        raise InvalidArgument(field, "is required", Reason.FIELD_REQUIRED)
    if len(url) > MAX_PAYLOAD_URL:
        raise InvalidArgument(field, f"must be at most {MAX_PAYLOAD_URL} characters", Reason.FIELD_TOO_LARGE)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a port that is not a number in 0-65535
    except ValueError as error:
        raise InvalidArgument(field, f"is not a valid URL ({error})", Reason.INVALID_URL) from None
    if port == 0:
        raise InvalidArgument(
            field, "must not use port 0, which nothing can be reached on; ports are 1-65535", Reason.INVALID_URL
        )
    if parts.scheme not in ("http", "https"):
        raise InvalidArgument(field, "must be an http or https URL", Reason.INVALID_URL)
    if not parts.hostname:
        raise InvalidArgument(field, "must name a host", Reason.INVALID_URL)
    if any(ch.isspace() for ch in url):
        raise InvalidArgument(field, "must not contain white space", Reason.INVALID_URL)
    # Names are checked when deliveries connect; literal addresses (and localhost, RFC 6761) can be refused now.
    host = parts.hostname
    address = LOCALHOST if host == "localhost" or host.endswith(".localhost") else literal_address(host)
    reason = None if address is None else blocked_range(address, allowed)
    if reason is not None:
        raise InvalidArgument(field, f"{reason}; {BLOCKED_HINT}", Reason.BLOCKED_ADDRESS)


def check_update_mask(paths: Sequence[str], patch: WebhookFields | None = None) -> tuple[str, ...]:
    """The fields an update changes; raises InvalidArgument listing every path that names no updatable field.

    `*` stands for every updatable field but, given the `patch`, not an empty secret: a caller replacing a
    webhook it read back (where the secret never shows) would otherwise delete it without meaning to. Only
    a mask that names `secret` clears it. camelCase paths are taken too, since grpcurl users write JSON
    names everywhere else.
    """
    if list(paths) == ["*"]:
        if patch is not None and not patch.secret:
            return tuple(field for field in UPDATABLE_FIELDS if field != "secret")
        return UPDATABLE_FIELDS
    paths = [re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), path) for path in paths]
    found = Violations()
    for path in paths:
        if path in OUTPUT_ONLY_FIELDS:
            found.add("update_mask", f"{path} is output only and cannot be updated", Reason.INVALID_UPDATE_MASK)
        elif path == "etag":
            found.add("update_mask", "etag is compared, not updated; leave it out", Reason.INVALID_UPDATE_MASK)
        elif path not in UPDATABLE_FIELDS:
            found.add(
                "update_mask",
                f"unknown field {_brief(path)!r}; updatable: {', '.join(UPDATABLE_FIELDS)}",
                Reason.INVALID_UPDATE_MASK,
            )
    found.raise_any()
    return tuple(dict.fromkeys(paths))


def _brief(text: str) -> str:
    """`text` cut short for an error message: an error echoing a huge input whole would not fit in a reply."""
    return text if len(text) <= MAX_ECHOED else text[: MAX_ECHOED - 1] + "…"


def check_etag(current: Webhook, etag: str) -> None:
    """Refuses a change made from an out-of-date read (AIP-154); an empty etag asks for no check."""
    if etag and etag != current.etag:
        raise Aborted(
            f"webhook {current.name} changed since it was read (etag {_brief(etag)!r}, now {current.etag!r}); "
            "read it again and retry"
        )


def reactivates(current: Webhook, changed: Webhook) -> bool:
    """An operator turning a webhook back on has dealt with why the service turned it off."""
    return changed.active and not current.active


def stored_fields(fields: Sequence[str]) -> tuple[str, ...]:
    """The stored fields an update of `fields` may change: setting the secret also settles a rotation's."""
    return tuple(dict.fromkeys([*fields, *(SECRET_FIELDS if "secret" in fields else ())]))


def apply_update(current: Webhook, patch: WebhookFields, fields: Sequence[str], allowed: Sequence[Network]) -> Webhook:
    """`current` with `fields` taken from `patch`, validated as a whole.

    A secret set by an update takes over at once: a rotation under way ends, and the secret it kept is
    dropped. The same secret again changes nothing, so a client that sends the whole webhook on every
    update (Pulumi's provider does) does not cut an overlap short."""
    changed = dataclasses.replace(current, **{field: getattr(patch, field) for field in fields})
    if reactivates(current, changed):
        changed = dataclasses.replace(changed, disabled_reason="")
    if changed.secret != current.secret:
        changed = dataclasses.replace(changed, previous_secret="", previous_secret_expire_time=None)
    return validate_webhook(changed, allowed)


def check_rotation(secret: str, overlap: float | None) -> float:
    """The overlap a rotation asks for, in seconds (DEFAULT_OVERLAP when None); refuses a secret or an
    overlap out of bounds."""
    found = Violations()
    if len(secret) > MAX_SECRET:
        found.add("secret", f"must be at most {MAX_SECRET} characters", Reason.FIELD_TOO_LARGE)
    if overlap is not None and not 0 <= overlap <= MAX_OVERLAP:
        found.add("overlap", f"must be between 0s and {MAX_OVERLAP / 86400:g}d")
    found.raise_any()
    return DEFAULT_OVERLAP if overlap is None else overlap


def rotate(current: Webhook, secret: str, overlap: float, moment: datetime) -> Webhook:
    """`current` signing with `secret` from now on, the secret it replaces kept for `overlap` seconds from
    `moment` (`current.previous_secret` is one still valid, or empty).

    There is one previous secret at most, and it is the one receivers had before a rotation began: a
    rotation during an overlap replaces only the newer secret, so a repeated rotation (a retry whose answer
    was lost) never cuts off the receivers that have not switched yet. Rotating to the current secret keeps
    it and only sets the overlap anew: with 0s, that ends an overlap early.
    """
    kept = current.previous_secret if secret == current.secret else current.previous_secret or current.secret
    if not kept or kept == secret or overlap == 0:
        return dataclasses.replace(current, secret=secret, previous_secret="", previous_secret_expire_time=None)
    return dataclasses.replace(
        current,
        secret=secret,
        previous_secret=kept,
        previous_secret_expire_time=moment + timedelta(seconds=overlap),
    )
