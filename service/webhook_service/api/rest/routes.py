"""Pulumi's webhook routes under /api, each translated onto one application operation.

The same routes serve organization webhooks (`/api/orgs/{org}/hooks`) and stack webhooks
(`/api/stacks/{org}/{project}/{stack}/hooks`); a webhook's `name` is its ID.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler as RouteHandler

from webhook_service.api.observe import CODE_NAMES, record_call
from webhook_service.api.rest.convert import (
    delivery_json,
    parse_object,
    recovery_body,
    rotation_body,
    webhook_body,
    webhook_json,
)
from webhook_service.api.rest.errors import answer_errors
from webhook_service.app import Application
from webhook_service.domain.access import Principal
from webhook_service.domain.errors import InvalidArgument, ServiceError
from webhook_service.domain.names import Parent
from webhook_service.domain.pages import MAX_PAGE_SIZE

PREFIX = "/api"
SCOPES = ("/orgs/{org}", "/stacks/{org}/{project}/{stack}")

Operation = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


class RestApi:
    def __init__(self, app: Application) -> None:
        self._app = app

    def install(self, web_app: web.Application) -> None:
        """A sub-application, so its error answers cover /api alone and not the listener's other routes."""
        api = web.Application(middlewares=[answer_errors])
        for scope in SCOPES:
            hooks = f"{scope}/hooks"
            hook = f"{hooks}/{{name}}"
            routes = (
                (hdrs.METH_GET, hooks, "ListWebhooks", self.list_webhooks),
                (hdrs.METH_POST, hooks, "CreateWebhook", self.create_webhook),
                (hdrs.METH_GET, hook, "GetWebhook", self.get_webhook),
                (hdrs.METH_PATCH, hook, "UpdateWebhook", self.update_webhook),
                (hdrs.METH_DELETE, hook, "DeleteWebhook", self.delete_webhook),
                (hdrs.METH_POST, f"{hook}/ping", "PingWebhook", self.ping_webhook),
                (hdrs.METH_GET, f"{hook}/deliveries", "ListWebhookDeliveries", self.list_deliveries),
                (hdrs.METH_POST, f"{hook}/deliveries/{{id}}/redeliver", "RedeliverWebhookDelivery", self.redeliver),
                # Beyond Pulumi's routes.
                (hdrs.METH_POST, f"{hook}/rotate-secret", "RotateWebhookSecret", self.rotate_secret),
                (hdrs.METH_POST, f"{hook}/deliveries/recover", "RecoverWebhookDeliveries", self.recover_webhook),
                (hdrs.METH_POST, f"{scope}/deliveries/recover", "RecoverWebhookDeliveries", self.recover_scope),
            )
            for method, path, operation, handler in routes:
                api.router.add_route(method, path, self._called(operation, handler))
        web_app.add_subapp(PREFIX, api)

    def _called(self, operation: str, handler: Operation) -> RouteHandler:
        """`handler` as the caller behind the request's Authorization header, once the application has
        admitted them to `operation`; the body is read only after that."""

        async def handle(request: web.Request) -> web.StreamResponse:
            authorization = request.headers.get(hdrs.AUTHORIZATION)
            started, code, token_id = time.perf_counter(), "INTERNAL", ""
            try:
                async with self._app.calls.call(authorization, operation, _peer(request)) as caller:
                    token_id = caller.token_id
                    answer = await handler(request, caller)
                code = "OK"
                return answer
            except ServiceError as error:
                code = CODE_NAMES[type(error)]
                raise
            finally:
                record_call(self._app.metrics, operation, code, time.perf_counter() - started, token_id)

        return handle

    async def list_webhooks(self, request: web.Request, caller: Principal) -> web.StreamResponse:
        """Every webhook of the scope in one array, as Pulumi answers; a scope holds at most a hundred."""
        parent = str(_parent(request))
        found: list[dict[str, Any]] = []
        token = ""
        while True:
            page = await self._app.webhooks.list(caller, parent, MAX_PAGE_SIZE, token)
            found.extend(webhook_json(webhook) for webhook in page.webhooks)
            token = page.next_page_token
            if not token:
                return web.json_response(found)

    async def create_webhook(self, request: web.Request, caller: Principal) -> web.StreamResponse:
        parent = _parent(request)
        body = webhook_body(parse_object(await request.read()), parent)
        created = await self._app.webhooks.create(caller, str(parent), body.webhook_id, body.fields)
        return web.json_response(webhook_json(created))

    async def get_webhook(self, request: web.Request, caller: Principal) -> web.StreamResponse:
        return web.json_response(webhook_json(await self._app.webhooks.get(caller, _webhook(request))))

    async def update_webhook(self, request: web.Request, caller: Principal) -> web.StreamResponse:
        """Changes the fields the body carries, and only those: a whole webhook, as Pulumi's provider sends,
        replaces every field it names; an absent `secret` keeps the secret."""
        parent = _parent(request)
        body = webhook_body(parse_object(await request.read()), parent, _segment(request, "name"))
        updated = await self._app.webhooks.update(caller, _webhook(request), body.fields, body.present)
        return web.json_response(webhook_json(updated))

    async def delete_webhook(self, request: web.Request, caller: Principal) -> web.StreamResponse:
        await self._app.webhooks.delete(caller, _webhook(request))
        return web.Response(status=204)

    async def ping_webhook(self, request: web.Request, caller: Principal) -> web.StreamResponse:
        return web.json_response(delivery_json(await self._app.webhooks.ping(caller, _webhook(request))))

    async def list_deliveries(self, request: web.Request, caller: Principal) -> web.StreamResponse:
        """Newest first, `pageSize` (default 50) at a time; a `Link: <...>; rel="next"` header points to
        the next page while there is one."""
        size = request.query.get("pageSize", "0")
        if not re.fullmatch(r"[0-9]{1,9}", size):
            raise InvalidArgument("pageSize", "must be a whole number")
        token = request.query.get("continuationToken", "")
        page = await self._app.deliveries.list(caller, _webhook(request), int(size), token, full=True)
        headers = {}
        if page.next_page_token:
            following = request.rel_url.update_query(continuationToken=page.next_page_token)
            headers[hdrs.LINK] = f'<{following}>; rel="next"'
        return web.json_response([delivery_json(delivery) for delivery in page.deliveries], headers=headers)

    async def redeliver(self, request: web.Request, caller: Principal) -> web.StreamResponse:
        name = f"{_webhook(request)}/deliveries/{_segment(request, 'id')}"
        return web.json_response(delivery_json(await self._app.deliveries.redeliver(caller, name)))

    async def rotate_secret(self, request: web.Request, caller: Principal) -> web.StreamResponse:
        """The webhook, and the secret the service generated when the body named none (this once only)."""
        secret, overlap = rotation_body(await _optional_object(request))
        rotated = await self._app.webhooks.rotate_secret(caller, _webhook(request), secret, overlap)
        answer: dict[str, Any] = {"webhook": webhook_json(rotated.webhook)}
        if rotated.secret:
            answer["secret"] = rotated.secret
        return web.json_response(answer)

    async def recover_webhook(self, request: web.Request, caller: Principal) -> web.StreamResponse:
        return await self._recover(request, caller, _webhook(request))

    async def recover_scope(self, request: web.Request, caller: Principal) -> web.StreamResponse:
        return await self._recover(request, caller, str(_parent(request)))

    async def _recover(self, request: web.Request, caller: Principal, parent: str) -> web.StreamResponse:
        since, request_id = recovery_body(await _optional_object(request))
        count = await self._app.deliveries.recover(caller, parent, since, request_id)
        return web.json_response({"recoveredCount": count})


async def _optional_object(request: web.Request) -> dict[str, Any]:
    """The JSON object of a body that may be left out altogether."""
    raw = await request.read()
    return parse_object(raw) if raw else {}


def _segment(request: web.Request, key: str) -> str:
    """One path segment, decoded: an encoded slash (%2F) must not reach into another resource's name."""
    value = request.match_info[key]
    if "/" in value:
        raise InvalidArgument("path", f"{value!r} is not one name: it contains '/'")
    return value


def _parent(request: web.Request) -> Parent:
    if "project" in request.match_info:
        return Parent(_segment(request, "org"), _segment(request, "project"), _segment(request, "stack"))
    return Parent(_segment(request, "org"))


def _webhook(request: web.Request) -> str:
    return f"{_parent(request)}/webhooks/{_segment(request, 'name')}"


def _peer(request: web.Request) -> str:
    """The connection a request came by, as gRPC names its peers: failed authentications count per connection."""
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return f"http:{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "http:unknown"
