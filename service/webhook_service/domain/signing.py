"""Pulumi's delivery signature: lower-case hex HMAC-SHA256 of the exact body bytes."""

from __future__ import annotations

import hashlib
import hmac


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
