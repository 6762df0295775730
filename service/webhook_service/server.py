"""The processes: `serve` (gRPC API plus dispatcher) and `dispatch` (dispatcher alone)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import peewee
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from webhook_service.api import console, ops
from webhook_service.api.grpc.calls import CallInterceptor
from webhook_service.api.grpc.errors import ErrorInterceptor
from webhook_service.api.grpc.event_service import EventService
from webhook_service.api.grpc.observe import ObserveInterceptor
from webhook_service.api.grpc.reflection import enable_reflection
from webhook_service.api.grpc.webhook_service import WebhookService
from webhook_service.api.http import OFF, HttpListener, Installer
from webhook_service.api.rest import RestApi
from webhook_service.app import Application
from webhook_service.app.authentication import Authenticator
from webhook_service.app.watch import MAILBOX_SIZE
from webhook_service.dispatch.pool import Dispatcher
from webhook_service.dispatch.sender import Sender
from webhook_service.dispatch.settings import DispatchSettings
from webhook_service.domain.access import Principal
from webhook_service.domain.agreement import TAKE_OVER, disagreements, refusal, shared_settings
from webhook_service.domain.errors import Unavailable
from webhook_service.domain.limits import MAX_REQUEST_BYTES
from webhook_service.files import exposure, write_private
from webhook_service.metrics import Metrics
from webhook_service.store import schema, tokens, webhooks
from webhook_service.store import settings as settings_store
from webhook_service.store.database import Executor, connections_for, describe, open_database
from webhook_service.store.models import bound_to
from webhook_service.store.secrets import SecretBox, create_key, load_key
from webhooks.v1 import event_service_pb2, event_service_pb2_grpc, webhook_service_pb2, webhook_service_pb2_grpc

log = logging.getLogger(__name__)

PENDING_CALLS = 10_000
# How often a process asks the database whether it answers, when nothing else has found it does not, and
# while it does not.
WATCH_SECONDS = 5.0
OUTAGE_WATCH_SECONDS = 1.0
# At shutdown, once the calls in progress are done, how long gRPC still has to send their last answers.
LAST_ANSWERS_SECONDS = 1.0

SERVICE_NAMES = (
    webhook_service_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name,
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
)


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


class DispatchProcess:
    """The database, the HTTP sender and the dispatcher pool, as `webhooks dispatch` runs them."""

    # Dispatchers never make the key: only a first `serve` on an empty database does. Anywhere else a missing
    # key file is a lost or uncopied one, and a new key would seal secrets no other process can open.
    makes_keys = False
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
        if self.settings.http_listen != OFF and _in_use(self.settings.http_listen):
            raise RuntimeError(_taken(self.settings.http_listen, "--http-listen", self.http_make_variable, "for HTTP "))

    def _http_doors(self) -> list[Installer]:
        """What the HTTP listener serves in this process."""
        assert self.store is not None
        return [ops.installer(self.metrics, self.store, self._serving)]

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

    def _http_words(self) -> str:
        return "" if self.http is None else f", HTTP on {self.http.describe()}"

    async def _open(self) -> None:
        db = open_database(self.settings.database)
        key_file = self.settings.secret_key_file
        if self.makes_keys and not key_file.exists() and _holds_nothing(db) and create_key(key_file):
            log.info("created the key that encrypts webhook secrets: %s", key_file)
        self.store = Executor(db, connections_for(db, self.settings.database_pool_size), SecretBox(load_key(key_file)))
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
        if self.settings.dispatch.concurrency > 0:
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


class Server(DispatchProcess):
    """The gRPC API beside the dispatcher; `start` returns the port actually bound (useful with port 0)."""

    makes_keys = True
    http_make_variable = "HTTP_LISTEN"

    def __init__(self, settings: ServerSettings) -> None:
        super().__init__(settings)
        self.health = health_aio.HealthServicer()
        self.app: Application | None = None
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._health_changes: set[asyncio.Task[None]] = set()

    def _http_doors(self) -> list[Installer]:
        assert self.app is not None, "the application is made before the HTTP listener starts"
        return [*super()._http_doors(), RestApi(self.app).install, console.installer(self.app)]

    def _refuse_taken_addresses(self) -> None:
        if _in_use(self.settings.listen):
            raise RuntimeError(_taken(self.settings.listen, "--listen", "LISTEN"))
        super()._refuse_taken_addresses()

    async def start(self) -> None:
        self._refuse_taken_addresses()
        await self._open()
        assert self.store is not None
        # With no dispatcher here (--dispatch-concurrency 0), `webhooks dispatch` processes poll for the work.
        wake = self.dispatcher.wake if self.dispatcher is not None else _nobody
        try:
            authenticator = await self._authenticator()
        except Exception:
            # The dispatcher and its HTTP sessions are running already: a start that fails here stops them.
            await super().stop()
            raise
        app = Application(
            self.store,
            self.sender,
            authenticator=authenticator,
            rate_limit=self.settings.rate_limit,
            max_calls=self.settings.max_concurrent_rpcs,
            first_delay=self.settings.dispatch.retry_schedule[0],
            delivered=wake,
            metrics=self.metrics,
            watch_mailbox_size=self.settings.watch_mailbox_size,
        )
        self.app = app
        server = grpc.aio.server(
            # In call order: every call counted with the status it ends with, errors become statuses around
            # everything else, then the application's gate.
            interceptors=[ObserveInterceptor(self.metrics), ErrorInterceptor(), CallInterceptor(app.calls)],
            options=[
                # A second server on a taken port must fail, not silently share it.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
                # Calls gRPC has received but this process has not yet taken: it takes one at a time, so a
                # burst waits here. Past the default 1000 (certainly 3000) gRPC cancels them, a CANCELLED
                # the caller never asked for; with room for a burst of 10,000 they are answered instead.
                ("grpc.server.max_pending_requests", PENDING_CALLS),
                ("grpc.server.max_pending_requests_hard_limit", 2 * PENDING_CALLS),
            ],
        )
        webhook_service_pb2_grpc.add_WebhookServiceServicer_to_server(
            WebhookService(app.webhooks, app.deliveries), server
        )
        event_service_pb2_grpc.add_EventServiceServicer_to_server(EventService(app.events), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        enable_reflection((*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server)
        tls = self.settings.tls
        try:
            if tls is None:
                self.port = server.add_insecure_port(self.settings.listen)
            else:
                self.port = server.add_secure_port(self.settings.listen, tls.credentials())
        except RuntimeError as error:
            await super().stop()
            raise RuntimeError(f"cannot listen on {self.settings.listen}: {error}") from None
        self._server = server
        await server.start()
        await self._report_health()
        self.store.availability.watch(self._database_changed)
        host = self.settings.listen.rsplit(":", 1)[0]
        transport = "plaintext" if tls is None else ("mutual TLS" if tls.client_ca else "TLS")
        try:
            await self._listen_http()
        except RuntimeError:
            await self.stop()
            raise
        log.info(
            "listening on %s:%d (%s)%s, database %s",
            host,
            self.port,
            transport,
            self._http_words(),
            describe(self.store.db),
        )

    def _database_changed(self, answering: bool) -> None:
        # Balancers send callers elsewhere while the database does not answer, and back once it does.
        change = asyncio.create_task(self._report_health())
        self._health_changes.add(change)
        change.add_done_callback(self._health_changes.discard)

    async def _report_health(self) -> None:
        """SERVING while the database answers; NOT_SERVING otherwise (and for good once shutdown began, which
        the health servicer sees to)."""
        assert self.store is not None
        answering = self.store.availability.answering
        status = health_pb2.HealthCheckResponse.SERVING if answering else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def _authenticator(self) -> Authenticator | None:
        """The token checker; on a first start it also makes the first admin token and says where it is."""
        assert self.store is not None
        token_file = self.settings.admin_token_file
        if token_file is None:
            log.warning("serving WITHOUT authentication (--insecure-no-auth): every caller is an admin")
            return None
        first = await self.store.run(tokens.create_first_admin)
        if first is not None:
            write_private(token_file, first + "\n")
            log.info("created the first admin token; it is in %s (readable by its owner only)", token_file.resolve())
        elif token_file.exists():
            # Said at every start, so whoever starts the server again finds the token without searching; only
            # when it is one, as another deployment's file may be where this one's would be.
            try:
                valid = await self.store.run(tokens.find, token_file.read_text().strip()) is not None
            except (OSError, UnicodeDecodeError):
                valid = False
            if valid:
                log.info("the admin token made at the first start is in %s", token_file.resolve())
            else:
                log.info("%s holds no valid token of this database: `webhooks tokens create` makes one", token_file)
            if (problem := exposure(token_file)) is not None:
                log.warning("the admin token file %s", problem)
        # Token lookups get a connection of their own, so they never queue behind publishes and deliveries.
        lookups = self.token_store = self.store.sibling(1)

        async def lookup(token: str) -> Principal | None:
            return await lookups.admit(tokens.find, token)

        return Authenticator(lookup)

    async def stop(self) -> None:
        """New calls are refused with UNAVAILABLE from the start and health says NOT_SERVING, so callers and
        balancers go elsewhere; calls in progress and deliveries get the grace period. Watch streams end at once
        (with OK): they would otherwise hold the whole grace.

        The application refuses, not gRPC: gRPC keeps taking calls, each answered at once, until the work is
        done, and is stopped last with a short bound. Its stop may leave a call that reaches it as it begins
        neither served nor refused until the caller's deadline or the end of the grace (seen under load), and
        callers that react to NOT_SERVING arrive just then."""
        self.stopping = True
        if self.app is not None:
            self.app.close()
        await self.health.enter_graceful_shutdown()
        await asyncio.gather(self._stop_dispatching(), self._finish_calls())
        if self._server is not None:
            # Answers already handed to gRPC leave within milliseconds; what is still open after this (health
            # watches, a call gRPC never handed over) is cut rather than kept waiting.
            await self._server.stop(LAST_ANSWERS_SECONDS)
        await self._close()
        log.info("stopped")

    async def _finish_calls(self) -> None:
        if self.app is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.grace):
                await self.app.calls.finished()


def _nobody() -> None:
    pass


def _in_use(address: str) -> bool:
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


def _taken(address: str, flag: str, make_variable: str | None, what: str = "") -> str:
    make = "" if make_variable is None else f" (with make: make run {make_variable}=HOST:PORT)"
    return (
        f"cannot listen {what}on {address}: the address is in use, by another process (another `webhooks serve`, "
        f"or `make run`?); choose another with {flag} HOST:PORT{make}"
    )


async def run_until_signalled(process: DispatchProcess) -> None:
    # Handlers first: a signal that lands while starting still gets a graceful stop.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await process.start()
    await stopping.wait()
    log.info("shutting down")
    await process.stop()


def _holds_nothing(db: peewee.Database) -> bool:
    """Whether the database has neither webhooks nor tokens: a first start, which may make the key."""
    with bound_to(db), db.connection_context():
        return webhooks.holds_nothing()
