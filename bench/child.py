"""The bench's helper processes (the receiver, the gRPC floor's server): each is `python -m MODULE`, prints
`NAME listening on HOST:PORT` once it listens, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

LISTENING = re.compile(r"listening on (\S+:\d+)")


async def until_signalled() -> None:
    """Returns on SIGTERM or SIGINT."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()


class Child:
    """`python -m module` from the repository's root, once it says where it listens (`address`)."""

    def __init__(self, module: str) -> None:
        root = Path(__file__).resolve().parents[1]
        self.process = subprocess.Popen([sys.executable, "-m", module], cwd=root, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = LISTENING.search(line)
        if match is None:
            self.process.kill()
            self.process.wait(10)
            raise RuntimeError(f"{module} did not start: {line!r}")
        self.address = match[1]

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
