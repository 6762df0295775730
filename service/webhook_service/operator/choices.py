"""The contract's enums as a command line writes them: the value's name without its prefix, in lower case
with dashes (WEBHOOK_FILTER_UPDATE_FAILED is update-failed)."""

from __future__ import annotations

import argparse
from typing import Any

from webhooks_client import (
    MismatchReason,
    Ordering,
    WebhookDeliveryState,
    WebhookDeliveryView,
    WebhookFilter,
    WebhookFormat,
    WebhookGroup,
)


class Choices:
    """Parses what people type (underscores, upper case and the full name are taken too, so Pulumi's
    `update_failed` works) and labels what the service returns."""

    def __init__(self, enum: Any, prefix: str, zero: str = "-") -> None:
        """`zero` labels the _UNSPECIFIED value, for enums where it means something (a format of raw);
        it is accepted as input too when no other value has that name."""
        self.prefix = prefix
        self.numbers: dict[str, int] = {
            self._short(name): number for name, number in enum.items() if not name.endswith("_UNSPECIFIED")
        }
        self.labels = {number: name for name, number in self.numbers.items()}
        self.labels[0] = zero
        self.accepted = dict(self.numbers)
        if zero != "-":
            self.accepted.setdefault(zero, 0)

    def _short(self, name: str) -> str:
        name = name.upper().replace("-", "_")
        return name.removeprefix(self.prefix).lower().replace("_", "-")

    @property
    def names(self) -> str:
        """What the help says it takes: `a, b or c`."""
        options = list(self.accepted)
        return ", ".join(options[:-1]) + f" or {options[-1]}" if len(options) > 1 else options[0]

    def label(self, number: int) -> str:
        return self.labels.get(number, str(number))

    def parse(self, text: str) -> int:
        number = self.accepted.get(self._short(text.strip()))
        if number is None:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {self.names}")
        return number

    def parse_list(self, text: str) -> list[int]:
        """A comma-separated list; an empty one is no values at all."""
        return [self.parse(part) for part in text.split(",") if part.strip()]


FORMATS = Choices(WebhookFormat, "WEBHOOK_FORMAT_", zero="raw")
FILTERS = Choices(WebhookFilter, "WEBHOOK_FILTER_")
GROUPS = Choices(WebhookGroup, "WEBHOOK_GROUP_")
ORDERINGS = Choices(Ordering, "ORDERING_", zero="unordered")
REASONS = Choices(MismatchReason, "MISMATCH_REASON_")
STATES = Choices(WebhookDeliveryState, "WEBHOOK_DELIVERY_STATE_")
VIEWS = Choices(WebhookDeliveryView, "WEBHOOK_DELIVERY_VIEW_")
