"""The headers of a delivery request, as Pulumi sends them."""

from __future__ import annotations

from webhook_service import __version__
from webhook_service.domain.signing import signature

USER_AGENT = f"webhook-service/{__version__}"


def delivery_headers(delivery_id: str, kind: str, body: bytes, secret: str) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Pulumi-Webhook-ID": delivery_id,
        "Pulumi-Webhook-Kind": kind,
    }
    if secret:
        headers["Pulumi-Webhook-Signature"] = signature(secret, body)
    return headers
