"""Readiness probes used by ``up`` and ``status``: small HTTP(S)/TCP checks, no client libs.

Kept free of the kubernetes package so that ``scripts/cluster status`` and a warm ``up``
answer quickly.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.request
from datetime import datetime, timezone
from pathlib import Path


def http_ok(url: str, timeout: float = 2.0) -> bool:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status == 200


def https_ok_insecure(url: str, timeout: float = 2.0) -> bool:
    """For components serving a self-signed certificate of their own (controller-manager, scheduler)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
        return resp.status == 200


def admin_context(pki: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def api_get(url: str, pki: Path, timeout: float = 2.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout, context=admin_context(pki)) as resp:
        return json.loads(resp.read())


def apiserver_ready(base: str, pki: Path) -> bool:
    with urllib.request.urlopen(f"{base}/readyz", timeout=3, context=admin_context(pki)) as resp:
        return resp.status == 200


def node_ready(base: str, pki: Path, node_name: str, since: datetime | None = None,
               max_age: float | None = None) -> bool:
    """Ready=True with a heartbeat at or after ``since`` / at most ``max_age`` seconds old."""
    if max_age is not None:
        since = datetime.fromtimestamp(utcnow().timestamp() - max_age, timezone.utc)
    node = api_get(f"{base}/api/v1/nodes/{node_name}", pki)
    for cond in node.get("status", {}).get("conditions", []):
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            if since is None:
                return True
            beat = datetime.fromisoformat(cond["lastHeartbeatTime"].replace("Z", "+00:00"))
            return beat >= since.replace(microsecond=0)
    return False


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(host: str, port: int) -> bool:
    """True if a server could listen on host:port now: nothing listens there and no
    connection has it as its local end. SO_REUSEADDR as servers set it, so that a port
    left in TIME_WAIT by a stopped server counts as free, as it is for them."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
