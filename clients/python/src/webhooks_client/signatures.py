"""Checking a delivery's `Pulumi-Webhook-Signature` header on the receiving side."""

from __future__ import annotations

import hashlib
import hmac


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """Whether `header` is the hex HMAC-SHA256 of the exact `body` bytes under `secret`."""
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.strip().lower())
