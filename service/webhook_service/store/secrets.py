"""Webhook secrets at rest: encrypted with the operator's key, so a copy of the database alone reveals none."""

from __future__ import annotations

import hashlib
import hmac
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from webhook_service.files import create_private, exposure

# Stored values carry their scheme, so a later key or cipher can sit beside this one.
PREFIX = "fernet:"
MAX_OPENED = 10_000


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        # Its own key, derived from the operator's, so the cipher and the digests never share one.
        self._fingerprint_key = hmac.new(key, b"webhook-service request fingerprints", hashlib.sha256).digest()
        # Every delivery needs its webhook's secret, and decrypting costs more than the rest of a claim.
        self._opened: dict[str, str] = {}

    def seal(self, secret: str) -> str:
        return PREFIX + self._fernet.encrypt(secret.encode("utf-8")).decode("ascii") if secret else ""

    def fingerprint(self, data: bytes) -> str:
        """A digest of `data` keyed by the operator's key: stored beside the sealed secrets, a fingerprint of a
        request that carries a secret lets no one with a copy of the database test guesses of that secret."""
        return hmac.new(self._fingerprint_key, data, hashlib.sha256).hexdigest()

    def open(self, stored: str) -> str:
        if not stored:
            return ""
        opened = self._opened.get(stored)
        if opened is not None:
            return opened
        if not stored.startswith(PREFIX):
            raise ValueError("a webhook secret is stored unencrypted; start the service once to encrypt it")
        try:
            opened = self._fernet.decrypt(stored.removeprefix(PREFIX).encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ValueError("a webhook secret cannot be decrypted with this --secret-key-file") from None
        if len(self._opened) >= MAX_OPENED:
            self._opened.clear()
        self._opened[stored] = opened
        return opened


def create_key(path: Path) -> bool:
    """Writes a new key to `path`, readable by its owner only, unless a file is there; False when one was."""
    return create_private(path, Fernet.generate_key().decode("ascii") + "\n")


def load_key(path: Path) -> bytes:
    """The key in `path`; refuses a key file that is missing or that other users may read."""
    if not path.exists():
        raise RuntimeError(
            f"the key file {path} does not exist, and only a first `webhooks serve` on an empty database makes "
            f"one: copy it from the machine that made it, or run `webhooks keys create --secret-key-file {path}` "
            "if this deployment has none yet"
        )
    problem = exposure(path)
    if problem is not None:
        raise RuntimeError(f"refusing the key that encrypts webhook secrets: {problem}")
    return path.read_bytes().strip()


_thread = threading.local()


def bind_thread(box: SecretBox) -> None:
    """The calling thread seals and opens with `box`: each store's query threads carry their process's key,
    so services with different keys can share a process."""
    _thread.box = box


def box() -> SecretBox:
    found: SecretBox | None = getattr(_thread, "box", None)
    if found is None:
        raise RuntimeError("webhook secrets need a key: this thread has none bound (store.secrets.bind_thread)")
    return found
