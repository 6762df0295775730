"""Files only their owner may read: keys, tokens and the SQLite database."""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path

# Bits that let anyone but the owner at a file; ssh refuses a private key with any of them set.
OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def private_folder(path: Path) -> None:
    """Makes `path` and its missing parents with mode 0700. Folders already there are the operator's and are
    left as they are: a shared /var/lib is theirs to set."""
    missing = list(itertools.takewhile(lambda folder: not folder.exists(), (path, *path.parents)))
    for folder in reversed(missing):
        try:
            folder.mkdir(0o700)
        except FileExistsError:
            continue
        # mkdir's mode passes through the umask; the chmod does not.
        os.chmod(folder, 0o700)


def exposure(path: Path) -> str | None:
    """None when only its owner may use `path`; otherwise what is wrong and the command that fixes it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & OPEN_TO_OTHERS:
        return None
    return f"{path} is open to other users (mode {mode:04o}); run `chmod 600 {path}`"


def _staged(path: Path, text: str) -> Path:
    """`text` in a private file beside `path`, to be moved into place whole."""
    private_folder(path.parent)
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
