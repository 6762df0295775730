"""Stalling a server's store for real: another client holds the database's write lock, and a write the
server runs waits for it on the server's only query thread, as behind a long transaction."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import grpc
import psycopg2

from tests.helpers import WS
from tests.support.running import RunningServer
from tests.support.waiting import eventually
from webhooks.v1 import webhook_pb2
from webhooks_client import Client


@contextlib.contextmanager
def write_lock(url: str) -> Iterator[None]:
    """Writers of the webhook and token tables wait until the block ends; readers still read."""
    if url.startswith("sqlite:///"):
        lite = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            lite.execute("BEGIN IMMEDIATE")
            yield
            lite.execute("ROLLBACK")
        finally:
            lite.close()
        return
    postgres = psycopg2.connect(url)
    try:
        with postgres.cursor() as cursor:
            cursor.execute("LOCK TABLE webhook, api_token IN EXCLUSIVE MODE")
        yield
        postgres.rollback()
    finally:
        postgres.close()


def connect(server: RunningServer) -> Client:
    """An admin client, or a client with no token for a server running without authentication."""
    return Client(server.target, token=None if server.settings.admin_token_file is None else server.admin_token)


@contextlib.contextmanager
def stalled_store(server: RunningServer, organization: str) -> Iterator[grpc.Future]:
    """Yields once a CreateWebhook under `organization` holds the server's query thread (the server must
    run with database_pool_size=1); the create completes after the block. Stalled is when a read cannot
    finish: SQLite gives up on the lock after 10 s, so the block must end sooner."""
    with connect(server) as admin:
        with write_lock(server.settings.database):
            blocked = admin.webhooks.CreateWebhook.future(
                WS.CreateWebhookRequest(
                    parent=f"organizations/{organization}",
                    webhook=webhook_pb2.Webhook(display_name="blocked", payload_url="https://example.com/blocked"),
                ),
                timeout=60,
            )
            # Each look waits up to half a second for its answer already: no pause between them.
            eventually(lambda: _reads_hang(admin, organization), 8, "the store stalls", every=0)
            yield blocked
        blocked.result()


def _reads_hang(admin: Client, organization: str) -> bool:
    try:
        admin.webhooks.ListWebhooks(WS.ListWebhooksRequest(parent=f"organizations/{organization}"), timeout=0.5)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return True
        raise
    return False
