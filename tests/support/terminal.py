"""Starting children as a person starts commands in a terminal, where Ctrl-C reaches them."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigint_as_in_a_terminal() -> Iterator[None]:
    """Children started in the block get SIGINT at its default. A test run started in the background (`make
    test &`, CI) has SIGINT ignored, which children inherit; a signal this process catches instead is reset to
    the default in a child when it execs. Done here rather than in the child (`preexec_fn`): forking a process
    with gRPC's threads running and then running Python in the child before exec can hang the child for good
    (seen: gRPC skipped its fork handlers and the child never reached exec). Call from the main thread."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
