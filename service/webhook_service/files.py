"""Files only their owner may read: keys and tokens."""

from __future__ import annotations

import os
from pathlib import Path


def _staged(path: Path, text: str) -> Path:
    """`text` in a private file beside `path`, to be moved into place whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    os.chmod(partial, 0o600)
    return partial


def write_private(path: Path, text: str) -> None:
    """Writes `text` to `path` with mode 0600, replacing the file atomically."""
    os.replace(_staged(path, text), path)


def create_private(path: Path, text: str) -> bool:
    """Writes `text` to `path` with mode 0600 unless the file exists; False when it did.

    Processes starting together race safely: exactly one file wins, whole, and all of them read it.
    """
    partial = _staged(path, text)
    try:
        os.link(partial, path)
    except FileExistsError:
        return False
    finally:
        partial.unlink()
    return True
