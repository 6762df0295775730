"""TLS handshakes that fail, logged as one line each at WARNING naming the peer and the reason.

gRPC's C core makes the handshake, so no Python code sees one fail; the core only writes to the process's
standard error, and names the peer only in its `handshaker` trace. So a `serve` that speaks TLS turns that trace
on (GRPC_TRACE, read when gRPC is first imported) and hands its standard error to a relay process, this module
run as `python -m webhook_service.handshakes`: the relay turns each failed handshake into one log line, drops
the rest of the trace, and passes every other line on as it came. Python's own output (the log) keeps going to
the real standard error directly. A process of its own, not a thread: what the core writes just before the
server dies (a failed check, then abort) is still read and passed on after the server is gone.

Repeats are summed rather than logged: the same failure from the same host is logged at most once a minute (a
client retrying with back-off, a scanner).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from webhook_service import logs
from webhook_service.flags import env_name

log = logging.getLogger("webhook_service.tls")

TRACE = "GRPC_TRACE"
REPEAT_SECONDS = 60.0
MAX_KINDS = 1000

# A line the core writes: severity, date, time, thread, source file and line.
_CORE_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ (?P<file>[\w.]+):\d+\] (?P<text>.*)$", re.S)
# The lines a message of the core continues on: the source locations an error carries, then the rest of it.
_CONTINUED = re.compile(r"^(=== Source Location Trace: ===|[\w/.-]+\.(cc|h):\d+| shutdown=.*|)\s*$", re.S)
_FAILED = re.compile(r"CallNextHandshakerLocked: error=(?P<error>.*?)\s+shutdown=", re.S)
_PEER = re.compile(r"grpc\.internal\.endpoint_peer_address=(?:ipv4:|ipv6:)?(?P<peer>[^,}\s]+)")
_OPENSSL_REASON = re.compile(r"OPENSSL_internal:(?P<reason>[A-Z0-9_]+)")
# Not a failure of the peer's: the server stopping, or a connection closed before it said anything (a port check).
_NOT_FAILURES = ("OK", "Listener stopped serving", "Connection going away", "Connection to be disconnected")
_CLOSED = ("handshaker shutdown", "Handshake read failed")

_NO_TLS = "the client does not speak TLS (a plaintext client, such as grpcurl -plaintext?)"
_REFUSED_OURS = "the client refused the server's certificate (does it trust the CA that signed --tls-cert?)"
WORDS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the client sent no certificate, and --tls-client-ca requires one",
    "CERTIFICATE_VERIFY_FAILED": "the client's certificate is not signed by --tls-client-ca, or is not valid now",
    "WRONG_VERSION_NUMBER": _NO_TLS,
    "HTTP_REQUEST": _NO_TLS,
    "TLSV1_ALERT_UNKNOWN_CA": _REFUSED_OURS,
    "SSLV3_ALERT_BAD_CERTIFICATE": _REFUSED_OURS,
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": _REFUSED_OURS,
    "NO_SHARED_CIPHER": "the client offers no TLS version or cipher the server accepts",
    "UNSUPPORTED_PROTOCOL": "the client offers no TLS version or cipher the server accepts",
}


# The relay of this process, once started; kept for the process's life.
_relay_process: subprocess.Popen[bytes] | None = None


def trace_if_serving_tls(argv: Sequence[str]) -> bool:
    """Turns the handshake trace on when `argv` (a command line of `webhooks`) serves TLS; first thing, since
    gRPC reads GRPC_TRACE when it is first imported, and building the parser imports it. Returns whether it
    did: left alone when GRPC_TRACE is set already, as whoever set it is reading the core's own lines."""
    serves_tls = argv[:1] == ["serve"] and (
        bool(os.environ.get(env_name("--tls-cert")))
        or any(arg == "--tls-cert" or arg.startswith("--tls-cert=") for arg in argv)
    )
    if not serves_tls or TRACE in os.environ:
        return False
    os.environ[TRACE] = "handshaker"
    return True


def start_relay(log_format: str, log_level: str) -> None:
    """Sends the core's output through the relay, once `trace_if_serving_tls` turned the trace on."""
    global _relay_process
    sys.stderr.flush()
    # The relay writes where standard error goes now; it ignores the terminal's signals and ends when the last
    # writer of the pipe (this process, however it ends) is gone.
    _relay_process = subprocess.Popen(
        [sys.executable, "-m", __name__, log_format, log_level], stdin=subprocess.PIPE, start_new_session=True
    )
    assert _relay_process.stdin is not None
    real_stderr = os.dup(2)
    os.dup2(_relay_process.stdin.fileno(), 2)
    _relay_process.stdin.close()
    # Python's own output, the log among it, goes to the real standard error, never through the relay.
    encoding = sys.stderr.encoding
    sys.stderr = os.fdopen(real_stderr, "w", buffering=1, encoding=encoding, errors="backslashreplace")


@dataclass
class _Told:
    at: float
    more: int = 0


class HandshakeLog:
    """Reads the core's lines: a failed handshake becomes a log line, the rest of the trace goes, and every
    other line is given to `passed` as it came."""

    def __init__(self, passed: Callable[[bytes], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._passed = passed
        self._clock = clock
        self._record: list[str] = []
        self._told: dict[tuple[str, str], _Told] = {}

    def feed(self, lines: Iterable[bytes]) -> None:
        for raw in lines:
            self._line(raw)
        self._end_record()

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\n")
        if self._record and _CONTINUED.match(text):
            self._record.append(text)
        else:
            self._end_record()
            core = _CORE_LINE.match(text)
            if core is None or not _ours(core["file"], core["text"]):
                self._passed(raw)
                return
            self._record = [core["text"]]
        # The arguments come last: the record is whole, and told now rather than when the next line comes.
        if "args={" in text:
            self._end_record()

    def _end_record(self) -> None:
        if not self._record:
            return
        record, self._record = "\n".join(self._record), []
        failed = _FAILED.search(record)
        peer = _PEER.search(record)
        if failed is None or peer is None:
            return
        error = failed["error"].splitlines()[0].strip()
        if error.startswith(_NOT_FAILURES) or any(closed in error for closed in _CLOSED):
            return
        self._tell(urllib.parse.unquote(peer["peer"]), error)

    def _tell(self, peer: str, error: str) -> None:
        code = _OPENSSL_REASON.search(error)
        reason = code["reason"] if code else error.split(": ", 1)[-1]
        words = _words(reason)
        host = peer.rsplit(":", 1)[0]
        moment = self._clock()
        told = self._told.get((host, reason))
        if told is not None and moment < told.at + REPEAT_SECONDS:
            told.more += 1
            return
        if len(self._told) >= MAX_KINDS:
            self.flush()
            self._told.clear()
        more = "" if told is None or not told.more else f"; {told.more} more like it from {host} in the last minute"
        log.warning("TLS handshake with %s failed: %s%s", peer, words, more)
        self._told[host, reason] = _Told(moment)

    def flush(self) -> None:
        """Tells the repeats not told yet, as the relay ends."""
        for (host, reason), told in self._told.items():
            if told.more:
                log.warning("%d more TLS handshakes from %s failed: %s", told.more, host, _words(reason))
                told.more = 0


def _words(reason: str) -> str:
    return f"{WORDS[reason]} ({reason})" if reason in WORDS else reason


def _ours(file: str, text: str) -> bool:
    """The lines of the trace this module turned on, and the core's own line about the same failure."""
    return (
        file == "handshaker.cc"
        or (file == "channel_trace.h" and text.startswith("handshake manager"))
        or (file == "ssl_transport_security.cc" and text.startswith("Handshake failed"))
        or (file == "trace.cc" and text.startswith("gRPC Tracers:"))
    )


def _relay(source: BinaryIO, sink: BinaryIO) -> None:
    def passed(raw: bytes) -> None:
        sink.write(raw)
        sink.flush()

    handshakes = HandshakeLog(passed)
    handshakes.feed(source)
    handshakes.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.configure(sys.argv[1], sys.argv[2])
    _relay(sys.stdin.buffer, sys.stderr.buffer)
