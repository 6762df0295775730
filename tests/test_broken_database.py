"""A database that cannot be opened, or is damaged, stops every command with one line naming it and status 1,
and a dispatcher that keeps failing on it says so once rather than with a traceback at every poll.

Damaged files are SQLite's alone: on PostgreSQL the unusable database is one the server does not have."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

from tests import seed
from tests.helpers import make_webhook, publish, wait_for_delivery
from tests.support.databases import Databases, PostgresDatabases
from tests.support.process import ServiceProcess, webhooks_command
from tests.support.receiver import Receiver
from webhooks_client import Client

COMMANDS = (
    ("serve", "--listen", "127.0.0.1:0"),
    ("dispatch",),
    ("tokens", "list"),
    ("tokens", "create", "--role", "admin", "--organization", "*"),
    ("tokens", "revoke", "tok-1"),
)
CLAIM_FAILED = "claiming deliveries failed"


def stopped(cwd: Path, *args: str) -> str:
    """The one error line a `webhooks` command in `cwd` must stop with, last, with status 1 and no traceback."""
    done = subprocess.run(
        [webhooks_command(), *args], capture_output=True, text=True, cwd=cwd, timeout=60, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert [line for line in lines if "ERROR" in line] == lines[-1:], done.stderr
    return lines[-1]


def test_a_database_that_cannot_be_opened_stops_every_command_with_one_line(
    tmp_path: Path, databases: Databases
) -> None:
    if isinstance(databases, PostgresDatabases):
        name = f"missing_{uuid.uuid4().hex[:8]}"
        url, named = databases.cluster.url(name), f"postgresql 127.0.0.1:{databases.cluster.port}/{name}"
        advice = "check the --database URL and that the server is up"
    else:
        # A folder where the file should be: what SQLite cannot open whoever runs the test (root reads anything).
        folder = tmp_path / "webhooks.db"
        folder.mkdir()
        url, named = f"sqlite:///{folder}", f"sqlite {folder}"
        advice = "check that it is an SQLite file this user may read and write"
    for command in COMMANDS:
        line = stopped(tmp_path, *command, "--database", url)
        assert f"cannot use the database {named} (" in line
        assert advice in line


def test_a_file_that_is_not_a_database_stops_every_command_with_one_line(tmp_path: Path) -> None:
    database = tmp_path / "webhooks.db"
    database.write_bytes(b"not a database; " * 512)
    for command in COMMANDS:
        line = stopped(tmp_path, *command, "--database", f"sqlite:///{database}")
        assert f"the database sqlite {database} is damaged (file is not a database): restore it from a backup" in line


def damage(database: Path, table: str) -> None:
    """Overwrites the root pages of `table` and of its indexes, in the middle of a file whose other pages stay
    intact, as a failing disk would."""
    assert not Path(f"{database}-wal").exists(), "the service left a write-ahead log: pages there would win"
    with sqlite3.connect(database) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = [page for (page,) in db.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = ?", (table,))]
        count = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    assert pages and all(1 < page < count for page in pages), (pages, count)
    with database.open("r+b") as out:
        for page in pages:
            out.seek((page - 1) * page_size)
            out.write(b"\xff" * page_size)


def test_damaged_pages_mid_file_are_reported_once_not_at_every_poll(tmp_path: Path, receiver: Receiver) -> None:
    database = tmp_path / "webhooks.db"
    url = f"sqlite:///{database}"
    serve = ("serve", "--listen", "127.0.0.1:0", "--database", url, "--allow-network", "127.0.0.0/8")
    service = ServiceProcess(serve, cwd=tmp_path)
    try:
        with Client(service.target, token=service.admin_token) as client:
            make_webhook(client, "organizations/crazy-adventures", receiver.url("/damaged"))
            names = [publish(client, seed.update_event()).deliveries[0] for _ in range(40)]
            for name in names:
                wait_for_delivery(client, name)
    finally:
        assert service.terminate() == 0

    tokens_damaged = tmp_path / "tokens-damaged.db"
    shutil.copyfile(database, tokens_damaged)
    damage(database, "delivery")
    service = ServiceProcess(serve, cwd=tmp_path)
    try:
        service.wait_for_log(CLAIM_FAILED, timeout=30)
        # The hourly prune fails on the same pages, once, at start.
        service.wait_for_log("pruning old deliveries failed", timeout=30)
        tracebacks = service.log.count("Traceback")
        # Eight polls at least: a traceback at each is what this replaces.
        time.sleep(2)
        assert service.log.count(CLAIM_FAILED) == 1, service.log
        assert "database disk image is malformed" in service.log
        assert service.log.count("Traceback") == tracebacks, service.log
    finally:
        assert service.terminate() == 0

    damage(tokens_damaged, "api_token")
    # The serve that stored the database's delivery settings opened loopback; this one agrees with it.
    for command in ((*COMMANDS[0], "--allow-network", "127.0.0.0/8"), COMMANDS[2]):
        line = stopped(tmp_path, *command, "--database", f"sqlite:///{tokens_damaged}")
        assert f"the database sqlite {tokens_damaged} is damaged (database disk image is malformed)" in line
