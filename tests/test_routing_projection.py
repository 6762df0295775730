"""Publishing routes among its stack's webhooks as made from their rows once, not again for every event: a row
read again as it was gives the Webhook made before, and any change to the row, or the end of a rotated secret's
overlap, gives a new one."""

from __future__ import annotations

import time
from collections.abc import Callable

from google.protobuf import field_mask_pb2

from tests.helpers import WS, make_webhook
from tests.support.running import RunningServer
from tests.test_rotation import rotate
from webhook_service.domain.model import Webhook
from webhook_service.domain.names import Parent
from webhook_service.store import webhooks
from webhooks.v1 import webhook_pb2

Start = Callable[..., RunningServer]


def test_a_publish_reuses_the_webhooks_it_made_until_their_rows_change(start_server: Start) -> None:
    # Erasing replaced secrets is kept away, so the row stays as it is when the overlap ends.
    server = start_server(erase_interval=3600.0)
    client = server.client()
    stack = Parent("projection", "website", "prod")
    store = server.server.store
    assert store is not None

    def routed() -> dict[str, Webhook]:
        found = server.run(store.run(webhooks.active_for_stack, stack))
        return {webhook.webhook_id: webhook for _, webhook in found}

    made = make_webhook(client, "organizations/projection", "https://example.com/org", webhook_id="org", secret="one")
    make_webhook(client, str(stack), "https://example.com/stack", webhook_id="stack")
    first = routed()
    again = routed()
    assert sorted(again) == ["org", "stack"]
    assert again["org"] is first["org"] and again["stack"] is first["stack"]

    client.webhooks.UpdateWebhook(
        WS.UpdateWebhookRequest(
            webhook=webhook_pb2.Webhook(name=made.name, display_name="Renamed"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    )
    renamed = routed()
    assert renamed["org"].display_name == "Renamed"
    assert renamed["stack"] is first["stack"]

    overlap = 2.0
    rotate(client, made.name, secret="two", overlap=overlap)
    ends = time.time() + overlap
    during = routed()["org"]
    assert (during.secret, during.previous_secret) == ("two", "one")
    assert routed()["org"] is during
    time.sleep(max(0.0, ends - time.time()) + 0.2)
    after = routed()["org"]
    assert (after.secret, after.previous_secret) == ("two", "")

    client.webhooks.UpdateWebhook(
        WS.UpdateWebhookRequest(
            webhook=webhook_pb2.Webhook(name=made.name, active=False),
            update_mask=field_mask_pb2.FieldMask(paths=["active"]),
        )
    )
    assert sorted(routed()) == ["stack"]

    # A webhook made anew under a deleted one's name is a webhook of its own, even where SQLite reuses the row ID.
    stack_hook = f"{stack}/webhooks/stack"
    client.webhooks.DeleteWebhook(WS.DeleteWebhookRequest(name=stack_hook))
    make_webhook(client, str(stack), "https://example.com/remade", webhook_id="stack")
    remade = routed()["stack"]
    assert remade.payload_url == "https://example.com/remade"
    assert remade.create_time != first["stack"].create_time
