"""A failed TLS handshake is one WARNING line naming the peer and the reason; repeats are summed, the core's trace
never shows, and the rest of standard error passes as it came."""

from __future__ import annotations

import json
import logging
import socket
import ssl
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.certs import Authority
from tests.support.process import ServiceProcess
from webhook_service.handshakes import HandshakeLog

NO_CERTIFICATE = "the client sent no certificate, and --tls-client-ca requires one (PEER_DID_NOT_RETURN_A_CERTIFICATE)"
NO_TLS = "the client does not speak TLS (a plaintext client, such as grpcurl -plaintext?) (WRONG_VERSION_NUMBER)"
TRACE_WORDS = ("handshaker.cc", "Source Location", "ssl_transport_security", "gRPC Tracers", "endpoint_peer_address")


def plaintext_client(port: int) -> int:
    """A gRPC client without TLS: the HTTP/2 preface, in clear. Returns its own port."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        connection.recv(100)
        return int(connection.getsockname()[1])


def client_without_certificate(port: int, ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        own = int(raw.getsockname()[1])
        with (
            context.wrap_socket(raw, server_hostname="localhost") as connection,
            # TLS 1.3: the server refuses the missing certificate after the client's side of the handshake is done.
            pytest.raises((ssl.SSLError, ConnectionError)),
        ):
            if connection.recv(100) == b"":
                raise ConnectionError("closed")
    return own


def port_check(port: int) -> None:
    """What a balancer's TCP check does: connect, then close."""
    socket.create_connection(("127.0.0.1", port), timeout=10).close()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_failed_handshake_is_one_warning_naming_the_peer_and_the_reason(tmp_path: Path, log_format: str) -> None:
    server_ca, client_ca = Authority(tmp_path, "server CA"), Authority(tmp_path, "client CA")
    server_pem = server_ca.issue("server", server=True)
    good = client_ca.issue("client", server=False)
    service = ServiceProcess(
        [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            str(server_pem.cert),
            "--tls-key",
            str(server_pem.key),
            "--tls-client-ca",
            str(client_ca.pem.cert),
            "--log-format",
            log_format,
        ],
        cwd=tmp_path,
    )
    try:
        port_check(service.port)
        plaintext = plaintext_client(service.port)
        anonymous = [client_without_certificate(service.port, server_ca.pem.cert) for _ in range(3)]
        credentials = grpc.ssl_channel_credentials(
            server_ca.pem.cert.read_bytes(), good.key.read_bytes(), good.cert.read_bytes()
        )
        with grpc.secure_channel(service.target, credentials) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        service.wait_for_log(f"127.0.0.1:{anonymous[0]} failed")
    finally:
        assert service.terminate() == 0
    lines = service.log.splitlines()
    if log_format == "json":
        records = [json.loads(line) for line in lines]
        warnings = [r["message"] for r in records if r["level"] == "WARNING" and r["logger"] == "webhook_service.tls"]
        assert any(r["message"].startswith("listening on") for r in records)
    else:
        warnings = [
            line.split(" webhook_service.tls: ", 1)[1] for line in lines if " WARNING webhook_service.tls: " in line
        ]
        assert any("listening on" in line for line in lines)
    # One line for each peer and reason; the two retries of the client without a certificate are summed, and
    # told as the server stops. The port check is no failure of TLS.
    assert warnings == [
        f"TLS handshake with 127.0.0.1:{plaintext} failed: {NO_TLS}",
        f"TLS handshake with 127.0.0.1:{anonymous[0]} failed: {NO_CERTIFICATE}",
        f"2 more TLS handshakes from 127.0.0.1 failed: {NO_CERTIFICATE}",
    ], service.log
    for words in TRACE_WORDS:
        assert words not in service.log, service.log


def test_the_relay_passes_every_other_line_on_as_it_came(caplog: pytest.LogCaptureFixture) -> None:
    """The core's trace of a failed and of a successful handshake, among lines that are not the relay's."""
    transcript = [
        b"I1201 11:59:53.073295    8115 trace.cc:91] gRPC Tracers: handshaker\n",
        b"E1201 11:59:54.000001    8115 chttp2_server.cc:12] Failed to create channel: UNKNOWN\n",
        b"I1201 11:59:55.504088    6276 handshaker.cc:80] handshake_manager 0x7f: adding handshaker security\n",
        b"I1201 11:59:55.812875    8122 ssl_transport_security.cc:2563] Handshake failed with error SSL_ERROR_SSL: "
        b"error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER: Invalid certificate verification "
        b"context\n",
        b"I1201 11:59:55.812900    8122 handshaker.cc:155] CallNextHandshakerLocked: error=UNKNOWN: Ssl handshake "
        b"failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:"
        b"WRONG_VERSION_NUMBER: Invalid certificate verification context: OK\n",
        b"=== Source Location Trace: === \n",
        b"src/core/util/status_helper.cc:68\n",
        b" shutdown=false index=2, args={endpoint=0x7f, args={grpc.internal.endpoint_local_address="
        b"ipv4:127.0.0.1:50993, grpc.internal.endpoint_peer_address=ipv6:%5B::1%5D:56592, grpc.internal.x=0}}\n",
        b"Fatal Python error: a line of somebody else's\n",
        b"I1201 11:59:55.812913    8122 channel_trace.h:396] handshake manager 0x7f: Failed with error: UNKNOWN\n",
        b"=== Source Location Trace: === \n",
        b"src/core/util/status_helper.cc:68\n",
        b"\n",
        b"not utf-8: \xff\xfe\n",
        b"I1201 11:59:56.504191    6276 handshaker.cc:155] CallNextHandshakerLocked: error=OK shutdown=false index=0, "
        b"args={endpoint=0x7f, args={grpc.internal.endpoint_peer_address=ipv4:127.0.0.1:58086}}\n",
        b"W1201 11:59:57.000000    6276 tcp_posix.cc:7] something else entirely",
    ]
    passed: list[bytes] = []
    with caplog.at_level(logging.WARNING, logger="webhook_service.tls"):
        HandshakeLog(passed.append).feed(transcript)
    assert passed == [transcript[1], transcript[8], transcript[13], transcript[15]]
    assert [record.getMessage() for record in caplog.records] == [f"TLS handshake with [::1]:56592 failed: {NO_TLS}"]
