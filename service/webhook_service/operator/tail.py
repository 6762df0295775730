"""`webhooks tail`: every delivery attempt as it finishes (WatchWebhookDeliveries), a line each, until Ctrl-C,
`--for` or the server's shutdown."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

import grpc

from webhook_service.flags import duration
from webhook_service.operator import show
from webhook_service.operator.choices import STATES
from webhook_service.operator.command import PARENT_HELP, command
from webhook_service.operator.show import print_json
from webhooks_client import Client, WatchWebhookDeliveriesResponse, WebhookDeliveryState

EPILOG = (
    "A line an attempt: when it finished (local time), the delivery (below PARENT: PROJECT/STACK/WEBHOOK/ID "
    "under an organization, WEBHOOK/ID under a stack, the ID under a webhook; --output json gives the full "
    "name), its kind, the attempt's number, the receiver's status code (- when no answer came), how long it "
    "took, the state it left its delivery in (pending: it will be retried) and its error. States are coloured "
    "when standard output is a terminal and NO_COLOR is not set. Attempts the watch missed because they "
    "finished faster than it read them are counted on standard error. Exit status 0 after --for or when the "
    "server shuts down, 130 on Ctrl-C."
)
_COLOURS = {
    WebhookDeliveryState.WEBHOOK_DELIVERY_STATE_SUCCEEDED: "\x1b[32m",
    WebhookDeliveryState.WEBHOOK_DELIVERY_STATE_FAILED: "\x1b[31m",
    WebhookDeliveryState.WEBHOOK_DELIVERY_STATE_PENDING: "\x1b[33m",
}
_RESET = "\x1b[0m"


def register(commands: Any) -> None:
    tail = command(
        commands,
        "tail",
        "show each delivery attempt as it finishes, one line each, until Ctrl-C",
        _tail,
        None,
        epilog=EPILOG,
    )
    tail.add_argument(
        "parent",
        metavar="PARENT",
        help=f"a webhook's name, or {PARENT_HELP} (an organization's stacks included)",
    )
    tail.add_argument(
        "--state",
        dest="states",
        action="extend",
        type=STATES.parse_list,
        default=[],
        metavar="STATE",
        help=f"only attempts that leave their delivery {STATES.names}; repeatable, or comma-separated "
        "(default every attempt)",
    )
    tail.add_argument(
        "--for",
        dest="watch_for",
        type=duration,
        metavar="DURATION",
        help="stop after watching this long, such as 30s (default: until Ctrl-C or the server shuts down)",
    )


class _NotInPlace(grpc.RpcError):
    """The server did not put the watch in place within --timeout; reported as a call past its deadline is."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self) -> str:
        return f"the watch was not in place within {self.seconds:g}s"


class _Stop:
    """Cancels the watch from a timer's thread, and remembers why, so that the end of the stream it causes is
    told apart from the server's."""

    LATE = "late"
    DONE = "done"

    def __init__(self, call: grpc.Call) -> None:
        self.call = call
        self.why = ""
        self.timers: list[threading.Timer] = []

    def after(self, seconds: float, why: str) -> threading.Timer:
        timer = threading.Timer(seconds, self._stop, (why,))
        timer.daemon = True
        timer.start()
        self.timers.append(timer)
        return timer

    def _stop(self, why: str) -> None:
        self.why = why
        self.call.cancel()

    def cancel(self) -> None:
        for timer in self.timers:
            timer.cancel()


def _tail(client: Client, args: argparse.Namespace) -> None:
    call = client.watch_webhook_deliveries(args.parent, args.states)
    stop = _Stop(call)
    try:
        late = stop.after(args.timeout, _Stop.LATE)
        # The headers come once the watch is in place: no attempt finished after them is missed.
        call.initial_metadata()
        late.cancel()
        if stop.why == _Stop.LATE:
            raise _NotInPlace(args.timeout)
        if call.is_active():
            until = f"for {args.watch_for:g}s" if args.watch_for is not None else "until Ctrl-C"
            _note(args, f"watching {args.parent} {until}")
        if args.watch_for is not None:
            stop.after(args.watch_for, _Stop.DONE)
        lines = _Lines(args.parent, _coloured())
        for watched in call:
            if watched.dropped_count:
                missed = show.counted(watched.dropped_count, "attempt", "attempts")
                _note(args, f"{missed} missed here: they finished faster than tail read them")
            if args.output == "json":
                print_json(watched, indent=None)
            else:
                lines.show(watched)
    except grpc.RpcError:
        if stop.why == _Stop.DONE:
            return None
        raise
    finally:
        stop.cancel()
    _note(args, "the server ended the watch: it is shutting down")
    return None


def _note(args: argparse.Namespace, text: str) -> None:
    print(f"{args.command_name}: {text}", file=sys.stderr, flush=True)


def _coloured() -> bool:
    """As https://no-color.org asks: NO_COLOR set to anything but empty turns colour off."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


class _Lines:
    """An attempt a line, its columns as wide as their widest cell so far, so a steady stream lines up."""

    # Wide enough from the first line for the usual cells: 14:03:27, stack_update, attempt 1, 200, 15ms,
    # succeeded. Names vary, and grow their column as they come.
    WIDTHS = (8, 0, 12, 9, 3, 5, 9)

    def __init__(self, parent: str, coloured: bool) -> None:
        self.parent = parent
        self.coloured = coloured
        self.widths = list(self.WIDTHS)

    def show(self, watched: WatchWebhookDeliveriesResponse) -> None:
        state = STATES.label(watched.state)
        cells = [
            show.clock(watched, "finish_time"),
            _short_name(watched.delivery, self.parent),
            watched.kind,
            f"attempt {watched.attempt_number}",
            show.code(watched.response_code),
            show.took(watched.duration),
            state,
        ]
        cells = [show.one_line(cell) for cell in cells]
        self.widths = [max(len(cell), width) for cell, width in zip(cells, self.widths, strict=True)]
        padded = [cell.ljust(width) for cell, width in zip(cells, self.widths, strict=True)]
        if self.coloured and watched.state in _COLOURS:
            # The padding stays outside the colour, for the line's end to be trimmed.
            padded[-1] = _COLOURS[watched.state] + state + _RESET + padded[-1][len(state) :]
        print("  ".join([*padded, show.shorten(watched.error)]).rstrip(), flush=True)


def _short_name(delivery: str, parent: str) -> str:
    """The delivery's name below the watched parent, without the collection words (`webhooks`,
    `deliveries`, ...): what the line needs to tell deliveries apart."""
    below = delivery.removeprefix(parent.rstrip("/") + "/")
    if below == delivery:
        return delivery
    return "/".join(below.split("/")[1::2])
