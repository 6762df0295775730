"""An application over a fresh store, without any front door: for tests of the rules themselves."""

from __future__ import annotations

from cryptography.fernet import Fernet

from tests.support.running import LOOPBACK
from webhook_service.app import Application
from webhook_service.dispatch.sender import Sender
from webhook_service.metrics import Metrics
from webhook_service.store.database import Executor, open_database
from webhook_service.store.secrets import SecretBox


def build_application(database: str) -> Application:
    """No authentication (the tests hand the caller in), no rate limit; nothing is dispatched."""
    return Application(
        Executor(open_database(database), 1, SecretBox(Fernet.generate_key())),
        Sender(5.0, LOOPBACK),
        authenticator=None,
        rate_limit=0,
        max_calls=64,
        first_delay=0.0,
        delivered=lambda: None,
        metrics=Metrics(),
    )
