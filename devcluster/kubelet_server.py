"""The one kubelet endpoint the local node serves: ``/containerLogs`` (``kubectl logs``).

The apiserver reaches a node's kubelet at the Node's InternalIP and
``daemonEndpoints.kubeletEndpoint.Port`` over HTTPS, presenting its
``--kubelet-client-certificate``; we serve on 127.0.0.1 with a certificate from the
cluster CA and require a client certificate from that CA (mutual TLS stands in for
kubelet's authorization webhook). Query parameters honoured: ``follow``, ``tailLines``,
``limitBytes``; ``timestamps``, ``sinceSeconds``, ``previous`` are ignored.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("lime-local-node.kubelet")

FOLLOW_POLL = 0.2


def tail_lines(data: bytes, n: int) -> bytes:
    """The last ``n`` lines (pure: unit-tested). A final line without newline counts."""
    if n <= 0:
        return b""
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-n:])


def parse_path(path: str) -> tuple[str, str, str] | None:
    parts = [unquote(p) for p in path.split("/") if p]
    if len(parts) == 4 and parts[0] == "containerLogs":
        return parts[1], parts[2], parts[3]
    return None


class Handler(BaseHTTPRequestHandler):
    agent = None  # set by serve()
    server_version = "lime-local-node"

    def log_message(self, fmt, *args):  # route to our logger, not stderr noise
        log.debug(fmt, *args)

    def _error(self, code: int, message: str) -> None:
        body = message.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        target = parse_path(url.path)
        if target is None:
            self._error(404, f"the local node only serves /containerLogs/<namespace>/<pod>/<container>, not {url.path}")
            return
        ns, pod, container = target
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path: Path | None = self.agent.log_path(ns, pod, container)
        if path is None or not path.exists():
            self._error(404, f'container "{container}" in pod "{pod}" (namespace {ns}) has no log on this node')
            return
        try:
            tail = int(query["tailLines"]) if "tailLines" in query else None
            limit = int(query["limitBytes"]) if "limitBytes" in query else None
        except ValueError:
            self._error(400, "tailLines and limitBytes must be integers")
            return
        follow = query.get("follow", "false").lower() in ("true", "1")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        with open(path, "rb") as f:
            data = f.read()
            if tail is not None:
                data = tail_lines(data, tail)
            sent = 0
            if limit is not None:
                data = data[:limit]
            self.wfile.write(data)
            sent += len(data)
            if not follow:
                return
            while limit is None or sent < limit:
                chunk = f.read(64 * 1024)
                if chunk:
                    if limit is not None:
                        chunk = chunk[: limit - sent]
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    sent += len(chunk)
                    continue
                if not self.agent.is_running(ns, pod, container):
                    rest = f.read()
                    if rest:
                        self.wfile.write(rest if limit is None else rest[: limit - sent])
                    return
                time.sleep(FOLLOW_POLL)


def make_context(pki: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki / "kubelet-serving.crt"), str(pki / "kubelet-serving.key"))
    ctx.load_verify_locations(str(pki / "ca.crt"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def serve_in_thread(agent) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"agent": agent})
    server = ThreadingHTTPServer(("127.0.0.1", agent.cfg.kubelet_port), handler)
    server.daemon_threads = True
    server.socket = make_context(agent.cfg.pki_dir).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="kubelet-server", daemon=True).start()
    log.info("serving /containerLogs on https://127.0.0.1:%s", agent.cfg.kubelet_port)
    return server
