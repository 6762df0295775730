"""Errors the service raises for callers; the API layer turns each into one gRPC status."""

from __future__ import annotations


class ServiceError(Exception):
    """A failure the caller can act on; its message is safe to show them."""


class InvalidArgument(ServiceError):
    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


class NotFound(ServiceError):
    pass


class AlreadyExists(ServiceError):
    pass


class FailedPrecondition(ServiceError):
    """The resource is not in a state that allows the call now; the caller may retry once it is."""


class PermissionDenied(ServiceError):
    pass


class Unauthenticated(ServiceError):
    pass


class ResourceExhausted(ServiceError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(ServiceError):
    """The database or another dependency cannot be reached right now; retrying may work."""
