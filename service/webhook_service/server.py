"""The API process: `webhooks serve`, the gRPC API (with the HTTP doors) beside its dispatchers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from webhook_service.api import console
from webhook_service.api.grpc.calls import CallInterceptor
from webhook_service.api.grpc.errors import ErrorInterceptor
from webhook_service.api.grpc.event_service import EventService
from webhook_service.api.grpc.observe import ObserveInterceptor
from webhook_service.api.grpc.reflection import enable_reflection
from webhook_service.api.grpc.webhook_service import WebhookService
from webhook_service.api.http import Installer
from webhook_service.api.rest import RestApi
from webhook_service.app import Application
from webhook_service.app.authentication import Authenticator
from webhook_service.dispatchers import DispatcherProcesses
from webhook_service.domain.access import Principal
from webhook_service.domain.limits import MAX_REQUEST_BYTES
from webhook_service.files import exposure, write_private
from webhook_service.process import DispatchProcess, ServerSettings, in_use, taken_address
from webhook_service.store import tokens
from webhook_service.store.database import describe
from webhooks.v1 import event_service_pb2, event_service_pb2_grpc, webhook_service_pb2, webhook_service_pb2_grpc

log = logging.getLogger(__name__)

PENDING_CALLS = 10_000
# At shutdown, once the calls in progress are done, how long gRPC still has to send their last answers.
LAST_ANSWERS_SECONDS = 1.0

SERVICE_NAMES = (
    webhook_service_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name,
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
)


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
        self.dispatchers: DispatcherProcesses | None = None
        self._starting_dispatchers: asyncio.Task[None] | None = None

    def _dispatches_here(self) -> bool:
        return self.settings.dispatch_processes == 0

    async def _series_elsewhere(self) -> Sequence[bytes]:
        return [] if self.dispatchers is None else await self.dispatchers.series()

    def _http_doors(self) -> list[Installer]:
        assert self.app is not None, "the application is made before the HTTP listener starts"
        return [*super()._http_doors(), RestApi(self.app).install, console.installer(self.app)]

    def _refuse_taken_addresses(self) -> None:
        if in_use(self.settings.listen):
            raise RuntimeError(taken_address(self.settings.listen, "--listen", "LISTEN"))
        super()._refuse_taken_addresses()

    async def start(self) -> None:
        self._refuse_taken_addresses()
        await self._open()
        assert self.store is not None
        wake = _nobody
        if self.dispatcher is not None:
            wake = self.dispatcher.wake
        elif self.settings.dispatch.concurrency > 0:
            # They start while this process makes the API, and are woken after each commit like the built-in one.
            self.dispatchers = DispatcherProcesses(self.settings, self.metrics)
            self._starting_dispatchers = asyncio.create_task(self.dispatchers.start())
            wake = self.dispatchers.wake
        # Otherwise (--dispatch-concurrency 0) `webhooks dispatch` processes poll for the work.
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
            if self._starting_dispatchers is not None:
                await self._starting_dispatchers
            await self._listen_http()
        except (RuntimeError, OSError):
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

    async def _stop_dispatching(self) -> None:
        await super()._stop_dispatching()
        if self._starting_dispatchers is not None and not self._starting_dispatchers.done():
            self._starting_dispatchers.cancel()
        if self._starting_dispatchers is not None:
            await asyncio.gather(self._starting_dispatchers, return_exceptions=True)
        if self.dispatchers is not None:
            await self.dispatchers.stop(self.settings.grace)

    async def _finish_calls(self) -> None:
        if self.app is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.grace):
                await self.app.calls.finished()


def _nobody() -> None:
    pass
