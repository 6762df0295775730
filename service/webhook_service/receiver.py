"""`webhooks receive`: a receiver to try the service with, printing each delivery and checking its signature."""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
from collections.abc import Mapping

from aiohttp import web

from webhook_service.domain.signing import signature, standard_signature


def verdict(secret: str, body: bytes, header: str | None) -> str:
    if not secret:
        return "unchecked (no --secret)"
    if header is None:
        return "MISSING"
    return "valid" if hmac.compare_digest(signature(secret, body), header) else "INVALID"


def standard_verdict(secret: str, body: bytes, headers: Mapping[str, str]) -> str:
    """Whether one of the Standard Webhooks signatures is this secret's (the timestamp is not judged here).
    `headers` are looked up case-insensitively, as aiohttp's are."""
    if not secret:
        return "unchecked (no --secret)"
    delivery_id, timestamp, given = (
        headers.get(name) for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if delivery_id is None or given is None or timestamp is None or not timestamp.isdigit():
        return "MISSING"
    expected = standard_signature(secret, delivery_id, int(timestamp), body)
    return "valid" if any(hmac.compare_digest(expected, each) for each in given.split()) else "INVALID"


def make_app(secret: str) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        print(
            f"{request.method} {request.path} kind={headers.get('Pulumi-Webhook-Kind')} "
            f"id={headers.get('Pulumi-Webhook-ID')} "
            f"signature={verdict(secret, body, headers.get('Pulumi-Webhook-Signature'))} "
            f"webhook-signature={standard_verdict(secret, body, headers)}",
            flush=True,
        )
        try:
            print(json.dumps(json.loads(body), indent=2, ensure_ascii=False), flush=True)
        except ValueError:
            print(body.decode("utf-8", errors="replace"), flush=True)
        return web.Response(text="received")

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handle)
    return app


async def receive(listen: str, secret: str) -> None:
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(make_app(secret), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, int(port)).start()
    print(f"receiving on http://{listen}/", file=sys.stderr, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
