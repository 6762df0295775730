"""What every process of the service shares: its settings, and the dispatching process (`webhooks dispatch`,
and each dispatcher process `serve` starts) that the API server builds on. Nothing here loads gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import peewee
import uvloop

from webhook_service.api import ops
from webhook_service.api.http import OFF, HttpListener, Installer
from webhook_service.app.watch import MAILBOX_SIZE
from webhook_service.dispatch.pool import Dispatcher
from webhook_service.dispatch.sender import Sender
from webhook_service.dispatch.settings import DispatchSettings
from webhook_service.domain.agreement import TAKE_OVER, disagreements, refusal, shared_settings
from webhook_service.domain.errors import Unavailable
from webhook_service.metrics import Metrics
from webhook_service.store import schema, webhooks
from webhook_service.store import settings as settings_store
from webhook_service.store.database import Executor, connections_for, describe, explain_failure, open_database
from webhook_service.store.models import bound_to
from webhook_service.store.secrets import SecretBox, create_key, load_key

if TYPE_CHECKING:
    import grpc

log = logging.getLogger(__name__)
# Why a command could not run, under the command's name.
STARTS = logging.getLogger("webhooks")

# How often a process asks the database whether it answers, when nothing else has found it does not, and
# while it does not.
WATCH_SECONDS = 5.0
OUTAGE_WATCH_SECONDS = 1.0


@dataclass
class TlsSettings:
    cert: Path
    key: Path
    # With a client CA, callers must present a certificate it signed (mutual TLS).
    client_ca: Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """The same certificate, key and client CA for the HTTP listener."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        if self.client_ca is not None:
            context.load_verify_locations(self.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def credentials(self) -> grpc.ServerCredentials:
        import grpc  # only the API process serves gRPC: a dispatcher process never loads it

        ca = self.client_ca.read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())], root_certificates=ca, require_client_auth=ca is not None
        )


@dataclass
class ServerSettings:
    listen: str = "127.0.0.1:50051"
    database: str = "sqlite:///data/webhooks.db"
    # Connections to a PostgreSQL database, each on its own query thread; SQLite always uses one.
    database_pool_size: int = 4
    grace: float = 10.0
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    secret_key_file: Path = Path("data/secret.key")
    # None serves without authentication (--insecure-no-auth).
    admin_token_file: Path | None = Path("data/admin-token")
    rate_limit: float = 1000.0
    # Service calls in progress at once; past it, RESOURCE_EXHAUSTED (health checks are not counted).
    max_concurrent_rpcs: int = 256
    tls: TlsSettings | None = None
    # Replace the delivery settings stored by the processes sharing the database instead of refusing to start.
    take_over_settings: bool = False
    # HOST:PORT of the HTTP listener (REST API, metrics, probes), or "off".
    http_listen: str = OFF
    # Attempts that wait for a watcher that falls behind (WatchWebhookDeliveries), beyond what its connection holds.
    watch_mailbox_size: int = MAILBOX_SIZE
    # Dispatcher processes `serve` starts beside its API; 0 dispatches in the API's own process. `serve`'s
    # flag defaults to 1; a Server made in process (the tests) keeps everything in that one process.
    dispatch_processes: int = 0
    # What `logs.configure` was given, for the dispatcher processes to log the same way.
    log_format: str = "text"
    log_level: str = "info"


class DispatchProcess:
    """The database, the HTTP sender and the dispatcher pool, as `webhooks dispatch` runs them."""

    # Dispatchers never make the key: only a first `serve` on an empty database does. Anywhere else a missing
    # key file is a lost or uncopied one, and a new key would seal secrets no other process can open.
    makes_keys = False
    # How the database's outages are told.
    outage_level = logging.WARNING
    stop_signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
    # The variable of `make run` that sets --http-listen, for processes `make run` starts.
    http_make_variable: str | None = None

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.store: Executor | None = None
        self.token_store: Executor | None = None
        self.sender = Sender(settings.dispatch.delivery_timeout, settings.dispatch.allow_network)
        self.dispatcher: Dispatcher | None = None
        self.http: HttpListener | None = None
        # This process's series, apart from any other process's or test's.
        self.metrics = Metrics()
        # Set once shutdown begins: /readyz then says not ready while in-flight work finishes.
        self.stopping = False
        self._watching: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._refuse_taken_addresses()
        await self._open()
        await self._listen_http()
        log.info("dispatcher ready%s", self._http_words())

    def _refuse_taken_addresses(self) -> None:
        """Stops the start before anything is opened or made when a listening address is taken already, with
        the flag (and `make run`'s variable) that chooses another."""
        if self.settings.http_listen != OFF and in_use(self.settings.http_listen):
            raise RuntimeError(
                taken_address(self.settings.http_listen, "--http-listen", self.http_make_variable, "for HTTP ")
            )

    def _http_doors(self) -> list[Installer]:
        """What the HTTP listener serves in this process."""
        assert self.store is not None
        return [ops.installer(self.metrics, self.store, self._serving, self._series_elsewhere)]

    async def _series_elsewhere(self) -> Sequence[bytes]:
        """The series of other processes that this one reports beside its own."""
        return ()

    def _serving(self) -> bool:
        return not self.stopping

    async def _listen_http(self) -> None:
        if self.settings.http_listen == OFF:
            return
        tls = self.settings.tls
        self.http = HttpListener(self.settings.http_listen, self._http_doors(), tls.ssl_context() if tls else None)
        await self.http.start()

    async def _agree_on_settings(self) -> None:
        """Refuses to start with delivery settings other than those of the processes sharing the database."""
        assert self.store is not None
        dispatch = self.settings.dispatch
        ours = shared_settings(
            dispatch.allow_network, dispatch.retry_schedule, dispatch.delivery_timeout, dispatch.disable_after
        )
        take_over = self.settings.take_over_settings
        differences = disagreements(ours, await self.store.run(settings_store.agree, ours, take_over))
        if differences and not take_over:
            raise RuntimeError(refusal(differences))
        for difference in differences:
            log.warning("took over the shared delivery settings (%s): %s", TAKE_OVER, difference)

    def _dispatches_here(self) -> bool:
        return True

    def _http_words(self) -> str:
        return "" if self.http is None else f", HTTP on {self.http.describe()}"

    async def _open(self) -> None:
        db = open_database(self.settings.database)
        key_file = self.settings.secret_key_file
        if self.makes_keys and not key_file.exists() and _holds_nothing(db) and create_key(key_file):
            log.info("created the key that encrypts webhook secrets: %s", key_file)
        self.store = Executor(db, connections_for(db, self.settings.database_pool_size), SecretBox(load_key(key_file)))
        self.store.availability.level = self.outage_level
        try:
            sealed = await self.store.run(webhooks.prepare_secrets)
        except ValueError as error:
            raise RuntimeError(
                f"{error}: the database's webhook secrets were sealed with another key than "
                f"{self.settings.secret_key_file}; start with the key file they were sealed with"
            ) from None
        if sealed:
            log.info("encrypted %d webhook secrets stored in clear by an earlier release", sealed)
        await self._agree_on_settings()
        await self.sender.start()
        if self.settings.dispatch.concurrency > 0 and self._dispatches_here():
            self.dispatcher = Dispatcher(self.store, self.sender, self.settings.dispatch, self.metrics)
            await self.dispatcher.start()
            log.info("dispatching from database %s as %s", describe(db), self.dispatcher.owner)
        self._watching = asyncio.create_task(self._watch_database(self.store), name="watch database")

    async def _watch_database(self, store: Executor) -> None:
        """Asks the database now and then, so that an outage, and its end, are noticed even when nothing else
        asks: an API-only server has no dispatcher polling, and callers its health sends elsewhere make no
        calls that could find the database back."""
        while True:
            await asyncio.sleep(WATCH_SECONDS if store.availability.answering else OUTAGE_WATCH_SECONDS)
            with contextlib.suppress(Unavailable):
                await store.run(schema.current_version, store.db)

    async def stop(self) -> None:
        self.stopping = True
        await self._stop_dispatching()
        await self._close()

    async def _stop_dispatching(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.stop(self.settings.grace)

    async def _close(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            await asyncio.gather(self._watching, return_exceptions=True)
        if self.http is not None:
            await self.http.stop()
        await self.sender.close()
        for store in (self.store, self.token_store):
            if store is not None:
                store.close()


def in_use(address: str) -> bool:
    """Whether another socket listens on HOST:PORT already, found by binding it as gRPC and aiohttp do
    (SO_REUSEADDR, so a port in TIME_WAIT counts as free). Port 0 is never in use; an address that does not
    resolve is left for the listener to refuse."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return False
    try:
        found = socket.getaddrinfo(
            host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError:
        return False
    for family, kind, protocol, _, where in found:
        try:
            with socket.socket(family, kind, protocol) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(where)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
    return False


def taken_address(address: str, flag: str, make_variable: str | None, what: str = "") -> str:
    make = "" if make_variable is None else f" (with make: make run {make_variable}=HOST:PORT)"
    return (
        f"cannot listen {what}on {address}: the address is in use, by another process (another `webhooks serve`, "
        f"or `make run`?); choose another with {flag} HOST:PORT{make}"
    )


def run(process: DispatchProcess, started: Callable[[asyncio.Event], None] = lambda stopping: None) -> int:
    """Runs `process` until SIGTERM or SIGINT, or until `started`, called once it is running, sets the event
    it is given."""
    # uvloop takes about a tenth less CPU per published event and per delivery than asyncio's own loop.
    return told(process.settings.database, lambda: uvloop.run(_until_signalled(process, started)))


def told(database: str, work: Callable[[], int | None]) -> int:
    """`work()`'s exit status (None is 0); 1 when it fails as a process fails to start, with one log line
    for the operator saying why, without a traceback."""
    try:
        return work() or 0
    except (peewee.DatabaseError, Unavailable) as error:
        STARTS.error("%s", explain_failure(database, error))
    except (RuntimeError, OSError, ValueError) as error:
        STARTS.error("%s", error)
    return 1


async def _until_signalled(process: DispatchProcess, started: Callable[[asyncio.Event], None]) -> None:
    # Handlers first: a signal that lands while starting still gets a graceful stop.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in process.stop_signals:
        loop.add_signal_handler(signum, stopping.set)
    await process.start()
    started(stopping)
    await stopping.wait()
    log.info("shutting down")
    await process.stop()


def _holds_nothing(db: peewee.Database) -> bool:
    """Whether the database has neither webhooks nor tokens: a first start, which may make the key."""
    with bound_to(db), db.connection_context():
        return webhooks.holds_nothing()
