"""Standard Webhooks on the receiving side, through the `standardwebhooks` package used as it is."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from collections.abc import Callable

from standardwebhooks import Webhook


def verifier(secret: str) -> Webhook:
    """The package's verifier for a webhook secret: it takes `whsec_` and the key (the secret's bytes) in base64."""
    return Webhook("whsec_" + base64.b64encode(secret.encode()).decode())


def check_with(*secrets: str) -> Callable[[dict[str, str], bytes], object]:
    """A receiver check that passes when the package verifies the request with any of `secrets`."""

    def check(headers: dict[str, str], body: bytes) -> object:
        errors = []
        for secret in secrets:
            try:
                return verifier(secret).verify(body, headers)
            except Exception as error:
                errors.append(error)
        raise errors[0]

    return check


def post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    """Sends a request as a sender (or an attacker replaying one) would: the status and the body of the answer."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def signatures(headers: dict[str, str]) -> list[str]:
    """The `v1,...` entries of a request's webhook-signature header."""
    return headers.get("webhook-signature", "").split()
