"""Watching deliveries: every attempt, whichever process made it, streamed to this server's watchers as it is
recorded.

One feed per server reads what is recorded, and only while someone watches: on PostgreSQL the attempts that
each recording transaction names in a notification (store/notify.py), heard on a connection of its own as it
commits; on SQLite, which has no notifications, the attempts table past the last row read, every
POLL_SECONDS. Attempts made in this process come the same way, so each reaches a watcher once.

Each watcher has a mailbox of its own, bounded: a watcher that does not keep up loses the attempts that
arrive while its mailbox is full, and the next attempt it gets says how many.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass

from webhook_service.domain.admission import Gate
from webhook_service.domain.errors import Reason, ServiceError, Unavailable
from webhook_service.domain.limits import MAX_WATCHERS
from webhook_service.domain.model import DeliveryState, FinishedAttempt
from webhook_service.domain.names import Parent, WebhookName, covers
from webhook_service.store import attempts, notify
from webhook_service.store.database import Executor

log = logging.getLogger(__name__)

# How often SQLite's attempts table is read while someone watches: an indexed read of nothing, most times.
POLL_SECONDS = 0.1
# After a failed read, before the next.
RETRY_SECONDS = 1.0
# Attempts that wait for one watcher, beyond what its connection holds.
MAILBOX_SIZE = 256


@dataclass(frozen=True)
class Watched:
    attempt: FinishedAttempt
    # Attempts left out just before this one because the watcher did not keep up.
    dropped: int


class Mailbox:
    """The attempts waiting for one watcher, at most `size`: while it is full, arrivals are left out and
    counted, and the next one kept carries the count. Iterating ends once the mailbox is ended, at once,
    whatever still waits; ended with an error, iterating raises it."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._waiting: deque[Watched] = deque()
        self._dropped = 0
        self._changed = asyncio.Event()
        self._ended = False
        self._error: ServiceError | None = None

    def put(self, attempt: FinishedAttempt) -> None:
        if self._ended:
            return
        if len(self._waiting) >= self._size:
            self._dropped += 1
            return
        self._waiting.append(Watched(attempt, self._dropped))
        self._dropped = 0
        self._changed.set()

    def end(self, error: ServiceError | None = None) -> None:
        self._ended = True
        self._error = error
        self._waiting.clear()
        self._changed.set()

    def __len__(self) -> int:
        return len(self._waiting)

    def __aiter__(self) -> Mailbox:
        return self

    async def __anext__(self) -> Watched:
        while not self._waiting and not self._ended:
            self._changed.clear()
            await self._changed.wait()
        if self._error is not None:
            raise self._error
        if self._ended:
            raise StopAsyncIteration
        return self._waiting.popleft()


@dataclass(frozen=True, eq=False)
class _Watcher:
    target: WebhookName | Parent
    # Empty: every state.
    states: frozenset[DeliveryState]
    mailbox: Mailbox

    def wants(self, attempt: FinishedAttempt) -> bool:
        return covers(self.target, attempt.delivery.webhook) and (not self.states or attempt.state in self.states)


class Watchers:
    """This server's watchers and the feed that serves them. Not thread-safe: used on the event loop only."""

    def __init__(self, store: Executor, mailbox_size: int = MAILBOX_SIZE) -> None:
        self._store = store
        self._mailbox_size = mailbox_size
        self._gate = Gate(MAX_WATCHERS, "watching deliveries")
        self._watchers: set[_Watcher] = set()
        self._feed: asyncio.Task[None] | None = None
        # Done once the running feed misses nothing recorded from then on; failed when it could not start.
        self._following: asyncio.Future[None] | None = None
        self._closed = False

    @contextlib.asynccontextmanager
    async def watch(self, target: WebhookName | Parent, states: Collection[DeliveryState]) -> AsyncIterator[Mailbox]:
        """The mailbox of a new watcher of `target`'s attempts that leave their delivery in one of `states`
        (any state when empty), for the duration; every attempt recorded from the moment it is given reaches it."""
        if self._closed:
            raise Unavailable("the server is shutting down; watch on another server, or once this one is back")
        with self._gate.enter():
            watcher = _Watcher(target, frozenset(states), Mailbox(self._mailbox_size))
            self._watchers.add(watcher)
            try:
                await self._follow()
                yield watcher.mailbox
            finally:
                self._watchers.discard(watcher)
                if not self._watchers and self._feed is not None:
                    self._feed.cancel()
                    self._feed = None

    def close(self) -> None:
        """Ends every watch, at once and without error: the server is shutting down."""
        self._closed = True
        self._end_all(None)

    def _end_all(self, error: ServiceError | None) -> None:
        # A watcher still waiting for the feed to start goes on to its ended mailbox.
        if self._following is not None and not self._following.done():
            self._following.set_result(None)
        for watcher in self._watchers:
            watcher.mailbox.end(error)
        if self._feed is not None:
            self._feed.cancel()
            self._feed = None

    async def _follow(self) -> None:
        """Starts the feed unless it runs; returns once it misses nothing recorded from now on."""
        if self._feed is None or self._feed.done():
            following = self._following = asyncio.get_running_loop().create_future()
            # Retrieved even when every watcher waiting for it has gone.
            following.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._feed = asyncio.create_task(self._run_feed(following), name="watch-feed")
        assert self._following is not None
        await asyncio.shield(self._following)

    async def _run_feed(self, following: asyncio.Future[None]) -> None:
        try:
            listener = await self._store.run(notify.listener, notify.ATTEMPTS_CHANNEL)
            if listener is None:
                await self._poll(following)
            else:
                await self._listen(listener, following)
        except Exception as error:
            if not isinstance(error, ServiceError):
                log.exception("the feed of recorded attempts failed; ending every watch")
            failure = error if isinstance(error, ServiceError) else Unavailable("watching failed here; watch again")
            # Before it started, the watchers waiting for it hear why; after, every watch ends with it.
            if following.done():
                self._end_all(failure)
            else:
                following.set_exception(failure)

    async def _poll(self, following: asyncio.Future[None]) -> None:
        """SQLite: the attempts table past the last row read."""
        position = await self._store.run(attempts.last_id)
        following.set_result(None)
        failing = False
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                found, position = await self._store.run(attempts.after, position)
                # A full read leaves more behind: read on before sleeping.
                while len(found) == attempts.READ_ROWS:
                    self._hand_out(found)
                    found, position = await self._store.run(attempts.after, position)
            except ServiceError as error:
                if not failing:
                    log.warning("reading recorded attempts for watchers failed (%s); retrying", error)
                failing = True
                continue
            failing = False
            self._hand_out(found)

    async def _listen(self, listener: notify.Listener, following: asyncio.Future[None]) -> None:
        """PostgreSQL: the attempts each recording transaction names as it commits. Once the connection that
        hears them breaks, what was recorded meanwhile is unknown, so every watch ends with Unavailable."""
        try:
            socket_fd = await _connect(listener)
        except Exception as error:
            raise Unavailable(
                "cannot listen for recorded attempts: the database is unavailable; try again",
                Reason.DATABASE_UNAVAILABLE,
            ) from error
        loop = asyncio.get_running_loop()
        heard: list[tuple[int, int]] = []
        arrived = asyncio.Event()
        lost: list[Exception] = []
        loop.add_reader(socket_fd, _take, listener, heard, arrived, lost)
        following.set_result(None)
        try:
            while True:
                await arrived.wait()
                arrived.clear()
                if lost:
                    log.warning(
                        "lost the database's notifications of recorded attempts (%s); ending every watch", lost[0]
                    )
                    raise Unavailable(
                        "lost the database's notifications of recorded attempts; watch again",
                        Reason.DATABASE_UNAVAILABLE,
                    )
                keys = heard[:]
                heard.clear()
                try:
                    found = await self._store.run(attempts.by_keys, keys)
                except ServiceError as error:
                    log.warning("reading recorded attempts for watchers failed (%s); retrying", error)
                    heard[:0] = keys
                    await asyncio.sleep(RETRY_SECONDS)
                    arrived.set()
                    continue
                self._hand_out(found)
        finally:
            loop.remove_reader(socket_fd)
            listener.close()

    def _hand_out(self, found: list[FinishedAttempt]) -> None:
        for attempt in found:
            for watcher in self._watchers:
                if watcher.wants(attempt):
                    watcher.mailbox.put(attempt)


def _take(
    listener: notify.Listener, heard: list[tuple[int, int]], arrived: asyncio.Event, lost: list[Exception]
) -> None:
    """On the listening socket becoming readable: what its notifications name, or why it broke."""
    try:
        for payload in listener.take():
            heard.extend(notify.attempts_announced(payload))
    except Exception as error:
        lost.append(error)
    arrived.set()


async def _connect(listener: notify.Listener) -> int:
    """The listening socket. A connection still being made when the caller goes is closed once it is made."""
    connecting = asyncio.ensure_future(asyncio.to_thread(listener.connect))
    try:
        return await asyncio.shield(connecting)
    except asyncio.CancelledError:
        connecting.add_done_callback(lambda _made: listener.close())
        raise
