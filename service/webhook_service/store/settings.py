"""The delivery settings the processes sharing this database agreed on, kept in the database itself."""

from __future__ import annotations

from collections.abc import Mapping

from webhook_service.store import statements
from webhook_service.store.database import transaction

# Processes starting together on an empty database race to store theirs: the first insert wins, the others
# wait for it and then compare with what it stored.
_INSERT = 'INSERT INTO "shared_setting" ("name", "value") VALUES (?, ?) ON CONFLICT ("name") DO NOTHING'


def agree(ours: Mapping[str, str], take_over: bool) -> dict[str, str]:
    """The settings stored, ours for any flag that had none. With `take_over`, ours replace them all; the
    values returned are still those found, so the caller can say what it replaced."""
    with transaction():
        for name, value in ours.items():
            statements.execute(_INSERT, (name, value))
        stored = dict(statements.execute('SELECT "name", "value" FROM "shared_setting"').fetchall())
        if take_over:
            for name, value in ours.items():
                if stored[name] != value:
                    statements.execute('UPDATE "shared_setting" SET "value" = ? WHERE "name" = ?', (value, name))
        return stored
