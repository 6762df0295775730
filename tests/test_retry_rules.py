"""The pure rules behind retries: schedules, jitter, Retry-After, verdicts, durations."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook_service.domain.durations import parse_duration, parse_schedule
from webhook_service.domain.model import DeliveryState
from webhook_service.domain.retries import MAX_RETRY_AFTER, judge, next_delay, parse_retry_after

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SCHEDULE = parse_schedule("0s,5s,5m,30m,2h,5h,10h,10h")


def test_default_schedule_parses_to_seconds() -> None:
    assert SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("15s", 15), ("5m", 300), ("2h", 7200), ("5d", 432000)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "-1s", "1.s", "s"])
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="500ms, 15s, 5m, 2h or 5d"):
        parse_duration(text)


def test_delays_are_jittered_within_twenty_percent() -> None:
    rng = random.Random(7)
    delays = [next_delay(SCHEDULE, 2, rng=rng) for _ in range(2000)]
    assert all(d is not None and 240 <= d <= 360 for d in delays)
    assert max(d for d in delays if d is not None) - min(d for d in delays if d is not None) > 100
    assert next_delay(SCHEDULE, 0) == 0


def test_no_delay_after_the_last_attempt() -> None:
    assert next_delay(SCHEDULE, len(SCHEDULE)) is None


def test_retry_after_lengthens_but_is_bounded() -> None:
    rng = random.Random(1)
    assert next_delay((0, 5), 1, retry_after=120, rng=rng) == 120
    assert next_delay((0, 5), 1, retry_after=10**9, rng=rng) == 3600
    delay = next_delay((0, 300), 1, retry_after=1, rng=rng)
    assert delay is not None and delay >= 240


def test_retry_after_forms() -> None:
    assert parse_retry_after("120", NOW) == 120
    http_date = (NOW + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(http_date, NOW) == 90
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", NOW) == 0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        # Digits to str.isdigit(), but not to float() or HTTP.
        ("²", None),
        ("①", None),
        ("٣", None),
        ("9" * 400, MAX_RETRY_AFTER),
        ("9" * 5000, MAX_RETRY_AFTER),
        ("3601", MAX_RETRY_AFTER),
        ("0007", 7),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
        ("Wed, 21 Oct 2015 07:28:00 +9999", None),
        ("1e3", None),
        ("-5", None),
        ("\\xff", None),
    ],
)
def test_retry_after_from_a_hostile_receiver_is_bounded_or_ignored(text: str, seconds: float | None) -> None:
    assert parse_retry_after(text, NOW) == seconds


@given(st.text())
def test_any_retry_after_gives_a_bounded_delay_or_none(text: str) -> None:
    seconds = parse_retry_after(text, NOW)
    assert seconds is None or 0 <= seconds <= MAX_RETRY_AFTER


@pytest.mark.parametrize(
    ("status", "made", "state", "retry", "gone"),
    [
        (200, 1, DeliveryState.SUCCEEDED, False, False),
        (204, 8, DeliveryState.SUCCEEDED, False, False),
        (301, 1, DeliveryState.PENDING, True, False),
        (0, 1, DeliveryState.PENDING, True, False),
        (500, 7, DeliveryState.PENDING, True, False),
        (500, 8, DeliveryState.FAILED, False, False),
        (410, 1, DeliveryState.FAILED, False, True),
    ],
)
def test_verdicts(status: int, made: int, state: DeliveryState, retry: bool, gone: bool) -> None:
    verdict = judge(status, None, made, SCHEDULE)
    assert verdict.state == state
    assert (verdict.delay is not None) == retry
    assert verdict.gone == gone
    assert verdict.succeeded == (state == DeliveryState.SUCCEEDED)


def test_retry_after_counts_only_for_429_and_503() -> None:
    rng = random.Random(3)
    assert judge(429, 600, 1, (0, 5), rng).delay == 600
    assert judge(503, 600, 1, (0, 5), rng).delay == 600
    delay = judge(500, 600, 1, (0, 5), rng).delay
    assert delay is not None and delay < 10
