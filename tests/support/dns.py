"""A DNS server on loopback that answers for some names and never for the others, as a black-holed zone."""

from __future__ import annotations

import asyncio
import struct
import threading
from collections import Counter
from ipaddress import IPv4Address

from tests.support.running import BackgroundLoop

A, AAAA, IN = 1, 28, 1


class BlackHoleDns(asyncio.DatagramProtocol):
    """Answers A queries for the names in `answers` (and AAAA ones with no address); drops every other query
    without a word, so the asker waits for its own timeout. `asked` counts the queries per name."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = {name.lower(): IPv4Address(address) for name, address in answers.items()}
        self._lock = threading.Lock()
        self._asked: Counter[str] = Counter()
        self._loop = BackgroundLoop()
        self._transport = self._loop.run(self._start())
        self.port: int = self._transport.get_extra_info("sockname")[1]

    async def _start(self) -> asyncio.DatagramTransport:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        return transport

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query_id, labels, end = _question(data)
        name = ".".join(labels).lower()
        qtype = struct.unpack("!H", data[end - 4 : end - 2])[0]
        with self._lock:
            self._asked[name] += 1
        if name not in self.answers:
            return
        answers = b""
        if qtype == A:
            # The name as a pointer to the question's, type A, class IN, a minute, four bytes of address.
            answers = struct.pack("!HHHIH", 0xC00C, A, IN, 60, 4) + self.answers[name].packed
        # A response to a recursive query, recursion available, no error; the question as asked.
        header = struct.pack("!HHHHHH", query_id, 0x8180, 1, 1 if answers else 0, 0, 0)
        self._transport.sendto(header + data[12:end] + answers, addr)

    def asked(self, name: str) -> int:
        with self._lock:
            return self._asked[name.lower()]

    def close(self) -> None:
        self._loop.loop.call_soon_threadsafe(self._transport.close)
        self._loop.close()


def _question(data: bytes) -> tuple[int, list[str], int]:
    """The query's id, its question's name as labels, and where the question (with its type and class) ends."""
    query_id = struct.unpack("!H", data[:2])[0]
    labels = []
    at = 12
    while data[at]:
        length = data[at]
        labels.append(data[at + 1 : at + 1 + length].decode("ascii", "replace"))
        at += 1 + length
    return query_id, labels, at + 1 + 4
