"""Webhook health: kept up to date as queued attempts are recorded, and read for a page of webhooks in a
fixed number of statements, whatever the page's size."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import peewee

from webhook_service.domain.health import first_counted_hour, hour_of, streak
from webhook_service.store import statements
from webhook_service.store.models import HourlyAttemptsRow, database
from webhook_service.store.times import now

# One statement per webhook a batch of attempts touched. A success moves last_success_time forward (never
# back: another dispatcher may have recorded a later one) and settles failing_since to the failures that
# followed it; failures alone start failing_since unless it runs already, and then leave the row unwritten.
_UPDATE_WEBHOOK = """UPDATE "webhook" SET
    "last_success_time" = CASE WHEN ? IS NULL OR "last_success_time" > ? THEN "last_success_time" ELSE ? END,
    "failing_since" = CASE WHEN ? IS NULL THEN COALESCE("failing_since", ?) ELSE ? END
WHERE "id" = ? AND (? IS NOT NULL OR "failing_since" IS NULL)"""

_COUNT_HOUR = """INSERT INTO "webhook_hourly_attempts" ("webhook_id", "hour", "succeeded", "failed") VALUES (?, ?, ?, ?)
ON CONFLICT ("webhook_id", "hour") DO UPDATE SET
    "succeeded" = "webhook_hourly_attempts"."succeeded" + excluded."succeeded",
    "failed" = "webhook_hourly_attempts"."failed" + excluded."failed\""""

# Locked in order of their keys, as the statements below write them.
_LOCK_WEBHOOKS = 'SELECT "id" FROM "webhook" WHERE "id" IN ({ids}) ORDER BY "id" FOR NO KEY UPDATE'

# 'pending' is written out so the partial index of pending deliveries applies: the count reads that index
# alone, never the table.
_PENDING = (
    'SELECT "webhook_id", COUNT(*) FROM "delivery" WHERE "state" = \'pending\' AND "webhook_id" IN ({ids})'
    ' GROUP BY "webhook_id"'
)
_COUNTS = (
    'SELECT "webhook_id", SUM("succeeded"), SUM("failed") FROM "webhook_hourly_attempts"'
    ' WHERE "webhook_id" IN ({ids}) AND "hour" >= ? GROUP BY "webhook_id"'
)
# Well under any engine's limit on parameters.
_IDS_PER_STATEMENT = 500


def lock(webhooks: Iterable[int]) -> None:
    """On PostgreSQL, locks the webhook rows whose health a record is about to change, before the record
    touches their deliveries: a webhook's delete locks the webhook, then its deliveries (the cascade), so
    the two take their locks in the same order and one waits for the other rather than deadlock. SQLite's
    single writer needs no such care."""
    if isinstance(database.obj, peewee.SqliteDatabase):
        return
    for chunk in statements.batches(sorted(set(webhooks)), _IDS_PER_STATEMENT):
        statements.execute(_LOCK_WEBHOOKS.format(ids=statements.placeholders(len(chunk))), chunk)


def record(attempts: Iterable[tuple[int, float, bool]]) -> None:
    """Counts queued attempts, each given as (webhook row, when it ended, whether it succeeded), inside the
    caller's transaction, which `lock`ed their webhooks.

    Rows are written in the order of their keys, webhooks first, so two dispatchers recording at once
    on PostgreSQL wait for each other rather than deadlock.
    """
    by_webhook: dict[int, list[tuple[float, bool]]] = {}
    hours: dict[tuple[int, int], list[int]] = {}
    for webhook, ended, succeeded in attempts:
        by_webhook.setdefault(webhook, []).append((ended, succeeded))
        counts = hours.setdefault((webhook, hour_of(ended)), [0, 0])
        counts[0 if succeeded else 1] += 1
    updates = []
    for webhook in sorted(by_webhook):
        found = streak(by_webhook[webhook])
        success, failing = found.last_success, found.failing_since
        updates.append((success, success, success, success, failing, failing, webhook, success))
    statements.execute_many(_UPDATE_WEBHOOK, updates)
    statements.execute_many(_COUNT_HOUR, [(*key, *hours[key]) for key in sorted(hours)])


@dataclass(frozen=True)
class Counts:
    pending: int = 0
    succeeded_24h: int = 0
    failed_24h: int = 0


def counts(webhooks: Sequence[int]) -> dict[int, Counts]:
    """The pending deliveries and the 24-hour attempt counts of these webhook rows (absent: none), in two
    statements per 500 webhooks."""
    pending: dict[int, int] = {}
    hourly: dict[int, tuple[int, int]] = {}
    first_hour = first_counted_hour(now())
    for chunk in statements.batches(webhooks, _IDS_PER_STATEMENT):
        ids = statements.placeholders(len(chunk))
        pending.update(statements.execute(_PENDING.format(ids=ids), chunk).fetchall())
        for webhook, succeeded, failed in statements.execute(_COUNTS.format(ids=ids), [*chunk, first_hour]):
            hourly[webhook] = (int(succeeded), int(failed))
    return {webhook: Counts(pending.get(webhook, 0), *hourly.get(webhook, (0, 0))) for webhook in {*pending, *hourly}}


def prune() -> int:
    """Deletes the hours the 24-hour counts no longer cover; returns how many."""
    return int(HourlyAttemptsRow.delete().where(HourlyAttemptsRow.hour < first_counted_hour(now())).execute())
