"""The files the service keeps (database, key, admin token) are its owner's alone, and the key is never made
behind the operator's back: only a first `serve` on an empty database, or `webhooks keys create`, makes one."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from tests.helpers import make_webhook
from tests.support.databases import Databases
from tests.support.process import ServiceProcess, webhooks_command
from tests.support.tokens import create_key, create_token
from webhooks_client import Client

SERVE = ("serve", "--listen", "127.0.0.1:0")
KEY = Path("data/secret.key")
ADMIN_TOKEN = Path("data/admin-token")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def refused(cwd: Path, *args: str) -> str:
    """The output of a `webhooks` command in `cwd` that must stop with status 1."""
    done = subprocess.run(
        [webhooks_command(), *args], capture_output=True, text=True, cwd=cwd, timeout=60, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout + done.stderr


def first_start(cwd: Path, url: str) -> None:
    """A first `serve` in `cwd` on `url` that stores a webhook, then stops: the database now holds data."""
    service = ServiceProcess([*SERVE, "--database", url], cwd=cwd)
    try:
        with Client(service.target, token=service.admin_token) as client:
            make_webhook(client, "organizations/acme", "https://example.com/hook", secret="s3cr3t")
    finally:
        assert service.terminate() == 0


def test_files_the_service_makes_are_its_owners_alone(tmp_path: Path, databases: Databases) -> None:
    # SQLite in its default place, so the service makes the folder as well as the files in it.
    url = "sqlite:///data/webhooks.db" if databases.engine == "sqlite" else databases.new(tmp_path)
    service = ServiceProcess([*SERVE, "--database", url], cwd=tmp_path)
    try:
        data = tmp_path / "data"
        made = {data / name for name in ("secret.key", "admin-token")}
        if databases.engine == "sqlite":
            # While it runs, in WAL mode, the database is three files, and its writers take turns on a fourth.
            made |= {
                data / name for name in ("webhooks.db", "webhooks.db-wal", "webhooks.db-shm", "webhooks.db-writer")
            }
        assert {path: mode(path) for path in data.iterdir()} == {path: 0o600 for path in made}
        assert mode(data) == 0o700
    finally:
        assert service.terminate() == 0


def test_folders_given_to_the_service_keep_their_mode_and_folders_it_makes_are_private(tmp_path: Path) -> None:
    shared = tmp_path / "var-lib"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    database = shared / "webhooks.db"
    done = subprocess.run(
        [webhooks_command(), "tokens", "list", "--database", f"sqlite:///{database}"], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert mode(shared) == 0o755
    assert mode(database) == 0o600

    key = tmp_path / "etc" / "webhooks" / "secret.key"
    create_key(key)
    assert (mode(tmp_path / "etc"), mode(key.parent), mode(key)) == (0o700, 0o700, 0o600)


def test_a_key_file_others_may_read_is_refused_and_an_admin_token_file_warned_about(
    tmp_path: Path, databases: Databases
) -> None:
    url = databases.new(tmp_path)
    first_start(tmp_path, url)
    (tmp_path / ADMIN_TOKEN).chmod(0o644)
    service = ServiceProcess([*SERVE, "--database", url], cwd=tmp_path)
    try:
        assert f"WARNING webhook_service.server: the admin token file {ADMIN_TOKEN} is open to other users" in (
            service.log
        )
        assert f"run `chmod 600 {ADMIN_TOKEN}`" in service.log
    finally:
        assert service.terminate() == 0

    (tmp_path / KEY).chmod(0o640)
    for command in (SERVE, ("dispatch",)):
        output = refused(tmp_path, *command, "--database", url)
        assert f"{KEY} is open to other users (mode 0640); run `chmod 600 {KEY}`" in output
    (tmp_path / KEY).chmod(0o600)
    assert ServiceProcess([*SERVE, "--database", url], cwd=tmp_path).terminate() == 0


def test_a_missing_key_is_made_only_by_a_first_serve_on_an_empty_database(tmp_path: Path, databases: Databases) -> None:
    # A dispatcher never makes one, even on an empty database.
    empty = databases.new(tmp_path / "empty")
    output = refused(tmp_path, "dispatch", "--database", empty)
    assert f"the key file {KEY} does not exist" in output
    assert f"webhooks keys create --secret-key-file {KEY}" in output
    assert not (tmp_path / KEY).exists()

    # A database holding webhooks and tokens has a key somewhere: a new one would open none of its secrets.
    url = databases.new(tmp_path)
    first_start(tmp_path, url)
    original = (tmp_path / KEY).read_bytes()
    (tmp_path / KEY).unlink()
    for command in (SERVE, ("dispatch",)):
        output = refused(tmp_path, *command, "--database", url)
        assert f"the key file {KEY} does not exist" in output
        assert "copy it from the machine that made it" in output
        assert not (tmp_path / KEY).exists()
    (tmp_path / KEY).write_bytes(original)
    (tmp_path / KEY).chmod(0o600)
    assert ServiceProcess([*SERVE, "--database", url], cwd=tmp_path).terminate() == 0


def test_a_database_with_only_tokens_is_no_first_start(tmp_path: Path, databases: Databases) -> None:
    url = databases.new(tmp_path)
    create_token(url, "admin", "*")
    output = refused(tmp_path, *SERVE, "--database", url)
    assert f"the key file {KEY} does not exist" in output
    assert not (tmp_path / KEY).exists()


def test_keys_create_makes_a_key_once_and_serve_uses_it(tmp_path: Path, databases: Databases) -> None:
    done = subprocess.run(
        [webhooks_command(), "keys", "create"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert f"created the key that encrypts webhook secrets: {KEY}" in done.stdout
    key = (tmp_path / KEY).read_bytes()
    assert mode(tmp_path / KEY) == 0o600

    output = refused(tmp_path, "keys", "create", "--secret-key-file", str(KEY))
    assert f"{KEY} exists and is kept" in output
    assert (tmp_path / KEY).read_bytes() == key

    service = ServiceProcess([*SERVE, "--database", databases.new(tmp_path)], cwd=tmp_path)
    try:
        assert "created the key" not in service.log
        assert (tmp_path / KEY).read_bytes() == key
    finally:
        assert service.terminate() == 0
