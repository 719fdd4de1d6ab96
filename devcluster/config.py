"""Where the local cluster keeps its state and which loopback ports it uses.

One frozen object, built from the environment once, so that every module (the CLI, the
node, the test fixtures) agrees on paths and ports without re-reading variables.
Ports are deliberately not the defaults so that the cluster can sit beside a real one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
NODE_NAME = "lime-local-node"


@dataclass(frozen=True)
class ClusterConfig:
    state_dir: Path
    cache_dir: Path
    etcd_client_port: int = 23790
    etcd_peer_port: int = 23800
    apiserver_port: int = 16443
    controller_manager_port: int = 17257
    scheduler_port: int = 17259
    kubelet_port: int = 10250
    kubelet_healthz_port: int = 10248
    amqp_port: int = 35672
    rabbit_dist_port: int = 35673
    epmd_port: int = 34369
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
        return cfg.with_port_offset(int(offset)) if int(offset) else cfg

    def with_port_offset(self, offset: int) -> "ClusterConfig":
        """Every port moved by ``offset``: a second cluster (own LIME_CLUSTER_DIR) beside the first."""
        ports = {f.name: getattr(self, f.name) + offset for f in fields(self) if f.name.endswith("_port")}
        return replace(self, **ports)

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
