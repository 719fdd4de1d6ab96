"""Where the local cluster keeps its state and which loopback ports it uses.

One frozen object, built from the environment once, so that every module (the CLI, the
node, the test fixtures) agrees on paths and ports without re-reading variables.
Ports are deliberately not the defaults so that the cluster can sit beside a real one, and
all lie below the kernel's ephemeral port range (``net.ipv4.ip_local_port_range``, 32768-60999
by default): a port in that range can be taken at any moment as the local end of some
outgoing connection, and a component restarted then fails to listen (EADDRINUSE). One CI run
lost its broker that way at 35672.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
NODE_NAME = "lime-local-node"


EPHEMERAL_PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# The kernel's default, used where the file cannot be read (not Linux, no /proc).
DEFAULT_EPHEMERAL_PORT_RANGE = (32768, 60999)


def ephemeral_port_range(path: Path = EPHEMERAL_PORT_RANGE_FILE) -> tuple[int, int]:
    """(first, last) port the kernel picks local ends of outgoing connections from, read
    from ``net.ipv4.ip_local_port_range``; the kernel's default if it cannot be read."""
    try:
        first, last = (int(word) for word in path.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_PORT_RANGE
    return first, last


@dataclass(frozen=True)
class ClusterConfig:
    state_dir: Path
    cache_dir: Path
    etcd_client_port: int = 23790
    etcd_metrics_port: int = 23792
    etcd_peer_port: int = 23800
    apiserver_port: int = 16443
    controller_manager_port: int = 17257
    scheduler_port: int = 17259
    kubelet_port: int = 10250
    kubelet_healthz_port: int = 10248
    # Not RabbitMQ's own 5672/25672/4369/15672, so that a system broker may run beside.
    amqp_port: int = 24672
    rabbit_dist_port: int = 24673
    epmd_port: int = 24369
    rabbit_management_port: int = 24675
    # An allocation range only: nothing on this machine routes traffic to it.
    service_cidr: str = "10.96.0.0/16"
    service_ip: str = "10.96.0.1"
    node_name: str = NODE_NAME
    rabbit_management: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "ClusterConfig":
        env = os.environ if environ is None else environ
        state = Path(env.get("LIME_CLUSTER_DIR") or "/tmp/lime-task-cluster")
        cache = Path(env.get("LIME_CACHE") or Path.home() / ".cache" / "lime-task")
        management = env.get("LIME_RABBITMQ_MANAGEMENT", "") in ("1", "true", "yes")
        cfg = cls(state_dir=state.resolve(), cache_dir=cache.resolve(), rabbit_management=management)
        offset = env.get("LIME_CLUSTER_PORT_OFFSET", "0")
        if not offset.lstrip("-").isdigit():
            raise ValueError(f"LIME_CLUSTER_PORT_OFFSET must be an integer, got {offset!r}")
        cfg = cfg.with_port_offset(int(offset)) if int(offset) else cfg
        problems = cfg.port_problems(ephemeral_port_range())
        if problems:
            raise ValueError(f"LIME_CLUSTER_PORT_OFFSET={offset} cannot be used on this machine: "
                             + "; ".join(problems))
        return cfg

    def ports(self) -> dict[str, int]:
        """Every loopback port the cluster listens on, by field name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name.endswith("_port")}

    def port_problems(self, ephemeral: tuple[int, int]) -> list[str]:
        """Why these ports cannot be listened on reliably: each one outside 1-65535 or
        inside ``ephemeral`` (first, last), the kernel's range for the local ends of
        outgoing connections. Empty when every port is fine."""
        first, last = ephemeral
        problems = []
        for name, port in self.ports().items():
            if not 1 <= port <= 65535:
                problems.append(f"{name} {port} is not a TCP port (1-65535)")
            elif first <= port <= last:
                problems.append(f"{name} {port} is in the ephemeral port range {first}-{last} "
                                "(net.ipv4.ip_local_port_range), where any outgoing connection may "
                                "hold it; choose an offset that keeps every port outside it")
        return problems

    def with_port_offset(self, offset: int) -> "ClusterConfig":
        """Every port moved by ``offset``: a second cluster (own LIME_CLUSTER_DIR) beside the first."""
        return replace(self, **{name: port + offset for name, port in self.ports().items()})

    @property
    def bin_dir(self) -> Path:
        return self.cache_dir / "bin"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def run_dir(self) -> Path:
        """pid files"""
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def apiserver_url(self) -> str:
        return f"https://{HOST}:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://{HOST}:{self.etcd_client_port}"

    @property
    def broker_url(self) -> str:
        return f"amqp://guest:guest@{HOST}:{self.amqp_port}/%2F"

    def kubeconfig_for(self, user: str) -> Path:
        return self.state_dir / f"{user}.kubeconfig"
