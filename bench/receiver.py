"""The lean receiver, run in its own process so it shares no GIL with the load or the service.

`python -m bench.receiver` prints `receiver listening on 127.0.0.1:PORT`, then answers 200 to every POST on
`/hook`, keeping the arrival time and the Pulumi-Webhook-ID of each. The bench reads them over `/_bench/*`.
`ReceiverProcess` is the bench's side: it starts the process and reads what it recorded.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from dataclasses import dataclass

from aiohttp import web

from bench.child import Child, until_signalled

HOOK_PATH = "/hook"
ID_HEADER = "Pulumi-Webhook-ID"


class Recorder:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.times: list[float] = []

    async def hook(self, request: web.Request) -> web.Response:
        at = time.time()
        await request.read()
        self.ids.append(request.headers.get(ID_HEADER, ""))
        self.times.append(at)
        return web.Response(text="ok")

    async def count(self, request: web.Request) -> web.Response:
        return web.Response(text=str(len(self.ids)))

    async def log(self, request: web.Request) -> web.Response:
        start = int(request.query.get("start", "0"))
        return web.json_response({"ids": self.ids[start:], "times": self.times[start:]})

    async def reset(self, request: web.Request) -> web.Response:
        self.ids = []
        self.times = []
        return web.Response(text="0")


async def serve() -> None:
    recorder = Recorder()
    app = web.Application()
    app.router.add_post(HOOK_PATH, recorder.hook)
    app.router.add_get("/_bench/count", recorder.count)
    app.router.add_get("/_bench/log", recorder.log)
    app.router.add_post("/_bench/reset", recorder.reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    await web.SockSite(runner, listener, backlog=1024).start()
    print(f"receiver listening on 127.0.0.1:{port}", flush=True)
    await until_signalled()
    await runner.cleanup()


@dataclass(frozen=True)
class Receipts:
    """What the receiver recorded, in arrival order: one delivery ID and wall-clock time per request."""

    ids: list[str]
    times: list[float]


class ReceiverProcess(Child):
    def __init__(self) -> None:
        super().__init__("bench.receiver")
        self.base = f"http://{self.address}"
        self.url = self.base + HOOK_PATH

    def _call(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(self.base + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=30) as response:
            body: bytes = response.read()
            return body

    def count(self) -> int:
        return int(self._call("/_bench/count"))

    def reset(self) -> None:
        self._call("/_bench/reset", "POST")

    def receipts(self) -> Receipts:
        data = json.loads(self._call("/_bench/log"))
        return Receipts(data["ids"], data["times"])

    def wait_for(self, count: int, timeout: float) -> int:
        """Polls until `count` requests arrived or `timeout` passed; returns how many arrived."""
        deadline = time.monotonic() + timeout
        seen = self.count()
        while seen < count and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = self.count()
        return seen


if __name__ == "__main__":
    asyncio.run(serve())
