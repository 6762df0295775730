"""Delivery signatures: Pulumi's, and the Standard Webhooks one that binds the delivery ID and the time."""

from __future__ import annotations

import base64
import hmac


def signature(secret: str, body: bytes) -> str:
    """Pulumi's: lower-case hex HMAC-SHA256 of the exact body bytes."""
    return hmac.digest(secret.encode("utf-8"), body, "sha256").hex()


def standard_signature(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks' `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed by the secret's bytes:
    a receiver that checks the timestamp refuses a captured request replayed later."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    # hmac.digest: OpenSSL's one-shot HMAC, without an HMAC object per signature (every delivery signs twice).
    digest = hmac.digest(secret.encode("utf-8"), signed, "sha256")
    return "v1," + base64.b64encode(digest).decode("ascii")
