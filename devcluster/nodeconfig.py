"""The kubelet node's configuration files and host-global names: pure functions.

The node is kubelet + containerd 2.x + runc + the Debian CNI plugins (bridge, host-local,
loopback). Everything it writes lives under ``<state dir>/node`` except what the kernel
or a fixed path forces elsewhere; those few things get names derived from the cluster's
API server port, which is unique per cluster on a machine (two clusters with the same
ports could not run at once anyway), so two clusters' nodes never share one:

- the CNI bridge ``lime<port>`` and the pod subnet ``10.<200+port/256 % 50>.<port % 256>.0/24``;
- the pod cgroup root ``/lime-<port>`` in every cgroup hierarchy;
- containerd's shim sockets in /run/containerd/s (hard-coded by containerd; each socket
  name is a hash of our own containerd address, so names never collide).

Settings follow what was measured on this machine kind (a VM with cgroup v1 and no
systemd): cgroupfs driver on cgroup v1, ``restrict_oom_score_adj`` because no
process here may lower an oom_score_adj, image GC off because imported images cannot be
pulled again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import ClusterConfig

CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")  # Debian's containernetworking-plugins, upstream's
RUNC = "/usr/sbin/runc"
CNI_NETWORK = "lime-pods"


@dataclass(frozen=True)
class NodePaths:
    """Every file and directory of the node under ``<state dir>/node``."""

    root: Path

    @classmethod
    def of(cls, cfg: ClusterConfig) -> "NodePaths":
        return cls(cfg.state_dir / "node")

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def runc_root(self) -> Path:
        return self.root / "runc"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def registry_hosts(self) -> Path:
        """containerd's registry host configuration (``config_path``)."""
        return self.root / "registry-hosts"


def bridge_name(cfg: ClusterConfig) -> str:
    """``lime<apiserver port>``: at most 9 characters (Linux allows 15)."""
    return f"lime{cfg.apiserver_port}"


def pod_cidr(cfg: ClusterConfig) -> str:
    """A /24 in 10.200.0.0-10.249.255.255 derived from the API server port (see module doc)."""
    port = cfg.apiserver_port
    return f"10.{200 + (port >> 8) % 50}.{port & 255}.0/24"


def cgroup_root(cfg: ClusterConfig) -> str:
    """The cgroup under which kubelet creates ``kubepods`` (relative to each hierarchy)."""
    return f"/lime-{cfg.apiserver_port}"


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escaping is a subset TOML accepts for these values)."""
    return json.dumps(value)


def containerd_config(paths: NodePaths, pause_image: str, shim: Path) -> str:
    """containerd 2.x configuration (version 3) for a CRI node with its state under ``paths``.

    ``shim``: the containerd-shim-runc-v2 built with this containerd. By absolute path,
    because containerd would otherwise take the first one on PATH, which may be another
    containerd's (Debian's 1.6 shim fails with "type with url ...: not found")."""
    q = toml_string
    bins = ", ".join(q(d) for d in CNI_BIN_DIRS)
    return f"""version = 3
root = {q(str(paths.containerd_root))}
state = {q(str(paths.containerd_state))}
# Plugins that would write outside the state directory, or that this node never uses.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.nri.v1.nri",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = {q(str(paths.containerd_socket))}

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = {q(pause_image)}
    # Every registry is a closed local port (registry_hosts_toml): images come only from
    # imports, and a pod naming any other image fails at once without leaving the machine.
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = {q(str(paths.registry_hosts))}

  [plugins.'io.containerd.cri.v1.runtime']
    # No process on this machine may lower an oom_score_adj (no CAP_SYS_RESOURCE); without
    # this every sandbox fails with "can't get final child's PID from pipe".
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        runtime_path = {q(str(shim))}
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = {q(RUNC)}
          Root = {q(str(paths.runc_root))}
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [{bins}]
      conf_dir = {q(str(paths.cni_conf_dir))}
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
"""


# TCP port 9 ("discard") on loopback: nothing listens there, so a pull is refused at once.
NO_REGISTRY = "http://127.0.0.1:9"


def registry_hosts_toml() -> str:
    """``_default/hosts.toml``: every registry host resolves to NO_REGISTRY (no DNS lookup,
    no traffic off the machine), so a pull fails fast with a clear ErrImagePull."""
    return f'''server = "{NO_REGISTRY}"

[host."{NO_REGISTRY}"]
  capabilities = ["pull", "resolve"]
'''


def cni_conflist(cfg: ClusterConfig, paths: NodePaths) -> dict:
    """One bridge network. ``ipMasq: false``: no iptables rules to leave behind; task pods
    need no network, and pods that need the API server use the host network."""
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge_name(cfg),
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(paths.cni_ipam_dir),
                    "ranges": [[{"subnet": pod_cidr(cfg)}]],
                },
            },
            {"type": "loopback"},
        ],
    }


def serving_cert_name(node_ip: str) -> str:
    """The kubelet's serving certificate carries the node IP as a SAN, so its file name
    does too: a machine with another address gets a new certificate, not a wrong one."""
    return f"kubelet-{node_ip}"


def kubelet_config(cfg: ClusterConfig, paths: NodePaths, node_ip: str) -> dict:
    """KubeletConfiguration (kubelet.config.k8s.io/v1beta1) for this node."""
    pki = cfg.pki_dir
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # The API server reaches the kubelet (logs, exec) at the node's InternalIP, which
        # cannot be loopback; it verifies the serving certificate with the cluster CA.
        "address": node_ip,
        "port": cfg.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": cfg.kubelet_healthz_port,
        "tlsCertFile": str(pki / f"{serving_cert_name(node_ip)}.crt"),
        "tlsPrivateKeyFile": str(pki / f"{serving_cert_name(node_ip)}.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root(cfg),
        "failCgroupV1": False,
        "failSwapOn": False,
        "podLogsDir": str(paths.pod_logs),
        # Imported images cannot be pulled again: never garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # A shared development disk is often more than 90 % full; only a nearly full one
        # should evict test pods.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        "kubeAPIQPS": 100,
        "kubeAPIBurst": 200,
        "maxPods": 110,
        "resolvConf": "/etc/resolv.conf",
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
    }
