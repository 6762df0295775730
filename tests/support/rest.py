"""A plain HTTP client for the REST API (http.client from the standard library), as a script would call it."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

from tests.support.running import RunningServer


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Rest:
    """Calls `/api` on the server's HTTP port with `authorization` (`token <t>` as Pulumi's clients send it,
    or `Bearer <t>`; None sends no Authorization header)."""

    def __init__(self, server: RunningServer, authorization: str | None) -> None:
        assert server.server.http is not None, "this server has no HTTP listener"
        self.port = server.server.http.port
        self.authorization = authorization

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Answer:
        """`body` is sent as JSON; `raw` as it is."""
        headers = {"Accept": "application/vnd.pulumi+8", "Content-Type": "application/json"}
        if self.authorization is not None:
            headers["Authorization"] = self.authorization
        payload = raw if raw is not None else None if body is None else json.dumps(body).encode()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, "/api" + path, body=payload, headers=headers)
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON of a 2xx answer (None when it has no body); anything else fails the test."""
        answer = self.call(method, path, body)
        assert 200 <= answer.status < 300, f"{method} {path}: {answer.status} {answer.body!r}"
        return answer.json if answer.body else None


def token_auth(token: str) -> str:
    return f"token {token}"


def bearer_auth(token: str) -> str:
    return f"Bearer {token}"
