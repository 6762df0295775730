"""The settings every process sharing a database must agree on: those that decide a delivery's fate.

A process that disagreed would deliver (or refuse) the same webhooks differently from the others: one opens
loopback to the request-forgery guard and another does not, and the deliveries it claims fail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from webhook_service.domain.network import Network

TAKE_OVER = "--take-over-settings"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def shared_settings(
    allow_network: Sequence[Network], retry_schedule: Sequence[float], delivery_timeout: float, disable_after: float
) -> dict[str, str]:
    """The settings by flag, each written the way the flag takes it, in a canonical form."""
    return {
        "--allow-network": ",".join(sorted(str(network) for network in allow_network)) or "(none)",
        "--retry-schedule": ",".join(_seconds(delay) for delay in retry_schedule),
        "--delivery-timeout": _seconds(delivery_timeout),
        "--disable-after": _seconds(disable_after),
    }


def disagreements(ours: Mapping[str, str], stored: Mapping[str, str]) -> list[str]:
    """One sentence per flag whose value differs from the one the database's other processes use."""
    return [
        f"{flag}: this process has {ours[flag]}, the processes sharing the database use {stored[flag]}"
        for flag in ours
        if flag in stored and stored[flag] != ours[flag]
    ]


def refusal(differences: Sequence[str]) -> str:
    return (
        "processes sharing a database must agree on the settings that decide a delivery's fate; "
        + "; ".join(differences)
        + f". Start with the same values, or with {TAKE_OVER} to make this process's values everyone's"
    )
