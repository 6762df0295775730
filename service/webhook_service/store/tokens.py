"""API tokens: stored as hashes, looked up by hash, revoked by ID."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from webhook_service.domain.access import ALL_ORGANIZATIONS, Principal, Role, hash_token, new_token
from webhook_service.domain.errors import NotFound
from webhook_service.store.database import transaction
from webhook_service.store.models import TokenRow
from webhook_service.store.times import now, to_datetime


@dataclass(frozen=True)
class TokenInfo:
    principal: Principal
    description: str
    create_time: datetime | None
    revoke_time: datetime | None


def _principal(row: TokenRow) -> Principal:
    organizations = None if row.organizations == ALL_ORGANIZATIONS else frozenset(row.organizations.split(","))
    return Principal(row.token_id, Role(row.role), organizations)


def _insert(role: Role, organizations: frozenset[str] | None, description: str) -> tuple[TokenInfo, str]:
    token_id, token = new_token()
    row = TokenRow.create(
        token_id=token_id,
        token_hash=hash_token(token),
        role=role.value,
        organizations=ALL_ORGANIZATIONS if organizations is None else ",".join(sorted(organizations)),
        description=description,
        create_time=now(),
    )
    return _info(row), token


def create(role: Role, organizations: frozenset[str] | None, description: str = "") -> tuple[TokenInfo, str]:
    """A new token and its details; the token itself exists only in the return value."""
    with transaction():
        return _insert(role, organizations, description)


def create_first_admin() -> str | None:
    """An admin token for every organization when no token was ever made; None otherwise."""
    with transaction():
        if TokenRow.select().exists():
            return None
        return _insert(Role.ADMIN, None, "created at first start")[1]


def find(token: str) -> Principal | None:
    row = TokenRow.get_or_none((TokenRow.token_hash == hash_token(token)) & TokenRow.revoke_time.is_null())
    return None if row is None else _principal(row)


def list_all() -> list[TokenInfo]:
    return [_info(row) for row in TokenRow.select().order_by(TokenRow.id)]


def revoke(token_id: str) -> TokenInfo:
    with transaction():
        row = TokenRow.get_or_none(TokenRow.token_id == token_id)
        if row is None:
            raise NotFound(f"token {token_id} does not exist")
        if row.revoke_time is None:
            row.revoke_time = now()
            row.save()
        return _info(row)


def _info(row: TokenRow) -> TokenInfo:
    return TokenInfo(_principal(row), row.description, to_datetime(row.create_time), to_datetime(row.revoke_time))
