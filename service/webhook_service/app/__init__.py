"""The application: every operation once, for every front door (gRPC, REST, console).

Each operation owns who may call it, validation, idempotency, limits and its audit line; a door only
translates its wire format into these calls and their results and errors back.
"""

from __future__ import annotations

from collections.abc import Callable

from webhook_service.app.authentication import Authenticator
from webhook_service.app.calls import Calls
from webhook_service.app.deliveries import Deliveries
from webhook_service.app.events import Events
from webhook_service.app.watch import MAILBOX_SIZE, Watchers
from webhook_service.app.webhooks import Webhooks
from webhook_service.dispatch.sender import Sender
from webhook_service.metrics import Metrics
from webhook_service.store.database import Executor


class Application:
    """Made once per process from its store and sender: two applications over two databases can live in
    one process."""

    def __init__(
        self,
        store: Executor,
        sender: Sender,
        *,
        authenticator: Authenticator | None,
        rate_limit: float,
        max_calls: int,
        first_delay: float,
        delivered: Callable[[], None],
        metrics: Metrics,
        watch_mailbox_size: int = MAILBOX_SIZE,
    ) -> None:
        self.store = store
        # The process's series, for every door to count its calls in (api/observe.py).
        self.metrics = metrics
        self.calls = Calls(authenticator, rate_limit, max_calls)
        self.watchers = Watchers(store, watch_mailbox_size)
        self.webhooks = Webhooks(store, sender)
        self.deliveries = Deliveries(store, sender, first_delay, delivered, self.watchers)
        self.events = Events(store, first_delay, delivered, metrics)

    def close(self) -> None:
        """Shutdown begins: every call from now on is refused, and every watch ends at once, so none holds the
        shutdown's grace; the other calls in progress carry on."""
        self.calls.close()
        self.watchers.close()
