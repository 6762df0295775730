"""Who may call what: API tokens, their roles and the organizations they reach."""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass

from webhook_service.domain.errors import PermissionDenied, Reason, Unauthenticated
from webhook_service.domain.names import ORGANIZATION_RE, SEGMENT_RULE

TOKEN_PREFIX = "whk_"
ALL_ORGANIZATIONS = "*"


class Role(enum.StrEnum):
    ADMIN = "admin"
    PUBLISHER = "publisher"
    READER = "reader"


# The operations each role may call, named as the gRPC methods are; admin may call every operation.
# TestEventMatch shows which webhooks an event would reach, with their settings (never a secret): what the
# listings show, so it is a read.
_READS = frozenset(
    {
        "GetWebhook",
        "ListWebhooks",
        "GetWebhookDelivery",
        "ListWebhookDeliveries",
        "WatchWebhookDeliveries",
        "TestEventMatch",
    }
)
ROLE_METHODS: dict[Role, frozenset[str] | None] = {
    Role.ADMIN: None,
    Role.PUBLISHER: frozenset({"PublishEvent"}),
    Role.READER: _READS,
}


@dataclass(frozen=True)
class Principal:
    """The caller behind a token; `organizations` None means every organization."""

    token_id: str
    role: Role
    organizations: frozenset[str] | None

    def may_call(self, method: str) -> bool:
        allowed = ROLE_METHODS[self.role]
        return allowed is None or method in allowed

    def may_touch(self, organization: str) -> bool:
        return self.organizations is None or organization in self.organizations


# Serving without authentication acts as this principal.
UNAUTHENTICATED_ADMIN = Principal("no-auth", Role.ADMIN, None)


def check_operation(caller: Principal, operation: str) -> None:
    """Refuses an operation the caller's role does not allow; checked before anything else is read."""
    if not caller.may_call(operation):
        raise PermissionDenied(f"a {caller.role} token may not call {operation}", Reason.OPERATION_NOT_ALLOWED)


def check_reach(caller: Principal, organization: str) -> None:
    """Refuses an organization the caller's token does not reach."""
    if not caller.may_touch(organization):
        raise PermissionDenied(
            f"this token has no access to organization {organization!r}", Reason.ORGANIZATION_NOT_ALLOWED
        )


def token_from_metadata(value: str | None) -> str:
    """The token in an `authorization` value: `Bearer <token>`, or Pulumi's `token <token>`."""
    if not value:
        raise Unauthenticated(
            "missing authorization metadata: send 'authorization: Bearer <token>'", Reason.TOKEN_MISSING
        )
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() not in ("bearer", "token") or not token.strip():
        raise Unauthenticated("authorization must be 'Bearer <token>' or 'token <token>'", Reason.TOKEN_MALFORMED)
    return token.strip()


def hash_token(token: str) -> str:
    """Tokens are 256 random bits, so a plain SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh (token ID, token); the ID is public, the token is shown once."""
    return secrets.token_hex(6), TOKEN_PREFIX + secrets.token_urlsafe(32)


def parse_organizations(values: list[str]) -> frozenset[str] | None:
    """The organizations of --organization flags, one each; None for every organization (*)."""
    if not values:
        raise ValueError("name at least one --organization, or * for every organization")
    for value in values:
        if value != ALL_ORGANIZATIONS and ORGANIZATION_RE.fullmatch(value) is None:
            raise ValueError(
                f"--organization {value!r} is not an organization name ({SEGMENT_RULE}); "
                "give each organization its own --organization"
            )
    if ALL_ORGANIZATIONS in values:
        return None
    return frozenset(values)
