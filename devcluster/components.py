"""The processes of the local cluster: how to start each one and how to tell it is ready.

Pure data built from a ClusterConfig; ``cluster.py`` does the starting. The order of
``control_plane()`` is the start order (each depends on the ones before it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from . import health
from .config import HOST, ClusterConfig


@dataclass
class Component:
    name: str
    argv: list[str]
    # A substring of the running process's command line, to tell our process from a
    # stranger that got the same pid.
    marker: str
    ready: Callable[[], bool]
    timeout: float = 60.0
    env: dict[str, str] | None = None
    prepare: Callable[[], None] | None = None
    # Stricter check right after a (re)start, e.g. "a heartbeat from the new process";
    # ``ready`` alone decides whether an already running component is healthy.
    ready_after_start: Callable[[], bool] | None = None
    cwd: Path | None = None
    extra_logs: list[Path] = field(default_factory=list)
    # The loopback ports it listens on: checked free before a start, so that a port taken
    # by someone else is named instead of surfacing as a start timeout.
    ports: list[int] = field(default_factory=list)

    def pid_file(self, cfg: ClusterConfig) -> Path:
        return cfg.run_dir / f"{self.name}.pid"

    def log_file(self, cfg: ClusterConfig) -> Path:
        return cfg.log_dir / f"{self.name}.log"


def etcd(cfg: ClusterConfig) -> Component:
    peer = f"http://{HOST}:{cfg.etcd_peer_port}"
    return Component(
        name="etcd",
        ports=[cfg.etcd_client_port, cfg.etcd_peer_port, cfg.etcd_metrics_port],
        argv=[
            str(cfg.bin_dir / "etcd"),
            "--name", "lime-local",
            "--data-dir", str(cfg.state_dir / "etcd"),
            "--listen-client-urls", cfg.etcd_url,
            "--advertise-client-urls", cfg.etcd_url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"lime-local={peer}",
            "--listen-metrics-urls", f"http://{HOST}:{cfg.etcd_metrics_port}",
            # Throwaway test state: skipping fsync keeps 200-pod bursts from waiting on the
            # disk. Never do this with data you want to keep.
            "--unsafe-no-fsync",
            "--log-level", "warn",
        ],
        marker="etcd",
        ready=lambda: health.http_ok(f"{cfg.etcd_url}/health"),
        timeout=30,
    )


def apiserver(cfg: ClusterConfig) -> Component:
    pki = cfg.pki_dir
    return Component(
        name="kube-apiserver",
        ports=[cfg.apiserver_port],
        argv=[
            str(cfg.bin_dir / "kube-apiserver"),
            "--etcd-servers", cfg.etcd_url,
            "--bind-address", HOST,
            "--advertise-address", HOST,
            "--secure-port", str(cfg.apiserver_port),
            "--tls-cert-file", str(pki / "apiserver.crt"),
            "--tls-private-key-file", str(pki / "apiserver.key"),
            "--client-ca-file", str(pki / "ca.crt"),
            "--authorization-mode", "Node,RBAC",
            "--enable-admission-plugins", "NodeRestriction",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(pki / "sa.pub"),
            "--service-account-signing-key-file", str(pki / "sa.key"),
            "--service-cluster-ip-range", cfg.service_cidr,
            # The "kubernetes" Service's endpoint would be 127.0.0.1, which Endpoints
            # validation refuses; nothing in this cluster routes to it anyway.
            "--endpoint-reconciler-type", "none",
            # How the apiserver reaches kubelet for pods/log (kubectl logs).
            "--kubelet-client-certificate", str(pki / "apiserver-kubelet-client.crt"),
            "--kubelet-client-key", str(pki / "apiserver-kubelet-client.key"),
            "--kubelet-certificate-authority", str(pki / "ca.crt"),
            "--kubelet-preferred-address-types", "InternalIP",
            "--profiling=false",
            "--v", "1",
        ],
        marker="kube-apiserver",
        ready=lambda: health.apiserver_ready(cfg.apiserver_url, pki),
        timeout=90,
    )


def controller_manager(cfg: ClusterConfig) -> Component:
    pki = cfg.pki_dir
    kubeconfig = str(cfg.kubeconfig_for("controller-manager"))
    return Component(
        name="kube-controller-manager",
        ports=[cfg.controller_manager_port],
        argv=[
            str(cfg.bin_dir / "kube-controller-manager"),
            "--kubeconfig", kubeconfig,
            "--authentication-kubeconfig", kubeconfig,
            "--authorization-kubeconfig", kubeconfig,
            "--bind-address", HOST,
            "--secure-port", str(cfg.controller_manager_port),
            "--cert-dir", str(cfg.state_dir / "controller-manager-certs"),
            # Each controller acts as its own service account, as in a real cluster, so
            # RBAC mistakes in controllers' roles show up here too.
            "--use-service-account-credentials",
            "--root-ca-file", str(pki / "ca.crt"),
            "--service-account-private-key-file", str(pki / "sa.key"),
            "--cluster-signing-cert-file", str(pki / "ca.crt"),
            "--cluster-signing-key-file", str(pki / "ca.key"),
            "--service-cluster-ip-range", cfg.service_cidr,
            "--leader-elect=false",
            # Bursts of hundreds of Jobs: the default 20 qps would make the Job controller
            # the bottleneck of the tests.
            "--kube-api-qps", "100",
            "--kube-api-burst", "200",
            "--concurrent-job-syncs", "20",
            "--v", "1",
        ],
        marker="kube-controller-manager",
        ready=lambda: health.https_ok_insecure(f"https://{HOST}:{cfg.controller_manager_port}/healthz"),
        timeout=60,
    )


def scheduler_config(cfg: ClusterConfig) -> dict:
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(cfg.kubeconfig_for("scheduler")), "qps": 100, "burst": 200},
        "leaderElection": {"leaderElect": False},
    }


def scheduler(cfg: ClusterConfig) -> Component:
    config_path = cfg.state_dir / "kube-scheduler.yaml"
    kubeconfig = str(cfg.kubeconfig_for("scheduler"))

    def prepare() -> None:
        config_path.write_text(yaml.safe_dump(scheduler_config(cfg)))

    return Component(
        name="kube-scheduler",
        ports=[cfg.scheduler_port],
        argv=[
            str(cfg.bin_dir / "kube-scheduler"),
            "--config", str(config_path),
            "--authentication-kubeconfig", kubeconfig,
            "--authorization-kubeconfig", kubeconfig,
            "--bind-address", HOST,
            "--secure-port", str(cfg.scheduler_port),
            "--cert-dir", str(cfg.state_dir / "scheduler-certs"),
            "--v", "1",
        ],
        marker="kube-scheduler",
        ready=lambda: health.https_ok_insecure(f"https://{HOST}:{cfg.scheduler_port}/healthz"),
        timeout=60,
        prepare=prepare,
    )


def node_components(cfg: ClusterConfig) -> list[Component]:
    """The node that runs pods: containerd, then kubelet (``kubeletnode``)."""
    from . import kubeletnode  # imports this module

    return kubeletnode.components(cfg)


def control_plane(cfg: ClusterConfig) -> list[Component]:
    return [etcd(cfg), apiserver(cfg), controller_manager(cfg), scheduler(cfg), *node_components(cfg)]
