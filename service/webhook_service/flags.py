"""Flags that read their defaults from the environment, with placeholders that say what they take and
converters whose errors say what is accepted; shared by every `webhooks` command."""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from webhook_service.domain.durations import parse_duration, parse_schedule

TRUE_WORDS = ("1", "true", "yes", "on")
T = TypeVar("T")


def env_name(flag: str, prefix: str = "WEBHOOKS_") -> str:
    return prefix + flag.lstrip("-").upper().replace("-", "_")


def add_flag(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    help: str,
    default: Any = None,
    prefix: str = "WEBHOOKS_",
    secret: bool = False,
    **kwargs: Any,
) -> None:
    """A flag whose default comes from its environment variable when that is set; its placeholder says what
    it takes, and its help the default as one would type it (a `secret` one's only whether it is set, since
    help is printed and pasted)."""
    env = env_name(flag, prefix)
    if kwargs.get("action") == "store_true":
        default = os.environ.get(env, "").lower() in TRUE_WORDS
    elif kwargs.get("action") == "append":
        # A repeatable flag takes a comma-separated list from its variable.
        from_env = os.environ.get(env)
        default = from_env.split(",") if from_env else default
    else:
        # An empty variable is as good as unset: `WEBHOOKS_TOKEN_FILE= webhooks ...` must not mean the file ".".
        default = os.environ.get(env) or default
        kwargs.setdefault("metavar", PLACEHOLDERS.get(kwargs.get("type"), flag.lstrip("-").upper().replace("-", "_")))
    shown = ("set, not shown" if default else "none") if secret else _shown(default)
    parser.add_argument(flag, default=default, help=f"{help} (env {env}; default {shown})", **kwargs)


def _shown(default: Any) -> str:
    if default is None or default == [] or default == "":
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, list):
        return ",".join(default)
    return str(default).replace("%", "%%")


def _argument(convert: Callable[[str], T]) -> Callable[[str], T]:
    """`convert` with its ValueError's words shown by argparse, which otherwise only says 'invalid value'."""

    @functools.wraps(convert)
    def converted(text: str) -> T:
        try:
            return convert(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return converted


@_argument
def count(text: str) -> int:
    value = _whole(text)
    if value < 0:
        raise ValueError(f"{text} is negative")
    return value


@_argument
def positive_count(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise ValueError(f"{text} is not a positive whole number")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None


@_argument
def rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if value < 0:
        raise ValueError(f"{text} is negative")
    return value


@_argument
def duration(text: str) -> float:
    return parse_duration(text)


@_argument
def schedule(text: str) -> tuple[float, ...]:
    return parse_schedule(text)


PLACEHOLDERS: dict[Any, str] = {
    count: "N",
    positive_count: "N",
    rate: "N",
    duration: "DURATION",
    schedule: "DURATIONS",
    Path: "FILE",
}


def one_of(options: Sequence[str], what: str) -> Callable[[str], str]:
    """A flag value among `options`, checked also when it comes from the environment (argparse checks
    `choices` only on the command line)."""

    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"{text} is not one of {', '.join(options)}")
        return text

    parse.__name__ = what
    return parse
