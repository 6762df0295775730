"""The create and edit forms: what a person typed, turned into the application's fields, and its errors
put back beside the fields they concern."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from multidict import MultiMapping

from webhook_service.api.console.views import WebhookView
from webhook_service.domain.errors import InvalidArgument
from webhook_service.domain.model import WebhookFields, WebhookFilter, WebhookFormat, WebhookGroup

# The fields of the form, named as the application names the webhook's fields after "webhook.".
FIELDS = ("display_name", "payload_url", "secret", "filters", "groups")
# What an edit changes; the secret only when a new one is typed or its removal asked for.
EDITED = ("display_name", "payload_url", "format", "filters", "groups")


@dataclass
class WebhookForm:
    """The form's values as typed, to show again. The secret is not among them: it is never rendered."""

    format: WebhookFormat
    display_name: str = ""
    payload_url: str = ""
    all_events: bool = True
    filters: tuple[WebhookFilter, ...] = ()
    groups: tuple[WebhookGroup, ...] = ()
    has_secret: bool = False
    # Field name (one of FIELDS, or "" for the form as a whole) -> what is wrong with it.
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, webhook: WebhookView, format: WebhookFormat | None = None) -> WebhookForm:
        """The edit form of `webhook`, in another format if one was chosen."""
        return cls(
            format=format or webhook.format,
            display_name=webhook.display_name,
            payload_url=webhook.payload_url,
            all_events=not webhook.filters and not webhook.groups,
            filters=webhook.filters,
            groups=webhook.groups,
            has_secret=webhook.has_secret,
        )

    def fields(self, secret: str) -> WebhookFields:
        return WebhookFields(
            display_name=self.display_name.strip(),
            payload_url=self.payload_url.strip(),
            secret=secret,
            format=self.format,
            filters=() if self.all_events else self.filters,
            groups=() if self.all_events else self.groups,
        )

    def refuse(self, error: InvalidArgument) -> None:
        """Puts each of the application's refusals beside the field it names (an entry of a list beside the
        list), the first of each field only."""
        for violation in error.violations:
            name = violation.field.removeprefix("webhook.").split("[", 1)[0]
            if name in FIELDS:
                self.errors.setdefault(name, violation.description)
            else:
                self.errors.setdefault("", f"{violation.field}: {violation.description}")


@dataclass(frozen=True)
class Submitted:
    form: WebhookForm
    secret: str
    remove_secret: bool

    def refused(self) -> WebhookForm:
        """The form to show again with its errors; a secret typed into it has to be typed again."""
        if self.secret:
            self.form.errors.setdefault("secret", "type it again: a secret is never sent back to the browser")
        return self.form

    def paths(self) -> Sequence[str]:
        """The update mask of an edit."""
        changes_secret = bool(self.secret) or self.remove_secret
        return (*EDITED, "secret") if changes_secret else EDITED


def choose_format(value: str | None) -> WebhookFormat | None:
    try:
        return WebhookFormat(value) if value else None
    except ValueError:
        return None


def read_form(posted: MultiMapping[object], has_secret: bool = False) -> Submitted:
    """The create or edit form as posted. A filter or group that is not one of the menu's (only a hand-made
    request sends one) is refused beside its field, as is a specific choice that picks nothing."""
    values: Mapping[str, str] = {key: text(posted, key) for key in ("display_name", "payload_url", "events")}
    form = WebhookForm(
        format=choose_format(text(posted, "format")) or WebhookFormat.RAW,
        display_name=values["display_name"],
        payload_url=values["payload_url"],
        all_events=values["events"] != "specific",
        has_secret=has_secret,
    )
    try:
        form.filters = tuple(WebhookFilter(v) for v in texts(posted, "filters"))
    except ValueError:
        form.errors["filters"] = "is not one of the menu's filters"
    try:
        form.groups = tuple(WebhookGroup(v) for v in texts(posted, "groups"))
    except ValueError:
        form.errors["groups"] = "is not one of the menu's groups"
    if not form.all_events and not form.filters and not form.groups and not form.errors:
        form.errors["filters"] = "pick at least one event or group, or choose All events"
    secret = text(posted, "secret") if form.format is WebhookFormat.RAW else ""
    return Submitted(form, secret, remove_secret=text(posted, "remove_secret") == "yes")


def text(posted: MultiMapping[object], key: str) -> str:
    value = posted.get(key, "")
    return value if isinstance(value, str) else ""


def texts(posted: MultiMapping[object], key: str) -> list[str]:
    return [value for value in posted.getall(key, []) if isinstance(value, str)]
