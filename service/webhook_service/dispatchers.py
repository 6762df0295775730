"""The dispatcher processes `webhooks serve` starts beside its API (--dispatch-processes), so that calls and
deliveries each have a core: each one is a `webhooks dispatch` with the server's settings.

The server hands each its settings over a socket pair, then uses it to wake the process right after every
commit of new deliveries and to ask for its series when /metrics is scraped. It stops them when it stops and
starts another when one dies. A dispatcher process never outlives the server: the kernel kills it when the
server dies, even by SIGKILL (PR_SET_PDEATHSIG, on Linux), and it stops by itself when its end of the
socket pair reads end of file. Run as `python -m webhook_service.dispatchers FD PARENT-PID`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import dataclasses
import logging
import os
import pickle
import signal
import socket
import struct
import sys

from webhook_service import logs
from webhook_service.api.http import OFF
from webhook_service.metrics import Metrics
from webhook_service.process import DispatchProcess, ServerSettings, run

log = logging.getLogger(__name__)

# One byte a message from the server: new deliveries are due, or: send your series.
WAKE = b"w"
SERIES = b"m"
# From the process, once, when it dispatches; then each answer to SERIES is framed by its length.
READY = b"r"
_LENGTH = struct.Struct("!I")
# A process that died is started again after this, doubled while starting keeps failing.
RESTART_SECONDS = 1.0
MAX_RESTART_SECONDS = 30.0
# Past the grace its deliveries have, how long a stopping process has to record them and give claims back.
STOP_MARGIN_SECONDS = 10.0
SERIES_TIMEOUT = 2.0
PR_SET_PDEATHSIG = 1


class DispatcherProcesses:
    """`settings.dispatch_processes` dispatcher processes, numbered from 1."""

    def __init__(self, settings: ServerSettings, metrics: Metrics) -> None:
        self._metrics = metrics
        # Only the server listens; its processes dispatch.
        self._settings = dataclasses.replace(settings, http_listen=OFF, tls=None, dispatch_processes=0)
        self._count = settings.dispatch_processes
        self._running: dict[int, _Child] = {}
        self._keeping: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        """Starts them all at once; returns when each dispatches. One that ends before then fails the start."""
        started = await asyncio.gather(
            *(_Child.start(number, self._settings) for number in range(1, self._count + 1)), return_exceptions=True
        )
        children = [child for child in started if isinstance(child, _Child)]
        failures = [failure for failure in started if isinstance(failure, BaseException)]
        if failures:
            await asyncio.gather(*(child.stop(0.0) for child in children))
            raise failures[0]
        for child in children:
            self._running[child.number] = child
            self._keeping.append(asyncio.create_task(self._keep(child), name=f"dispatcher process {child.number}"))
        log.info(
            "started %d dispatcher process%s: pid %s",
            len(children),
            "" if len(children) == 1 else "es",
            ", ".join(str(child.pid) for child in children),
        )

    def wake(self) -> None:
        for child in self._running.values():
            child.wake()

    async def series(self) -> list[bytes]:
        """Each running process's series; one that does not answer in time is left out of this scrape."""
        found = await asyncio.gather(*(child.series() for child in self._running.values()))
        return [text for text in found if text is not None]

    async def stop(self, grace: float) -> None:
        """Stops each as SIGTERM stops `webhooks dispatch`: its deliveries in flight get `grace`."""
        self._stopping = True
        for task in self._keeping:
            task.cancel()
        await asyncio.gather(*self._keeping, return_exceptions=True)
        await asyncio.gather(*(child.stop(grace) for child in self._running.values()))

    async def _keep(self, child: _Child) -> None:
        """Starts another in the place of `child` whenever it ends, until the server stops."""
        delay = RESTART_SECONDS
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            status = await child.ended()
            if loop.time() - began > MAX_RESTART_SECONDS:
                delay = RESTART_SECONDS
            self._metrics.dispatcher_process_ended()
            log.error(
                "dispatcher process %d (pid %d) %s; starting another in %gs",
                child.number,
                child.pid,
                _ending(status),
                delay,
            )
            while True:
                await asyncio.sleep(delay)
                delay = min(2 * delay, MAX_RESTART_SECONDS)
                try:
                    child = await _Child.start(child.number, self._settings)
                    break
                except (RuntimeError, OSError) as error:
                    log.error("%s; trying again in %gs", error, delay)
            self._running[child.number] = child
            log.info("dispatcher process %d started again: pid %d", child.number, child.pid)


class _Child:
    """One dispatcher process and the server's end of its socket pair."""

    def __init__(
        self,
        number: int,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.number = number
        self.pid = process.pid
        self._process = process
        self._reader = reader
        self._writer = writer
        # Answers come in the order asked, so each arriving answer is the oldest waiter's, even one that
        # stopped waiting.
        self._asked: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self._answering: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, number: int, settings: ServerSettings) -> _Child:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                __name__,
                str(theirs.fileno()),
                str(os.getpid()),
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        child = cls(number, process, reader, writer)
        try:
            writer.write(_framed(pickle.dumps(settings)))
            await child._ready()
        except BaseException:
            await child.stop(0.0)
            raise
        return child

    async def _ready(self) -> None:
        try:
            said = await self._reader.readexactly(1)
        except (asyncio.IncompleteReadError, ConnectionError):
            said = b""
        if said != READY:
            status = await self._process.wait()
            raise RuntimeError(f"dispatcher process {self.number} (pid {self.pid}) {_ending(status)} as it started")
        self._answering = asyncio.create_task(self._read_answers())

    def wake(self) -> None:
        # One wake waiting to be read is enough: a process that does not read never makes the buffer grow.
        if not self._writer.is_closing() and self._writer.transport.get_write_buffer_size() == 0:
            self._writer.write(WAKE)

    async def series(self) -> bytes | None:
        if self._writer.is_closing():
            return None
        answer = asyncio.get_running_loop().create_future()
        self._asked.append(answer)
        self._writer.write(SERIES)
        try:
            return await asyncio.wait_for(asyncio.shield(answer), SERIES_TIMEOUT)
        except (TimeoutError, ConnectionError):
            return None

    async def _read_answers(self) -> None:
        try:
            while True:
                (length,) = _LENGTH.unpack(await self._reader.readexactly(_LENGTH.size))
                text = await self._reader.readexactly(length)
                answer = self._asked.popleft()
                if not answer.done():
                    answer.set_result(text)
        except (asyncio.IncompleteReadError, ConnectionError):
            for answer in self._asked:
                if not answer.done():
                    answer.set_exception(ConnectionError("the dispatcher process ended"))

    async def ended(self) -> int:
        status = await self._process.wait()
        await self._close()
        return status

    async def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL if it has not ended once `grace` and the margin have passed."""
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), grace + STOP_MARGIN_SECONDS)
            except TimeoutError:
                log.error("dispatcher process %d (pid %d) did not stop in time: killed", self.number, self.pid)
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
                await self._process.wait()
        await self._close()

    async def _close(self) -> None:
        self._writer.close()
        if self._answering is not None:
            await asyncio.gather(self._answering, return_exceptions=True)


def _framed(data: bytes) -> bytes:
    return _LENGTH.pack(len(data)) + data


def _ending(status: int) -> str:
    if status < 0:
        # Real-time signals (35-63 on Linux) have no name: a raise here would end the restarts.
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"ended with status {status}"


def main(argv: list[str]) -> int:
    """The dispatcher process: settings from the server over the socket pair, then as `webhooks dispatch`."""
    channel_fd, parent = int(argv[0]), int(argv[1])
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = socket.socket(fileno=channel_fd)
    settings: ServerSettings = pickle.loads(_read_frame(channel))
    logs.configure(settings.log_format, settings.log_level)
    process = _ServersDispatcher(settings)
    answering: set[asyncio.Task[None]] = set()

    def started(stopping: asyncio.Event) -> None:
        task = asyncio.create_task(_serve_server(channel, process, stopping))
        answering.add(task)

    return run(process, started)


class _ServersDispatcher(DispatchProcess):
    # The server tells the outages of the database it shares with this process, once for both.
    outage_level = logging.DEBUG
    # Only the server stops it: Ctrl-C in a terminal reaches the whole process group, and the server, which
    # gets it too, sends SIGTERM. Stopping on its own first would look to the server like a death.
    stop_signals = (signal.SIGTERM,)


def _die_with(parent: int) -> None:
    """Asks the kernel to kill this process when the server dies; if it died already, ends here."""
    prctl = getattr(ctypes.CDLL(None), "prctl", None)
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        sys.exit(1)


def _read_frame(channel: socket.socket) -> bytes:
    (length,) = _LENGTH.unpack(_read_exactly(channel, _LENGTH.size))
    return _read_exactly(channel, length)


def _read_exactly(channel: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = channel.recv(size - len(data))
        if not chunk:
            sys.exit(1)
        data += chunk
    return data


async def _serve_server(channel: socket.socket, process: DispatchProcess, stopping: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(sock=channel)
    writer.write(READY)
    try:
        while data := await reader.read(4096):
            if WAKE in data and process.dispatcher is not None:
                process.dispatcher.wake()
            for _ in range(data.count(SERIES)):
                writer.write(_framed(process.metrics.service_series()))
    except ConnectionError:
        pass
    # The server is gone: nobody is left to stop this process otherwise.
    stopping.set()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
