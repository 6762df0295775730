"""The console's routes. Each page is a few calls of the application made as the signed-in person, whose
role and organizations the application checks; the pages only hide what that person may not do."""

from __future__ import annotations

import contextlib
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, NoReturn
from urllib.parse import quote

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined
from multidict import MultiDict, MultiDictProxy, MultiMapping

from webhook_service.api.console import views
from webhook_service.api.console.forms import WebhookForm, choose_format, read_form, text
from webhook_service.api.console.sessions import Sessions, same_secret
from webhook_service.api.console.views import DeliveryLine, WebhookView
from webhook_service.app import Application
from webhook_service.domain.access import Principal
from webhook_service.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
)
from webhook_service.domain.limits import MAX_WEBHOOKS_PER_ORGANIZATION
from webhook_service.domain.model import Delivery, WebhookFields
from webhook_service.domain.names import Parent, WebhookName, parse_parent, parse_webhook_name

SESSION_COOKIE = "webhooks_session"
# Carries the sign-in form's CSRF token before there is a session (a double-submit cookie).
SIGN_IN_COOKIE = "webhooks_sign_in"
DELIVERIES_PER_PAGE = 20
# Only the service's own styles (the console has no scripts); no framing, no form posting elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
# Pages show webhooks and deliveries: nothing of them is kept by the browser or a proxy.
PAGE_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
# What a page says after a change sent the browser back to it.
NOTICES = {
    "created": "Webhook created.",
    "saved": "Changes saved.",
    "activated": "Webhook activated: it receives events again.",
    "deactivated": "Webhook deactivated: it receives no events until it is activated.",
    "deleted": "Webhook deleted, with its delivery log.",
}
# Names a request's URL carries: when the application refuses one, the page does not exist.
NAME_FIELDS = frozenset({"parent", "name", "organization", "webhook.name"})
# What /static/ serves, with its content type; read once, at start.
STATIC_FILES = {"console.css": "text/css", "favicon.svg": "image/svg+xml"}
NOT_FOUND = "There is no such page, or this token cannot see it."

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Form = MultiMapping[object]


class Refused(Exception):
    """Ends a request with an error page."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


@dataclass(frozen=True)
class Visit:
    """One request of a signed-in person: the caller behind their session's token, the session's CSRF
    token for the forms of the page, and what they posted."""

    caller: Principal
    csrf: str
    form: Form


class Console:
    def __init__(self, app: Application, sessions: Sessions | None = None) -> None:
        self._app = app
        self._sessions = sessions or Sessions()
        self._templates = Environment(
            loader=PackageLoader(__package__),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._templates.globals.update(
            scope_url=views.scope_url,
            webhooks_url=views.webhooks_url,
            organization_url=views.organization_url,
            scope_title=views.scope_title,
            filter_label=views.filter_label,
            format_labels=views.FORMAT_LABELS,
            group_labels=views.GROUP_LABELS,
        )
        folder = resources.files(__package__).joinpath("static")
        self._static = {name: (folder.joinpath(name).read_bytes(), kind) for name, kind in STATIC_FILES.items()}

    def install(self, web_app: web.Application) -> None:
        add_get, add_post = web_app.router.add_get, web_app.router.add_post
        add_get("/static/{file}", self.static)
        for path, handler in (
            ("/", self.home),
            ("/sign-in", self.sign_in_page),
            ("/orgs", self.open_organization),
            ("/orgs/{org}/open-stack", self.open_stack),
        ):
            add_get(path, self._guard(handler))
        add_post("/sign-in", self._guard(self.sign_in))
        add_post("/sign-out", self._guard(self.sign_out))
        # Organization and stack pages alike; no two of these paths can match the same URL, whatever the
        # names, since their fixed words differ where their lengths agree.
        for scope in ("/orgs/{org}", "/orgs/{org}/{project}/{stack}"):
            hook = scope + "/webhooks/{webhook}"
            add_get(scope + "/webhooks", self._guard(self.webhooks))
            add_get(scope + "/new-webhook", self._guard(self.new_webhook))
            add_post(scope + "/new-webhook", self._guard(self.create_webhook))
            add_get(hook, self._guard(self.webhook))
            add_get(hook + "/edit", self._guard(self.edit_webhook))
            add_post(hook + "/edit", self._guard(self.update_webhook))
            add_post(hook + "/activate", self._guard(self.activate))
            add_post(hook + "/deactivate", self._guard(self.deactivate))
            add_post(hook + "/ping", self._guard(self.ping))
            add_get(hook + "/delete", self._guard(self.confirm_delete))
            add_post(hook + "/delete", self._guard(self.delete))
            add_get(hook + "/deliveries/{delivery}", self._guard(self.delivery))
            add_post(hook + "/deliveries/{delivery}/redeliver", self._guard(self.redeliver))

    # Signing in and out.

    async def sign_in_page(self, request: web.Request) -> web.StreamResponse:
        if self._sessions.find(request.cookies.get(SESSION_COOKIE, "")) is not None:
            raise web.HTTPSeeOther(_local(request.query.get("next")))
        return self._sign_in_form(request, {}, _local(request.query.get("next")))

    async def sign_in(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if not same_secret(request.cookies.get(SIGN_IN_COOKIE, ""), text(form, "csrf")):
            raise _stale_form()
        token = text(form, "token").strip()
        errors: dict[str, str] = {}
        if not token:
            errors["token"] = "is required"
        else:
            try:
                async with self._app.calls.call(f"Bearer {token}", "ListWebhooks"):
                    pass
            except Unauthenticated as error:
                errors["token"] = str(error)
            except PermissionDenied as error:
                errors["token"] = f"cannot manage webhooks ({error})"
        if errors:
            return self._sign_in_form(request, errors, _local(text(form, "next")), status=401)
        # A session already in this browser ends: one browser, one session.
        self._sessions.end(request.cookies.get(SESSION_COOKIE, ""))
        response = web.HTTPSeeOther(_local(text(form, "next")))
        response.set_cookie(
            SESSION_COOKIE,
            self._sessions.start(token),
            max_age=int(self._sessions.seconds),
            path="/",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        response.del_cookie(SIGN_IN_COOKIE, path="/sign-in")
        raise response

    def _sign_in_form(
        self, request: web.Request, errors: dict[str, str], next_path: str, status: int = 200
    ) -> web.Response:
        # The cookie a form of another tab set is kept, so signing in there still works.
        csrf = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(32)
        response = self._page(None, "sign_in.html", status, csrf=csrf, errors=errors, next=next_path)
        response.set_cookie(
            SIGN_IN_COOKIE, csrf, path="/sign-in", httponly=True, samesite="Strict", secure=request.secure
        )
        return response

    async def sign_out(self, request: web.Request) -> web.StreamResponse:
        session_id = request.cookies.get(SESSION_COOKIE, "")
        session = self._sessions.find(session_id)
        if session is not None:
            if not same_secret(session.csrf, text(await request.post(), "csrf")):
                raise _stale_form()
            self._sessions.end(session_id)
        response = web.HTTPSeeOther("/sign-in")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    # Organizations and stacks.

    async def home(self, request: web.Request) -> web.StreamResponse:
        async with self._visit(request, "ListWebhooks") as visit:
            reach = visit.caller.organizations
        return self._page(visit, "home.html", organizations=None if reach is None else sorted(reach))

    async def open_organization(self, request: web.Request) -> web.StreamResponse:
        organization = request.query.get("organization", "").strip()
        raise web.HTTPSeeOther(views.organization_url(organization) if organization else "/")

    async def open_stack(self, request: web.Request) -> web.StreamResponse:
        stack = Parent(
            request.match_info["org"], request.query.get("project", "").strip(), request.query.get("stack", "").strip()
        )
        raise web.HTTPSeeOther(
            views.webhooks_url(stack) if stack.project and stack.stack else views.organization_url(stack.organization)
        )

    async def webhooks(self, request: web.Request) -> web.StreamResponse:
        """The Settings > Webhooks page of an organization or a stack; an organization's lists its stacks
        that have webhooks."""
        async with self._visit(request, "ListWebhooks") as visit:
            parent = _scope(request)
            # One page holds them all: no organization has more, and no stack as many.
            found = await self._app.webhooks.list(visit.caller, str(parent), MAX_WEBHOOKS_PER_ORGANIZATION)
            webhooks = []
            # One short indexed query each, one after another, so a page never crowds the store's queue.
            for webhook in found.webhooks:
                latest = await self._app.deliveries.list(visit.caller, webhook.name, page_size=1)
                webhooks.append(WebhookView.of(webhook, latest.deliveries[0] if latest.deliveries else None))
            stacks = None if parent.is_stack else await self._app.webhooks.stacks(visit.caller, parent.organization)
        return self._page(
            visit, "webhooks.html", parent=parent, webhooks=webhooks, stacks=stacks, notice=_notice(request)
        )

    # Creating and editing.

    async def new_webhook(self, request: web.Request) -> web.StreamResponse:
        """Choosing Slack, Microsoft Teams or Webhook, then the form for that format."""
        async with self._visit(request, "CreateWebhook") as visit:
            parent = _scope(request)
        chosen = choose_format(request.query.get("format"))
        if chosen is None:
            return self._page(visit, "choose_format.html", parent=parent)
        return self._form(visit, parent, WebhookForm(chosen))

    async def create_webhook(self, request: web.Request) -> web.StreamResponse:
        async with self._visit(request, "CreateWebhook") as visit:
            parent = _scope(request)
            submitted = read_form(visit.form)
            if not submitted.form.errors:
                try:
                    made = await self._app.webhooks.create(
                        visit.caller, str(parent), "", submitted.form.fields(submitted.secret)
                    )
                    _see(views.webhook_url(WebhookName(parent, made.webhook_id)), done="created")
                except InvalidArgument as error:
                    submitted.form.refuse(error)
                except ResourceExhausted as error:
                    # The organization's or stack's webhooks are as many as allowed.
                    submitted.form.errors[""] = str(error)
        return self._form(visit, parent, submitted.refused(), status=400)

    async def edit_webhook(self, request: web.Request) -> web.StreamResponse:
        async with self._visit(request, "UpdateWebhook") as visit:
            webhook = WebhookView.of(await self._app.webhooks.get(visit.caller, _webhook_name(request)))
        form = WebhookForm.of(webhook, choose_format(request.query.get("format")))
        return self._form(visit, webhook.name.parent, form, editing=webhook)

    async def update_webhook(self, request: web.Request) -> web.StreamResponse:
        async with self._visit(request, "UpdateWebhook") as visit:
            webhook = WebhookView.of(await self._app.webhooks.get(visit.caller, _webhook_name(request)))
            submitted = read_form(visit.form, has_secret=webhook.has_secret)
            if not submitted.form.errors:
                try:
                    await self._app.webhooks.update(
                        visit.caller, str(webhook.name), submitted.form.fields(submitted.secret), submitted.paths()
                    )
                    _see(webhook.url, done="saved")
                except InvalidArgument as error:
                    submitted.form.refuse(error)
        return self._form(visit, webhook.name.parent, submitted.refused(), editing=webhook, status=400)

    def _form(
        self,
        visit: Visit,
        parent: Parent,
        form: WebhookForm,
        editing: WebhookView | None = None,
        status: int = 200,
    ) -> web.Response:
        return self._page(
            visit,
            "webhook_form.html",
            status,
            parent=parent,
            form=form,
            editing=editing,
            menu=views.filter_menu(parent),
        )

    # One webhook.

    async def webhook(self, request: web.Request) -> web.StreamResponse:
        """The webhook, what may be done to it, and its delivery log, newest first, a page at a time."""
        page = request.query.get("page", "")
        async with self._visit(request, "GetWebhook") as visit:
            name = _webhook_name(request)
            webhook = WebhookView.of(await self._app.webhooks.get(visit.caller, name))
            log = await self._app.deliveries.list(visit.caller, name, DELIVERIES_PER_PAGE, page)
            ping = await self._ping(visit, name, request.query.get("ping", ""))
        return self._page(
            visit,
            "webhook.html",
            webhook=webhook,
            deliveries=[DeliveryLine.of(delivery) for delivery in log.deliveries],
            next_page=log.next_page_token,
            paged=bool(page),
            ping=ping,
            notice=_notice(request),
        )

    async def _ping(self, visit: Visit, webhook: str, delivery_id: str) -> DeliveryLine | None:
        """The outcome of the ping the page was sent back with, if it is one."""
        if not delivery_id:
            return None
        try:
            delivery = await self._app.deliveries.get(visit.caller, f"{webhook}/deliveries/{delivery_id}")
        except (InvalidArgument, NotFound):
            return None
        return DeliveryLine.of(delivery) if delivery.kind == "ping" else None

    async def activate(self, request: web.Request) -> web.StreamResponse:
        return await self._set_active(request, True)

    async def deactivate(self, request: web.Request) -> web.StreamResponse:
        return await self._set_active(request, False)

    async def _set_active(self, request: web.Request, active: bool) -> NoReturn:
        async with self._visit(request, "UpdateWebhook") as visit:
            name = _webhook_name(request)
            await self._app.webhooks.update(visit.caller, name, WebhookFields(active=active), ["active"])
        _see(views.webhook_url(parse_webhook_name(name, "name")), done="activated" if active else "deactivated")

    async def ping(self, request: web.Request) -> web.StreamResponse:
        async with self._visit(request, "PingWebhook") as visit:
            name = _webhook_name(request)
            delivery = await self._app.webhooks.ping(visit.caller, name)
        _see(views.webhook_url(parse_webhook_name(name, "name")), ping=delivery.delivery_id)

    async def confirm_delete(self, request: web.Request) -> web.StreamResponse:
        async with self._visit(request, "DeleteWebhook") as visit:
            webhook = WebhookView.of(await self._app.webhooks.get(visit.caller, _webhook_name(request)))
        return self._page(visit, "delete.html", webhook=webhook)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        async with self._visit(request, "DeleteWebhook") as visit:
            name = _webhook_name(request)
            await self._app.webhooks.delete(visit.caller, name)
        _see(views.webhooks_url(parse_webhook_name(name, "name").parent), done="deleted")

    # One delivery.

    async def delivery(self, request: web.Request) -> web.StreamResponse:
        """The payload, the request's headers and every attempt with the receiver's answer."""
        async with self._visit(request, "GetWebhookDelivery") as visit:
            delivery = await self._app.deliveries.get(visit.caller, _delivery_name(request))
            webhook = WebhookView.of(await self._app.webhooks.get(visit.caller, delivery.webhook))
        redelivered = request.query.get("redelivered", "")
        return self._page(
            visit,
            "delivery.html",
            webhook=webhook,
            delivery=delivery,
            line=DeliveryLine.of(delivery),
            payload=views.pretty_payload(delivery.payload),
            request_headers=delivery.attempts[-1].request_headers if delivery.attempts else {},
            when=views.when,
            milliseconds=views.milliseconds,
            redelivered=int(redelivered) if redelivered.isdigit() else None,
        )

    async def redeliver(self, request: web.Request) -> web.StreamResponse:
        async with self._visit(request, "RedeliverWebhookDelivery") as visit:
            again: Delivery = await self._app.deliveries.redeliver(visit.caller, _delivery_name(request))
        _see(views.delivery_url(again), redelivered=str(again.attempt_count))

    async def static(self, request: web.Request) -> web.StreamResponse:
        found = self._static.get(request.match_info["file"])
        if found is None:
            return self._error(404, "Not found", NOT_FOUND)
        body, kind = found
        return web.Response(body=body, content_type=kind, headers={**SECURITY_HEADERS, "Cache-Control": "max-age=300"})

    # What every page goes through.

    @contextlib.asynccontextmanager
    async def _visit(self, request: web.Request, operation: str) -> AsyncIterator[Visit]:
        """The signed-in caller, admitted by the application for `operation` (which its role must allow),
        with the organization of the URL in its reach. A POST must carry the session's CSRF token."""
        session_id = request.cookies.get(SESSION_COOKIE, "")
        session = self._sessions.find(session_id)
        if session is None:
            _to_sign_in(request)
        form: Form = MultiDictProxy(MultiDict())
        if request.method == "POST":
            form = await request.post()
            if not same_secret(session.csrf, text(form, "csrf")):
                raise _stale_form()
        organization = request.match_info.get("org")
        try:
            async with self._app.calls.call(f"Bearer {session.token}", operation) as caller:
                # Out of reach reads as absent: the page tells nothing about another organization.
                if organization is not None and not caller.may_touch(organization):
                    raise Refused(404, "Not found", NOT_FOUND)
                yield Visit(caller, session.csrf, form)
        except Unauthenticated:
            # The token was revoked since sign-in.
            self._sessions.end(session_id)
            _to_sign_in(request)

    def _guard(self, handler: Handler) -> Handler:
        """The handler, with the application's refusals turned into error pages."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except Refused as refused:
                return self._error(refused.status, refused.title, refused.message)
            except InvalidArgument as error:
                if error.field in NAME_FIELDS:
                    return self._error(404, "Not found", NOT_FOUND)
                return self._error(400, "Not a valid request", str(error))
            except NotFound as error:
                return self._error(404, "Not found", str(error))
            except PermissionDenied as error:
                return self._error(403, "Not allowed", str(error))
            except ResourceExhausted as error:
                response = self._error(429, "Too many requests", str(error))
                if error.retry_after is not None:
                    response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
                return response
            except Unavailable as error:
                return self._error(503, "Unavailable", str(error))
            except FailedPrecondition as error:
                return self._error(409, "Not now", str(error))
            except ServiceError as error:
                return self._error(400, "Refused", str(error))

        return guarded

    def _error(self, status: int, title: str, message: str) -> web.Response:
        return self._page(None, "error.html", status, title=title, message=message)

    def _page(self, visit: Visit | None, template: str, status: int = 200, **context: Any) -> web.Response:
        html = self._templates.get_template(template).render(
            visit=visit, can=visit.caller.may_call if visit else (lambda operation: False), **context
        )
        return web.Response(text=html, status=status, content_type="text/html", headers=PAGE_HEADERS)


def _scope(request: web.Request) -> Parent:
    """The organization or stack of the URL, as the application names it."""
    info = request.match_info
    wanted = Parent(info["org"], info.get("project", ""), info.get("stack", ""))
    if parse_parent(str(wanted), "parent") != wanted:
        raise Refused(404, "Not found", NOT_FOUND)
    return wanted


def _webhook_name(request: web.Request) -> str:
    return f"{_scope(request)}/webhooks/{request.match_info['webhook']}"


def _delivery_name(request: web.Request) -> str:
    return f"{_webhook_name(request)}/deliveries/{request.match_info['delivery']}"


def _notice(request: web.Request) -> str:
    return NOTICES.get(request.query.get("done", ""), "")


def _see(path: str, **query: str) -> NoReturn:
    """Sends the browser to `path` after a change, so reloading the page does not post it again."""
    raise web.HTTPSeeOther(path + "?" + "&".join(f"{key}={quote(value, safe='')}" for key, value in query.items()))


def _local(path: str | None) -> str:
    """Where to go after signing in: a path of this site, never another site."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def _to_sign_in(request: web.Request) -> NoReturn:
    response = web.HTTPSeeOther("/sign-in?next=" + quote(request.path_qs if request.method == "GET" else "/"))
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


def _stale_form() -> Refused:
    return Refused(
        403,
        "Form refused",
        "This form did not come from a page of this console, or its session has ended. "
        "Go back, reload the page and try again.",
    )
