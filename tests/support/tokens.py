"""API tokens and keys made with the real `webhooks tokens` and `webhooks keys` commands."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.process import webhooks_command


def tokens_command(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [webhooks_command(), "tokens", *args, "--database", database], capture_output=True, text=True, timeout=60
    )


def create_token(database: str, role: str, *organizations: str) -> str:
    """The new token, which the command prints alone on its last line."""
    flags = [item for organization in organizations for item in ("--organization", organization)]
    done = tokens_command(database, "create", "--role", role, *flags)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def create_key(key_file: Path) -> None:
    """A new deployment's key, made with `webhooks keys create`."""
    done = subprocess.run(
        [webhooks_command(), "keys", "create", "--secret-key-file", str(key_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
