"""Errors the service raises for callers; each front door turns each into one status of its own.

Every error has a `reason`: a stable UPPER_SNAKE_CASE word a program can act on (`google.rpc.ErrorInfo`
on gRPC). Specific reasons are the `Reason` values; an error raised without one has its class's, which
is the name of its status code (`NOT_FOUND`, ...). An InvalidArgument lists every violation of a request,
each with its own field path and reason.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# The `domain` of the service's reasons (google.rpc.ErrorInfo), also the service name in its resource types.
DOMAIN = "webhooks.internal"
# Violations one error lists at most: a request of a million bad filter entries gets a short answer.
MAX_VIOLATIONS = 50


class Reason(enum.StrEnum):
    """The specific reasons, each listed in the README; released ones never change meaning."""

    # INVALID_ARGUMENT, on the whole error (the first violation's) and on each violation.
    FIELD_REQUIRED = "FIELD_REQUIRED"
    FIELD_TOO_LARGE = "FIELD_TOO_LARGE"
    INVALID_NAME = "INVALID_NAME"
    INVALID_URL = "INVALID_URL"
    BLOCKED_ADDRESS = "BLOCKED_ADDRESS"
    INVALID_ENUM_VALUE = "INVALID_ENUM_VALUE"
    FILTER_NOT_ALLOWED = "FILTER_NOT_ALLOWED"
    INVALID_UPDATE_MASK = "INVALID_UPDATE_MASK"
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    INVALID_TIME = "INVALID_TIME"
    # NOT_FOUND
    WEBHOOK_NOT_FOUND = "WEBHOOK_NOT_FOUND"
    DELIVERY_NOT_FOUND = "DELIVERY_NOT_FOUND"
    # ALREADY_EXISTS
    WEBHOOK_ALREADY_EXISTS = "WEBHOOK_ALREADY_EXISTS"
    # FAILED_PRECONDITION
    DELIVERY_IN_FLIGHT = "DELIVERY_IN_FLIGHT"
    WEBHOOK_INACTIVE = "WEBHOOK_INACTIVE"
    # ABORTED
    ETAG_MISMATCH = "ETAG_MISMATCH"
    # PERMISSION_DENIED
    OPERATION_NOT_ALLOWED = "OPERATION_NOT_ALLOWED"
    ORGANIZATION_NOT_ALLOWED = "ORGANIZATION_NOT_ALLOWED"
    # UNAUTHENTICATED
    TOKEN_MISSING = "TOKEN_MISSING"
    TOKEN_MALFORMED = "TOKEN_MALFORMED"
    TOKEN_INVALID = "TOKEN_INVALID"
    # RESOURCE_EXHAUSTED
    RATE_LIMITED = "RATE_LIMITED"
    TOO_MANY_FAILED_AUTHENTICATIONS = "TOO_MANY_FAILED_AUTHENTICATIONS"
    SERVER_OVERLOADED = "SERVER_OVERLOADED"
    WEBHOOK_LIMIT_REACHED = "WEBHOOK_LIMIT_REACHED"
    # UNAVAILABLE
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"


class ServiceError(Exception):
    """A failure the caller can act on; its message is safe to show them."""

    # What an error of the class says when raised without a reason of its own.
    reason: str = "UNKNOWN"

    def __init__(self, message: str = "", reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


@dataclass(frozen=True)
class Violation:
    """One thing wrong with a request: `field` is a path into it (`webhook.filters[2]`)."""

    field: str
    description: str
    reason: str = "INVALID_ARGUMENT"


class InvalidArgument(ServiceError):
    """The request is wrong; `violations` says everywhere it is, `field` and `description` the first place."""

    reason = "INVALID_ARGUMENT"

    def __init__(
        self, field: str, description: str, reason: str | None = None, *, further: Sequence[Violation] = ()
    ) -> None:
        first = Violation(field, description, reason or type(self).reason)
        self.violations: tuple[Violation, ...] = (first, *further)
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in self.violations), first.reason)
        self.field = field
        self.description = description

    @classmethod
    def of(cls, violations: Sequence[Violation]) -> InvalidArgument:
        first, *further = violations
        return cls(first.field, first.description, first.reason, further=further)


class Violations:
    """Gathers every violation of one request, so the caller hears of all of them at once.

    Rules that raise InvalidArgument run through `check`, which keeps their violations and lets the
    next rule run; `raise_any` then raises them together. It keeps MAX_VIOLATIONS at most.
    """

    def __init__(self, found: Iterable[Violation] = ()) -> None:
        self.found: list[Violation] = []
        for violation in found:
            self._keep(violation)

    @property
    def full(self) -> bool:
        """Whether looking for more violations is pointless: no more would be kept."""
        return len(self.found) >= MAX_VIOLATIONS

    def _keep(self, violation: Violation) -> None:
        if not self.full:
            self.found.append(violation)

    def add(self, field: str, description: str, reason: str = InvalidArgument.reason) -> None:
        self._keep(Violation(field, description, reason))

    def check(self, rule: Callable[..., T], *args: object) -> T | None:
        """What `rule(*args)` returns, or None when it raised InvalidArgument, whose violations are kept."""
        try:
            return rule(*args)
        except InvalidArgument as error:
            for violation in error.violations:
                self._keep(violation)
            return None

    def raise_any(self) -> None:
        if self.full:
            note = Violation("request", f"may have more violations than the first {MAX_VIOLATIONS} listed")
            raise InvalidArgument.of([*self.found, note])
        if self.found:
            raise InvalidArgument.of(self.found)


class NotFound(ServiceError):
    reason = "NOT_FOUND"


class AlreadyExists(ServiceError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(ServiceError):
    """The resource is not in a state that allows the call now; the caller may retry once it is."""

    reason = "FAILED_PRECONDITION"


class Aborted(ServiceError):
    """The call lost a race with another change (a stale etag): read again, then retry."""

    reason = Reason.ETAG_MISMATCH


class PermissionDenied(ServiceError):
    reason = "PERMISSION_DENIED"


class Unauthenticated(ServiceError):
    reason = "UNAUTHENTICATED"


class ResourceExhausted(ServiceError):
    reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after: float | None = None, reason: str | None = None) -> None:
        super().__init__(message, reason)
        self.retry_after = retry_after


class Unavailable(ServiceError):
    """The database or another dependency cannot be reached right now; retrying may work."""

    reason = "UNAVAILABLE"
