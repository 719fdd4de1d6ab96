"""The operator's lean HTTP/1.1 client against a scripted server on the loopback.

Each test's server answers requests in turn with the raw bytes a script gives, and
records what it received and how many connections were opened.
"""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest

from lime_task_operator.transport import Transport, TransportError


class Server:
    """Accepts connections; for each request (head read up to CRLFCRLF, then the body by
    Content-Length) sends the next scripted answer. An answer that is a callable gets the
    connection (to close it, stall, ...)."""

    def __init__(self, answers: list) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        data = b""
        try:
            while True:
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        return
                    data += more
                head, _, data = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(data) < length:
                    data += conn.recv(65536)
                body, data = data[:length], data[length:]
                self.requests.append(head + b"\r\n\r\n" + body)
                answer = self.answers.pop(0)
                if callable(answer):
                    answer(conn)
                    return
                conn.sendall(answer)
        except OSError:
            return

    def transport(self, token: str = "") -> Transport:
        auth = {"BearerToken": {"in": "header", "key": "authorization", "value": f"Bearer {token}"}} if token else {}
        return Transport(SimpleNamespace(host=f"http://127.0.0.1:{self.port}", auth_settings=lambda: auth))


def ok(body: bytes = b"{}", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra + \
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def chunked(*pieces: bytes, status: bytes = b"200 OK") -> bytes:
    out = b"HTTP/1.1 " + status + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
    for piece in pieces:
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n\r\n"


TIMEOUT = (2.0, 2.0)


def test_requests_reuse_one_connection_whatever_the_body_delimiting():
    server = Server([ok(b'{"a":1}'), chunked(b'{"b"', b':2}'), b"HTTP/1.1 204 No Content\r\n\r\n", ok()])
    transport = server.transport(token="t0k")
    assert transport.request("GET", "/api/v1/x?limit=1", None, "", TIMEOUT) == (200, b'{"a":1}')
    assert transport.request("PATCH", "/api/v1/x/status", b'[{"op":"add"}]', "application/json-patch+json",
                             TIMEOUT) == (200, b'{"b":2}')
    assert transport.request("DELETE", "/api/v1/x", b"{}", "application/json", TIMEOUT) == (204, b"")
    assert transport.request("GET", "/api/v1/y", None, "", TIMEOUT) == (200, b"{}")
    assert server.connections == 1
    first, patch = server.requests[0], server.requests[1]
    assert first.startswith(b"GET /api/v1/x?limit=1 HTTP/1.1\r\n") and b"authorization: Bearer t0k\r\n" in first
    assert b"Content-Type: application/json-patch+json\r\nContent-Length: 14\r\n" in patch
    assert patch.endswith(b'[{"op":"add"}]')


def test_a_connection_the_server_closed_while_idle_is_not_used_again():
    def answer_then_close(conn):
        conn.sendall(ok(b"1"))
        conn.close()

    server = Server([answer_then_close, ok(b"2")])
    transport = server.transport()
    assert transport.request("GET", "/a", None, "", TIMEOUT) == (200, b"1")
    time.sleep(0.1)  # the close reaches the client: the idle connection reads as ready
    assert transport.request("GET", "/b", None, "", TIMEOUT) == (200, b"2")
    assert server.connections == 2


def test_a_reused_connection_closed_before_answering_is_retried_once_on_a_new_one():
    server = Server([ok(b"1"), lambda conn: conn.close(), ok(b"3")])
    transport = server.transport()
    assert transport.request("GET", "/a", None, "", TIMEOUT) == (200, b"1")
    assert transport.request("POST", "/b", b"{}", "application/json", TIMEOUT) == (200, b"3")
    assert server.connections == 2 and len(server.requests) == 3


def test_connection_close_is_honoured():
    server = Server([ok(b"1", extra=b"Connection: close\r\n"), ok(b"2")])
    transport = server.transport()
    transport.request("GET", "/a", None, "", TIMEOUT)
    transport.request("GET", "/b", None, "", TIMEOUT)
    assert server.connections == 2


def test_a_stream_yields_each_chunk_as_it_comes_and_goes_back_to_the_pool_when_read_out():
    server = Server([chunked(b'{"type":"ADDED"}\n', b'{"type":"DELETED"}\n'), ok()])
    transport = server.transport()
    response = transport.open("GET", "/api/v1/pods?watch=1", TIMEOUT)
    assert response.status == 200
    assert list(response.stream()) == [b'{"type":"ADDED"}\n', b'{"type":"DELETED"}\n']
    response.release_conn()
    transport.request("GET", "/x", None, "", TIMEOUT)
    assert server.connections == 1


def test_shutdown_ends_a_stream_blocked_in_another_thread():
    stalled = threading.Event()

    def stall(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        stalled.wait(10)

    server = Server([stall])
    response = server.transport().open("GET", "/watch", (2.0, 30.0))
    pieces, errors = [], []

    def read():
        try:
            for piece in response.stream():
                pieces.append(piece)
        except TransportError as error:
            errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.2)
    started = time.monotonic()
    response.shutdown()
    reader.join(5)
    stalled.set()
    assert not reader.is_alive() and time.monotonic() - started < 2
    assert pieces == [b"hello"] and errors


def test_no_server_is_a_transport_error_at_once():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    transport = Transport(SimpleNamespace(host=f"http://127.0.0.1:{port}", auth_settings=lambda: {}))
    with pytest.raises(TransportError, match="cannot connect"):
        transport.request("GET", "/", None, "", TIMEOUT)


def test_a_server_that_never_answers_fails_after_the_read_timeout():
    stalled = threading.Event()
    server = Server([lambda conn: stalled.wait(10)])
    started = time.monotonic()
    with pytest.raises(TransportError):
        server.transport().request("GET", "/slow", None, "", (1.0, 0.5))
    stalled.set()
    assert time.monotonic() - started < 2


def test_an_answer_that_is_not_http_is_refused_with_what_came():
    server = Server([b"SSH-2.0-OpenSSH\r\n"])
    with pytest.raises(TransportError, match="not an HTTP answer"):
        server.transport().request("GET", "/", None, "", TIMEOUT)


def test_a_body_cut_short_is_an_error_not_a_short_answer():
    def cut(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
        conn.close()

    server = Server([cut])
    with pytest.raises(TransportError, match="closed in the body"):
        server.transport().request("GET", "/", None, "", TIMEOUT)


def test_a_proxy_in_the_configuration_is_not_supported():
    assert Transport.supports(SimpleNamespace(host="https://api.example:6443", proxy=None))
    assert not Transport.supports(SimpleNamespace(host="https://api.example:6443", proxy="http://proxy:3128"))
