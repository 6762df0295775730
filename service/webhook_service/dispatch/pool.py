"""The dispatcher: claims due deliveries, sends them concurrently, records what happened."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import time
from collections import Counter, deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from webhook_service.dispatch.sender import Sender
from webhook_service.dispatch.settings import DispatchSettings
from webhook_service.domain.errors import Unavailable
from webhook_service.domain.model import Attempt
from webhook_service.domain.retries import failing_reason, gone_reason, judge, parse_retry_after
from webhook_service.domain.scheduling import Capacity
from webhook_service.metrics import Metrics
from webhook_service.store import deliveries, notify, webhooks
from webhook_service.store.database import Executor
from webhook_service.store.deliveries import Claim, Outcome
from webhook_service.store.events import IDEMPOTENCY_WINDOW

log = logging.getLogger(__name__)

Key = TypeVar("Key")

MAX_FLUSH = 500
LISTEN_RETRY_SECONDS = 1.0
FAILURE_REPEAT_SECONDS = 60.0
MAX_FAILURE_KINDS = 100
# News of published work claims at most this often: at hundreds of publishes a second, a claim (a write
# transaction, and the store's thread) per publish cost more than the sends it started, and its write lock
# delayed the publishes themselves. Completions that free a slot still claim at once.
NEWS_SPACING = 0.005
# A webhook's next deliveries are claimed while its current ones are out: up to as many again as its bound
# lets out are held, and each request that ends starts a held one at once. Claimed only once half its slots
# were free, a busy webhook ran half empty while the claim ran, and paid for twice as many claims.
HELD_PER_SLOT = 1


class Dispatcher:
    """At most `concurrency` requests in flight, at most `per_webhook` for any one webhook and
    `per_organization` for any one organization, shared fairly (domain.scheduling): a slow or dead
    receiver holds its own slots and nobody else's.

    Deliveries held for a webhook's next free slot count against the organization's and the global bound
    as if they were out, so holding never lets more out than those bounds, and every held delivery starts
    within one delivery timeout of its claim (each waits for a request that was out before it was claimed):
    its lease covers that wait and its own request.
    """

    def __init__(self, store: Executor, sender: Sender, settings: DispatchSettings, metrics: Metrics) -> None:
        self.store = store
        self.sender = sender
        self.settings = settings
        self.metrics = metrics
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        # Out and held, per webhook and organization: what claims are bounded by.
        self._busy: Counter[int] = Counter()
        # The claims each webhook holds for its next free slots; the rest of its busy ones are out.
        self._held: dict[int, deque[Claim]] = {}
        self._held_count = 0
        self._busy_organizations: Counter[str] = Counter()
        # Sent but not yet written: not to be claimed again even if the store is slow past their lease.
        self._unrecorded: set[int] = set()
        # Claimed and not yet written, failed writes included: what stopping gives back.
        self._claimed: set[int] = set()
        self._finished: list[Outcome] = []
        # Set once attempts wait to be written; nothing ticks while none do.
        self._flush_due: asyncio.TimerHandle | None = None
        # When the last claim began (loop time), and the wake that news of work waits to give until NEWS_SPACING
        # after it.
        self._claim_began = -math.inf
        self._news_due: asyncio.TimerHandle | None = None
        self._stopping = False
        self._starved = False
        self._capped: set[int] = set()
        self._capped_organizations: set[str] = set()
        self._claiming: asyncio.Task[None] | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._pruning: asyncio.Task[None] | None = None
        self._listening: asyncio.Task[None] | None = None
        self._erasing: asyncio.Task[None] | None = None
        # Each kind of claim failure, with when it may be logged again.
        self._claim_failures: dict[str, float] = {}
        # Attempts whose outcome could not be written while the database did not answer; told when it does.
        self._unrecorded_in_outage = 0
        store.availability.watch(self._database_changed)

    def wake(self) -> None:
        """New deliveries are due: look now rather than at the next poll, or NEWS_SPACING after the last
        claim began when that was less than NEWS_SPACING ago."""
        if self._wake.is_set() or self._news_due is not None:
            return
        loop = asyncio.get_running_loop()
        due = self._claim_began + NEWS_SPACING
        if due <= loop.time():
            self._wake.set()
        else:
            self._news_due = loop.call_at(due, self._news_arrived)

    def _news_arrived(self) -> None:
        self._news_due = None
        self._wake.set()

    async def start(self) -> None:
        self._claiming = asyncio.create_task(self._claim_loop(), name="claim")
        self._flushing = asyncio.create_task(self._flush_loop(), name="flush")
        self._pruning = asyncio.create_task(self._prune_loop(), name="prune")
        self._listening = asyncio.create_task(self._listen_loop(), name="listen")
        self._erasing = asyncio.create_task(self._erase_loop(), name="erase")

    async def stop(self, grace: float) -> None:
        """Stops claiming; in-flight requests get `grace` seconds; every result is written and every
        claim this dispatcher still holds is given back, so nothing waits for a lease to expire.

        The claim and flush loops are let finish rather than cancelled: a claim or a write cut off
        halfway would leave deliveries claimed with nobody to send or record them.
        """
        self._stopping = True
        if self._news_due is not None:
            self._news_due.cancel()
        self._wake.set()
        if self._claiming is not None:
            await self._claiming
        unfinished = 0
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks.values()), timeout=grace)
            unfinished = len(pending)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._flush_now.set()
        if self._flushing is not None:
            await self._flushing
        await self._flush()
        for background in (self._pruning, self._listening, self._erasing):
            if background is not None:
                background.cancel()
                await asyncio.gather(background, return_exceptions=True)
        try:
            released = await self.store.run(deliveries.release, self.owner, self._claimed)
        except Unavailable:
            log.warning("this dispatcher's claims were not released: they are taken again when their leases expire")
            released = 0
        except Exception:
            log.exception("releasing this dispatcher's claims failed; they are taken again when their leases expire")
            released = 0
        log.info(
            "dispatcher stopped; %d unfinished deliveries released (%d cut off by the grace)", released, unfinished
        )

    async def _claim_loop(self) -> None:
        settings = self.settings
        while not self._stopping:
            self._wake.clear()
            capacity = Capacity(
                free=self._free(),
                per_webhook=settings.per_webhook * (1 + HELD_PER_SLOT),
                per_organization=settings.per_organization,
                busy_webhooks=dict(self._busy),
                busy_organizations=dict(self._busy_organizations),
            )
            claimed: list[Claim] = []
            if capacity.free > 0:
                self._claim_began = asyncio.get_running_loop().time()
                in_flight = (
                    frozenset(self._tasks) | self._unrecorded | {c.row_id for q in self._held.values() for c in q}
                )
                try:
                    claimed = await self.store.run(deliveries.claim, self.owner, settings.lease, capacity, in_flight)
                except Exception as error:
                    self._claim_failed(error)
                self._claimed.update(claim.row_id for claim in claimed)
                for claim in claimed:
                    if self._out(claim.webhook_row) < settings.per_webhook:
                        self._start(claim)
                    else:
                        self._held.setdefault(claim.webhook_row, deque()).append(claim)
                        self._held_count += 1
                    self._busy[claim.webhook_row] += 1
                    self._busy_organizations[claim.organization] += 1
                # The bounds that held this claim back: completions under them are worth a new claim. Judged by
                # what was in flight when the claim was made: requests that ended meanwhile did not make room
                # the claim could have taken, and a webhook judged by what is left would wait for the next poll.
                self._capped = _at_bound(
                    capacity.busy_webhooks, Counter(c.webhook_row for c in claimed), capacity.per_webhook
                )
                self._capped_organizations = _at_bound(
                    capacity.busy_organizations, Counter(c.organization for c in claimed), settings.per_organization
                )
            # Short of what was asked: nothing else is due, or only for webhooks or organizations at their bound.
            self._starved = len(claimed) < capacity.free
            if capacity.free > 0 and not self._starved:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), settings.poll_interval)

    def _claim_failed(self, error: Exception) -> None:
        """A broken store fails every poll, four times a second: each kind of failure is told once a minute. An
        unreachable database is told by the store, when it stops answering and when it answers again."""
        if isinstance(error, Unavailable):
            return
        kind = f"{type(error).__name__}: {error}"
        moment = time.monotonic()
        if moment < self._claim_failures.get(kind, moment):
            return
        if len(self._claim_failures) >= MAX_FAILURE_KINDS:
            self._claim_failures.clear()
        self._claim_failures[kind] = moment + FAILURE_REPEAT_SECONDS
        log.error("claiming deliveries failed (%s); retrying, and saying so at most once a minute", kind)

    def _free(self) -> int:
        return self.settings.concurrency - len(self._tasks) - self._held_count

    def _out(self, webhook: int) -> int:
        return self._busy[webhook] - len(self._held.get(webhook, ()))

    def _start(self, claim: Claim) -> None:
        self._tasks[claim.row_id] = asyncio.create_task(self._deliver(claim))

    def _start_held(self, webhook: int) -> None:
        """Starts the next delivery `webhook` holds, in the slot one of its requests just freed."""
        held = self._held.get(webhook)
        if not held or self._stopping:
            return
        self._held_count -= 1
        self._start(held.popleft())
        if not held:
            del self._held[webhook]

    async def _deliver(self, claim: Claim) -> None:
        try:
            # Awaited first: a flush may swap the list while the attempt runs.
            outcome = await self._attempt(claim)
            self._finished.append(outcome)
            self._unrecorded.add(claim.row_id)
            if len(self._finished) >= MAX_FLUSH:
                self._flush_now.set()
            elif self._flush_due is None:
                self._flush_due = asyncio.get_running_loop().call_later(
                    self.settings.flush_interval, self._flush_now.set
                )
        finally:
            del self._tasks[claim.row_id]
            self._start_held(claim.webhook_row)
            left = _release_slot(self._busy, claim.webhook_row)
            left_in_organization = _release_slot(self._busy_organizations, claim.organization)
            self._claim_again_if_worth_it(claim, left, left_in_organization)

    async def _attempt(self, claim: Claim) -> Outcome:
        """The outcome of one attempt. Nothing a receiver sends, and no fault of ours, may escape here
        unrecorded: the delivery would be sent again at every lease expiry, forever."""
        if claim.unreadable:
            return self._outcome(claim, _failed_attempt(claim, claim.unreadable))
        try:
            return self._outcome(claim, await self.sender.send(claim))
        except Exception as error:
            log.exception(
                "delivery %s to %s failed inside the dispatcher",
                claim.delivery_id,
                claim.webhook_name,
                extra=_about(claim),
            )
            return self._outcome(claim, _failed_attempt(claim, f"internal error while sending: {type(error).__name__}"))

    def _claim_again_if_worth_it(self, claim: Claim, left: int, left_in_organization: int) -> None:
        """Claims in batches rather than after every completion: once a quarter of all slots are free
        while more work was waiting, or once a webhook whose bound held the last claim back is down to what
        it may have out (it holds none), or an organization to half its bound."""
        settings = self.settings
        if self._starved:
            if (claim.webhook_row in self._capped and left <= settings.per_webhook) or (
                claim.organization in self._capped_organizations
                and left_in_organization <= settings.per_organization // 2
            ):
                self._wake.set()
        elif self._free() >= max(1, settings.concurrency // 4):
            self._wake.set()

    def _outcome(self, claim: Claim, attempt: Attempt) -> Outcome:
        # Header names are case-insensitive; receivers send `retry-after` as often as `Retry-After`.
        asked = next((v for k, v in attempt.response_headers.items() if k.lower() == "retry-after"), None)
        retry_after = parse_retry_after(asked, attempt.start_time)
        # Counted from where the schedule last began: a recovered delivery starts it afresh.
        made = attempt.number - claim.schedule_start
        verdict = judge(attempt.response_code, retry_after, made, self.settings.retry_schedule)
        self.metrics.attempted(attempt.response_code, verdict.succeeded, attempt.duration)
        if verdict.succeeded:
            # A queued delivery succeeds once: after that it is never claimed again.
            self.metrics.delivered(time.time() - claim.create_time)
        if attempt.response_code == 0 or verdict.gone:
            log.info(
                "delivery %s to %s failed: %s",
                claim.delivery_id,
                claim.webhook_name,
                attempt.error or "410 Gone",
                extra=_about_attempt(claim, attempt),
            )
        elif log.isEnabledFor(logging.DEBUG):
            # Asked first: this line is for every answer, and its fields would be made for nothing otherwise.
            log.debug(
                "delivery %s to %s: attempt %d answered %d",
                claim.delivery_id,
                claim.webhook_name,
                attempt.number,
                attempt.response_code,
                extra=_about_attempt(claim, attempt),
            )
        return Outcome(
            claim=claim,
            attempt=attempt,
            state=verdict.state,
            next_attempt_time=None if verdict.delay is None else time.time() + verdict.delay,
            succeeded=verdict.succeeded,
            disable_reason=gone_reason(attempt.start_time) if verdict.gone else "",
        )

    async def _flush_loop(self) -> None:
        while not self._stopping or self._tasks:
            await self._flush_now.wait()
            self._flush_now.clear()
            if self._flush_due is not None:
                self._flush_due.cancel()
                self._flush_due = None
            await self._flush()

    async def _flush(self) -> None:
        """Writes finished attempts in one transaction; until then their leases keep them from anyone else."""
        if not self._finished:
            return
        batch, self._finished = self._finished, []
        try:
            disabled = await self.store.run(deliveries.record, batch, self.settings.disable_after, self._why)
        except Unavailable:
            # Not recorded means still leased: the deliveries are sent again when the leases expire.
            self._unrecorded_in_outage += len(batch)
            return
        except Exception:
            log.exception("recording %d attempts failed; they will be retried", len(batch))
            return
        finally:
            self._unrecorded.difference_update(outcome.claim.row_id for outcome in batch)
        self._claimed.difference_update(outcome.claim.row_id for outcome in batch)
        if any(outcome.claim.sequence for outcome in batch):
            # Each may have freed the next delivery of its stack: look now rather than at the next poll.
            self._wake.set()
        # A webhook that answered 410 is deactivated as gone even when it was failing long enough too.
        gone = {outcome.claim.webhook_name for outcome in batch if outcome.disable_reason}
        for name in disabled:
            reason = "gone" if name in gone else "failing"
            self.metrics.deactivated(reason)
            log.warning("webhook %s deactivated (%s)", name, reason, extra={"webhook": name})

    def _database_changed(self, answering: bool) -> None:
        if answering and self._unrecorded_in_outage:
            log.warning(
                "recording %d attempts failed while the database did not answer; those deliveries are sent again "
                "once their leases expire",
                self._unrecorded_in_outage,
            )
            self._unrecorded_in_outage = 0

    def _why(self, since: datetime) -> str:
        return failing_reason(since, self.settings.disable_after)

    async def _listen_loop(self) -> None:
        """Wakes the claim loop when another process publishes (PostgreSQL); reconnects when the
        connection breaks, while polling carries on regardless."""
        found = await self.store.run(notify.listener)
        if found is None:
            return
        listener = found
        loop = asyncio.get_running_loop()
        while True:
            connected = time.monotonic()
            try:
                socket_fd = await asyncio.to_thread(listener.connect)
            except Exception as error:
                # An unreachable database, told once by the store; polling finds the work meanwhile.
                self.store.availability.failed(error, connected, counted=False)
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
                continue
            self.store.availability.answered(connected)
            lost = asyncio.Event()
            loop.add_reader(socket_fd, self._on_readable, listener, lost)
            try:
                await lost.wait()
            finally:
                loop.remove_reader(socket_fd)
                with contextlib.suppress(Exception):
                    listener.close()
            await asyncio.sleep(LISTEN_RETRY_SECONDS)

    def _on_readable(self, listener: notify.Listener, lost: asyncio.Event) -> None:
        try:
            if listener.take():
                self.wake()
        except Exception:
            lost.set()

    async def _prune_loop(self) -> None:
        while True:
            try:
                moment = time.time()
                gone = await self.store.run(
                    deliveries.prune, moment - self.settings.retention, moment - IDEMPOTENCY_WINDOW
                )
                if gone:
                    log.info("retention: pruned %d deliveries older than %gs", gone, self.settings.retention)
            except Unavailable:
                pass  # told by the store; pruned at the next round
            except Exception:
                log.exception("pruning old deliveries failed")
            await asyncio.sleep(self.settings.prune_interval)

    async def _erase_loop(self) -> None:
        """Erases the secrets rotations replaced once their overlap ends; they stop signing at that moment
        anyway, and this keeps them on disk at most `erase_interval` longer (twice that for a copy that a
        transaction running at the erasure kept)."""
        erased = 0
        while True:
            await asyncio.sleep(self.settings.erase_interval)
            try:
                erased = await self.store.run(webhooks.erase_expired_secrets, erased > 0)
                if erased:
                    log.info("erased %d replaced webhook secrets whose overlap ended", erased)
            except Unavailable:
                pass  # told by the store; erased at the next round
            except Exception:
                log.exception("erasing replaced webhook secrets failed; retrying")


def _at_bound(busy: Mapping[Key, int], claimed: Counter[Key], bound: int) -> set[Key]:
    """The webhooks, or organizations, that `claimed` took up to `bound` from what was `busy`."""
    return {key for key in busy.keys() | claimed.keys() if busy.get(key, 0) + claimed[key] >= bound}


def _release_slot(busy: Counter[Any], key: Any) -> int:
    busy[key] -= 1
    left = busy[key]
    if left <= 0:
        del busy[key]
    return left


def _about(claim: Claim) -> dict[str, Any]:
    """The fields a log line about this delivery carries (logs.py)."""
    return {"webhook": claim.webhook_name, "delivery": claim.delivery_id}


def _about_attempt(claim: Claim, attempt: Attempt) -> dict[str, Any]:
    return {**_about(claim), "attempt": attempt.number, "response_code": attempt.response_code}


def _failed_attempt(claim: Claim, error: str) -> Attempt:
    return Attempt(
        number=claim.attempt_count + 1,
        start_time=datetime.now(UTC),
        request_url=claim.payload_url,
        request_headers={},
        error=error,
    )
