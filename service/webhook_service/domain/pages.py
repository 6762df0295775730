"""Page sizes and opaque page tokens for List calls."""

from __future__ import annotations

import base64
import binascii
import json

from webhook_service.domain.errors import InvalidArgument, Reason, Violations

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_CURSOR = 2**63 - 1
# The longest parent (a webhook of a stack, about 380 characters) and the largest cursor encode in
# under 600 characters; refusing longer ones first bounds the decoding work a caller can ask for.
MAX_TOKEN_CHARS = 1024


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(parent: str, cursor: int) -> str:
    """A token for the page after `cursor`, valid only with the same parent."""
    raw = json.dumps({"parent": parent, "cursor": cursor}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, parent: str) -> int | None:
    """The cursor in `token`, or None for the first page. Anything this service did not make is refused
    before it reaches a query: a longer token, a cursor outside a row ID's range, deep nesting."""
    if not token:
        return None
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidArgument("page_token", "is not a token this service returned", Reason.INVALID_PAGE_TOKEN)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        fields = json.loads(raw)
        cursor = fields["cursor"]
        token_parent = fields["parent"]
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        raise InvalidArgument("page_token", "is not a token this service returned", Reason.INVALID_PAGE_TOKEN) from None
    # bool is an int to Python, and a row ID is a positive 64-bit integer on every engine.
    if (
        isinstance(cursor, bool)
        or not isinstance(cursor, int)
        or not 0 < cursor <= MAX_CURSOR
        or not isinstance(token_parent, str)
    ):
        raise InvalidArgument("page_token", "is not a token this service returned", Reason.INVALID_PAGE_TOKEN)
    if token_parent != parent:
        raise InvalidArgument(
            "page_token", "was returned for another parent; start again without it", Reason.INVALID_PAGE_TOKEN
        )
    return cursor


def checked(found: Violations, requested_size: int, token: str, parent: str) -> tuple[int, int | None]:
    """A List request's page size and cursor (None for the first page); what is wrong with them goes to
    `found`, beside the request's other violations."""
    size = found.check(page_size, requested_size) or DEFAULT_PAGE_SIZE
    return size, found.check(decode_token, token, parent)
