"""Bounds on what callers may store or send, so hostile input cannot exhaust the service."""

from __future__ import annotations

MAX_REQUEST_BYTES = 1024 * 1024
MAX_FILTER_ENTRIES = 64
MAX_WEBHOOKS_PER_ORGANIZATION = 100
MAX_WEBHOOKS_PER_STACK = 20
MAX_EVENT_BYTES = 64 * 1024
MAX_RESPONSE_BODY_BYTES = 16 * 1024
# Names and values together (UTF-8 bytes); the delivery client parses about 1 MiB of them (dispatch/http.py).
MAX_RESPONSE_HEADER_BYTES = 16 * 1024
# Watch streams one server serves at once. Each also holds a place among the calls in progress while it lasts.
MAX_WATCHERS = 100
