"""Console sessions: the browser holds a random session ID; the API token it stands for stays in this process.

The token never travels back to the browser after sign-in, and signing out ends the session at once rather
than only forgetting a cookie. Sessions live in memory, so a restart signs everyone out, and each API server
has its own: behind several, send each person to one of them (sticky sessions).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

# A session ends this long after sign-in, however busy; the cookie says the same.
SESSION_SECONDS = 8 * 3600
# Past this many sessions the oldest makes room, so sign-ins cannot grow the process without bound.
MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class Session:
    token: str = field(repr=False)
    # Every form of the session carries it; a POST without it did not come from a page the console served.
    csrf: str
    expires: float


def same_secret(expected: str, given: str) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())


class Sessions:
    def __init__(
        self,
        seconds: float = SESSION_SECONDS,
        entries: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self._entries = entries
        self._clock = clock
        # In order of sign-in, which with one lifetime for all is also the order they expire in.
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def start(self, token: str) -> str:
        """A new session for `token`; returns its ID, for the cookie."""
        moment = self._clock()
        while self._sessions and next(iter(self._sessions.values())).expires <= moment:
            self._sessions.popitem(last=False)
        session_id = secrets.token_urlsafe(32)
        self._sessions[session_id] = Session(token, secrets.token_urlsafe(32), moment + self.seconds)
        if len(self._sessions) > self._entries:
            self._sessions.popitem(last=False)
        return session_id

    def find(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is not None and session.expires <= self._clock():
            self.end(session_id)
            return None
        return session

    def end(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
