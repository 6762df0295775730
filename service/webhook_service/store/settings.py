"""The delivery settings the processes sharing this database agreed on, kept in the database itself."""

from __future__ import annotations

from collections.abc import Mapping

from webhook_service.store import statements
from webhook_service.store.database import transaction


def agree(ours: Mapping[str, str], take_over: bool) -> dict[str, str]:
    """The settings stored before this call (empty on a first start). Ours are written when there were none,
    when `take_over` says so, and for flags the stored ones lack."""
    with transaction():
        stored = dict(statements.execute('SELECT "name", "value" FROM "shared_setting"').fetchall())
        for name, value in ours.items():
            if name not in stored:
                statements.execute('INSERT INTO "shared_setting" ("name", "value") VALUES (?, ?)', (name, value))
            elif take_over and stored[name] != value:
                statements.execute('UPDATE "shared_setting" SET "value" = ? WHERE "name" = ?', (value, name))
        return stored
