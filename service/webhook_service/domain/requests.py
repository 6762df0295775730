"""The headers of a delivery request: Pulumi's, and Standard Webhooks' beside them."""

from __future__ import annotations

from webhook_service import __version__
from webhook_service.domain.signing import signature, standard_signature

USER_AGENT = f"webhook-service/{__version__}"


def delivery_headers(
    delivery_id: str, kind: str, body: bytes, secret: str, timestamp: int, previous_secret: str = ""
) -> dict[str, str]:
    """`timestamp` is this attempt's time in unix seconds. During a rotation's overlap `previous_secret` is
    the secret it replaced: Pulumi's single signature keeps using it, so receivers that have not switched
    keep working, while `webhook-signature` carries one signature per valid secret, the current one first."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Pulumi-Webhook-ID": delivery_id,
        "Pulumi-Webhook-Kind": kind,
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
    }
    valid = [key for key in (secret, previous_secret) if key]
    if valid:
        headers["Pulumi-Webhook-Signature"] = signature(valid[-1], body)
        headers["webhook-signature"] = " ".join(standard_signature(key, delivery_id, timestamp, body) for key in valid)
    return headers
