"""A small hand-written client for the webhook delivery service, over the generated stubs.

from webhooks_client import Client

with Client("127.0.0.1:50051") as client:
    hooks = client.webhooks.ListWebhooks(ListWebhooksRequest(parent="organizations/acme"))
"""

from webhooks_client.client import Client
from webhooks_client.errors import field_violations
from webhooks_client.signatures import verify_signature

__all__ = ["Client", "field_violations", "verify_signature"]
