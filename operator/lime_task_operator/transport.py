"""A lean HTTP/1.1 client for the API server: keep-alive TLS connections, bytes in and out.

Why not the kubernetes client's request path (urllib3 under http.client): measured on
this project's 2-core machine, one small GET through it cost about 0.5 ms of CPU, almost
all of it in Python code around the socket (http.client parses every response's headers
with the email package: about 900 Python calls per request); the same GET written and
read here costs about 0.14 ms. The operator makes four requests per task and reads about
fourteen watch events per task, so that was a third of its CPU per task (issue #16).

What it does: HTTP/1.1 with keep-alive (RFC 9112), responses delimited by
Content-Length or chunked transfer coding, or by the connection's close; no compression
is asked for, no proxy is supported (``Transport.supports`` says so, and kube.py then
keeps the kubernetes client's path). Credentials come from the kubernetes client's
``Configuration`` as loaded from the kubeconfig or the pod's service account: the CA,
a client certificate, and the bearer token, read per request through
``Configuration.auth_settings()`` so that a rotated service-account token is picked up.

Connections are pooled (last in, first out); each is used by one thread at a time. An
idle connection the API server closed meanwhile is noticed before use (it reads as
ready), and a reused connection that fails before any byte of the answer is retried
once on a new one: every request the operator makes is safe to repeat (creates adopt
a 409, writes carry a resourceVersion or uid precondition).
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

# Longest status or header line accepted (the API server's are far shorter).
MAX_LINE = 65536
# Idle connections kept; the rest are closed when returned.
MAX_IDLE = 64


class TransportError(Exception):
    """No (complete) answer: connection refused, reset, timed out, or not HTTP."""


class Transport:
    """HTTPS (or HTTP) connections to the API server at ``configuration.host``."""

    def __init__(self, configuration: Any) -> None:
        url = urlsplit(configuration.host)
        self._secure = url.scheme == "https"
        self._address = (url.hostname or "localhost", url.port or (443 if self._secure else 80))
        self._prefix = url.path.rstrip("/")
        self._host_header = f"Host: {url.netloc}\r\n".encode()
        self._configuration = configuration
        self._context = _ssl_context(configuration) if self._secure else None
        self._server_name = getattr(configuration, "tls_server_name", None) or url.hostname
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    @staticmethod
    def supports(configuration: Any) -> bool:
        """Whether this transport can talk to that API server (no proxy configured)."""
        return not getattr(configuration, "proxy", None) and urlsplit(configuration.host).scheme in ("http", "https")

    # ------------------------------------------------------------ requests

    def request(self, method: str, target: str, body: Optional[bytes], content_type: str,
                timeout: tuple[float, float]) -> tuple[int, bytes]:
        """(HTTP status, body) of one request; ``target`` is the path with its query.

        Raises TransportError when there is no complete answer. ``timeout`` is (connect,
        read) in seconds, the read timeout applying to each wait for data."""
        head = self._head(method, target, body, content_type)
        for attempt in (1, 2):
            connection, reused = self._take(timeout)
            try:
                connection.send(head, body)
                status, headers = connection.read_head(fresh=not reused)
                data = connection.read_body(status, headers, method)
            except _Stale:
                connection.close()
                if attempt == 1:
                    continue
                raise TransportError(f"{method} {target}: the API server closed the connection")
            except (OSError, ValueError, TransportError) as error:
                connection.close()
                raise TransportError(f"{method} {target}: {error}") from error
            self._give_back(connection, headers)
            return status, data
        raise AssertionError("unreachable")

    def open(self, method: str, target: str, timeout: tuple[float, float]) -> "StreamResponse":
        """Send a request and return its response once the head is read; the body is
        read through the returned object (a watch's newline-delimited JSON)."""
        head = self._head(method, target, None, "")
        for attempt in (1, 2):
            connection, reused = self._take(timeout)
            try:
                connection.send(head, None)
                status, headers = connection.read_head(fresh=not reused)
            except _Stale:
                connection.close()
                if attempt == 1:
                    continue
                raise TransportError(f"{method} {target}: the API server closed the connection")
            except (OSError, ValueError, TransportError) as error:
                connection.close()
                raise TransportError(f"{method} {target}: {error}") from error
            return StreamResponse(self, connection, status, headers)
        raise AssertionError("unreachable")

    def _head(self, method: str, target: str, body: Optional[bytes], content_type: str) -> bytes:
        lines = [f"{method} {self._prefix}{target} HTTP/1.1\r\n".encode(), self._host_header,
                 b"Accept: application/json\r\nUser-Agent: lime-task-operator\r\n"]
        auth = (self._configuration.auth_settings() or {}).get("BearerToken")
        if auth and auth.get("value"):
            lines.append(f"{auth['key']}: {auth['value']}\r\n".encode())
        if body is not None:
            lines.append(f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n".encode())
        lines.append(b"\r\n")
        return b"".join(lines)

    # ------------------------------------------------------------ the pool

    def _take(self, timeout: tuple[float, float]) -> tuple["_Connection", bool]:
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._connect(timeout), False
            if connection.usable():
                connection.sock.settimeout(timeout[1])
                return connection, True
            connection.close()

    def _connect(self, timeout: tuple[float, float]) -> "_Connection":
        try:
            sock = socket.create_connection(self._address, timeout=timeout[0])
        except OSError as error:
            raise TransportError(f"cannot connect to {self._address[0]}:{self._address[1]}: {error}") from error
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_hostname=self._server_name)
            sock.settimeout(timeout[1])
        except (OSError, ssl.SSLError) as error:
            sock.close()
            raise TransportError(f"TLS with {self._address[0]}:{self._address[1]}: {error}") from error
        return _Connection(sock)

    def _give_back(self, connection: "_Connection", headers: dict[bytes, bytes]) -> None:
        if connection.closed or b"close" in headers.get(b"connection", b"").lower():
            connection.close()
            return
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class _Stale(Exception):
    """A reused connection ended before any byte of the answer: send again on a new one."""


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb", buffering=65536)
        self.closed = False

    def usable(self) -> bool:
        """An idle keep-alive connection has nothing to read; readable means the server
        closed it (or sent something unasked): not to be reused."""
        if self.closed:
            return False
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return False
        try:
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False

    def send(self, head: bytes, body: Optional[bytes]) -> None:
        self.sock.sendall(head + body if body is not None and len(body) < 16384 else head)
        if body is not None and len(body) >= 16384:
            self.sock.sendall(body)

    def _line(self) -> bytes:
        line = self.file.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise TransportError("header line too long")
        return line

    def read_head(self, fresh: bool) -> tuple[int, dict[bytes, bytes]]:
        """The status code and the headers (lower-case names) of the answer."""
        try:
            line = self._line()
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
            if fresh:
                raise
            raise _Stale() from None
        if not line:
            if fresh:
                raise TransportError("connection closed without an answer")
            raise _Stale()
        if not line.startswith(b"HTTP/1.") or len(line) < 12:
            raise TransportError(f"not an HTTP answer: {line[:60]!r}")
        status = int(line[9:12])
        headers: dict[bytes, bytes] = {}
        while True:
            line = self._line()
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise TransportError("connection closed in the headers")
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if 100 <= status < 200:  # an interim answer (not asked for): the real one follows
            return self.read_head(fresh=True)
        return status, headers

    def read_body(self, status: int, headers: dict[bytes, bytes], method: str,
                  limit: Optional[int] = None) -> bytes:
        if method == "HEAD" or status in (204, 304):
            return b""  # never a body (RFC 9112 section 6.3)
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            parts = []
            for chunk in self.chunks():
                parts.append(chunk)
            return b"".join(parts)
        length = headers.get(b"content-length")
        if length is not None:
            size = int(length)
            data = self.file.read(size)
            if len(data) < size:
                raise TransportError("connection closed in the body")
            return data
        self.closed = True  # delimited by the close: this connection is done
        return self.file.read() if limit is None else self.file.read(limit)

    def chunks(self) -> Iterator[bytes]:
        """The payloads of a chunked body, as they arrive (a watch: one event each)."""
        while True:
            line = self._line()
            if not line:
                raise TransportError("connection closed in a chunked body")
            size = int(line.split(b";", 1)[0], 16)
            if size == 0:
                while self._line() not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                return
            data = self.file.read(size)
            if len(data) < size:
                raise TransportError("connection closed in a chunk")
            self.file.read(2)  # CRLF
            yield data

    def close(self) -> None:
        self.closed = True
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


class StreamResponse:
    """An answer whose body is read as it arrives (a watch), the shape kube.py's callers
    use: ``status``, ``read()``, ``stream()``, ``release_conn()``, ``shutdown()``."""

    def __init__(self, transport: Transport, connection: _Connection, status: int,
                 headers: dict[bytes, bytes]) -> None:
        self._transport = transport
        self._connection = connection
        self._headers = headers
        self.status = status
        self._done = False

    def read(self, amount: Optional[int] = None) -> bytes:
        """The whole body (at most ``amount`` bytes of a body without a length)."""
        try:
            data = self._connection.read_body(self.status, self._headers, "GET", amount)
        except (OSError, ValueError) as error:
            self._connection.close()
            raise TransportError(str(error)) from error
        self._done = True
        if amount is not None and len(data) > amount:
            data = data[:amount]
        return data

    def stream(self, amount: int = 65536, decode_content: bool = True) -> Iterator[bytes]:
        """The body's pieces as they arrive (``amount`` and ``decode_content`` are
        accepted for urllib3's signature; nothing is compressed)."""
        try:
            if b"chunked" in self._headers.get(b"transfer-encoding", b"").lower():
                yield from self._connection.chunks()
            else:
                while True:
                    data = self._connection.file.read1(amount)
                    if not data:
                        break
                    yield data
                self._connection.closed = True
        except (OSError, ValueError) as error:
            self._connection.close()
            raise TransportError(str(error)) from error
        self._done = True

    def release_conn(self) -> None:
        """Back to the pool if the body was read to its end, else closed."""
        if self._done and not self._connection.closed:
            self._transport._give_back(self._connection, self._headers)
        else:
            self._connection.close()

    def shutdown(self) -> None:
        """Unblock a thread waiting in ``stream()`` (from another thread)."""
        try:
            self._connection.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _ssl_context(configuration: Any) -> ssl.SSLContext:
    """TLS as the kubernetes client's configuration says: its CA (else the system's),
    client certificate, and whether to verify the server at all."""
    context = ssl.create_default_context(cafile=getattr(configuration, "ssl_ca_cert", None) or None)
    if getattr(configuration, "cert_file", None):
        context.load_cert_chain(configuration.cert_file, getattr(configuration, "key_file", None) or None)
    if not getattr(configuration, "verify_ssl", True):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif getattr(configuration, "assert_hostname", None) is False:
        context.check_hostname = False
    return context
