"""A receiver that answers with whatever bytes a test writes: invalid headers, endless or broken bodies,
which aiohttp's own server would refuse to send."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

from tests.support.running import BackgroundLoop
from tests.support.waiting import eventually


class Connection:
    """One request's connection, from the receiver's side; `sent` counts the bytes the client took."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.sent = 0

    async def send(self, data: bytes) -> None:
        """Returns once the client has taken the data (or the kernel buffered it): a client that stops
        reading holds this up rather than letting the receiver queue bytes in memory."""
        self._writer.write(data)
        await self._writer.drain()
        self.sent += len(data)


Answer = Callable[[Connection], Awaitable[None]]


def head(status: int = 200, headers: Iterable[tuple[bytes, bytes]] = (), reason: bytes = b"OK") -> bytes:
    """A status line and headers, sent as given: nothing is checked or encoded."""
    # The receiver closes every connection after its answer, so the client must not keep it for another request.
    headers = [*headers, (b"Connection", b"close")]
    lines = [b"HTTP/1.1 %d %s" % (status, reason), *(name + b": " + value for name, value in headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class RawReceiver:
    """An asyncio TCP server on loopback. `script(path, *answers)` hands out answers in order, then repeats the
    last; an unscripted path answers 200 "ok". The connection is closed after the answer."""

    def __init__(self) -> None:
        self._loop = BackgroundLoop()
        self._lock = threading.Lock()
        self._answers: dict[str, list[Answer]] = {}
        self._received: Counter[str] = Counter()
        self._sent: Counter[str] = Counter()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server = self._loop.run(self._start())
        self.port = self._server.sockets[0].getsockname()[1]

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(writer)
        path = ""
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1].decode()
            lines = request.lower().split(b"\r\n")
            lengths = [line.split(b":", 1)[1] for line in lines if line.startswith(b"content-length:")]
            await reader.readexactly(int(lengths[0]) if lengths else 0)
            with self._lock:
                self._received[path] += 1
                answers = self._answers.get(path, [_ok])
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
            await answer(connection)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # close() ends the answers still going. Ending normally: Python 3.11's asyncio.start_server fails in
            # its own callback on a handler that ends cancelled.
            pass
        finally:
            with self._lock:
                self._sent[path] += connection.sent
            writer.close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def script(self, path: str, *answers: Answer) -> None:
        with self._lock:
            self._answers[path] = list(answers)

    def received(self, path: str) -> int:
        with self._lock:
            return self._received[path]

    def sent(self, path: str) -> int:
        """Bytes the client took from this path's finished connections."""
        with self._lock:
            return self._sent[path]

    def wait_for(self, path: str, count: int, timeout: float = 15) -> None:
        eventually(
            lambda: self.received(path) >= count,
            timeout,
            lambda: f"{path} received {self.received(path)} requests, expected {count}",
            every=0.02,
        )

    def close(self) -> None:
        self._loop.run(self._stop())
        self._loop.close()

    async def _stop(self) -> None:
        """Ends the answers still going (a trickling body would go on for minutes)."""
        self._server.close()
        for handler in self._handlers:
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()


async def _ok(connection: Connection) -> None:
    await connection.send(head(200, [(b"Content-Length", b"2")]) + b"ok")
