"""The kubelet node's configuration (devcluster.nodeconfig): paths, names, settings."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from devcluster import nodeconfig
from devcluster.config import ClusterConfig
from devcluster.nodeconfig import NodePaths


def cfg_at(tmp_path: Path, offset: int = 0) -> ClusterConfig:
    return ClusterConfig.from_env({"LIME_CLUSTER_DIR": str(tmp_path), "LIME_CLUSTER_PORT_OFFSET": str(offset)})


def test_every_node_path_is_inside_the_state_dir(tmp_path):
    paths = NodePaths.of(cfg_at(tmp_path))
    for name in ("containerd_root", "containerd_state", "containerd_socket", "runc_root", "kubelet_root",
                 "pod_logs", "cni_conf_dir", "cni_ipam_dir", "kubelet_config", "containerd_config"):
        assert getattr(paths, name).is_relative_to(tmp_path), name


def test_unix_socket_path_fits_the_kernel_limit():
    """sun_path holds 108 bytes; a long state dir would make containerd fail at start."""
    paths = NodePaths.of(ClusterConfig.from_env({"LIME_CLUSTER_DIR": "/tmp/lime-task-ci.XXXXXX"}))
    assert len(str(paths.containerd_socket)) < 108


@given(st.integers(min_value=-15000, max_value=40000), st.integers(min_value=-15000, max_value=40000))
def test_host_global_names_differ_between_clusters_with_different_ports(a, b):
    ca = ClusterConfig(Path("/a"), Path("/c")).with_port_offset(a)
    cb = ClusterConfig(Path("/b"), Path("/c")).with_port_offset(b)
    if a != b and abs(a - b) < 256 * 50:
        assert nodeconfig.pod_cidr(ca) != nodeconfig.pod_cidr(cb)
    assert (nodeconfig.bridge_name(ca) == nodeconfig.bridge_name(cb)) == (a == b)
    assert (nodeconfig.cgroup_root(ca) == nodeconfig.cgroup_root(cb)) == (a == b)
    assert len(nodeconfig.bridge_name(ca)) <= 15
    net = ipaddress.ip_network(nodeconfig.pod_cidr(ca))
    assert net.prefixlen == 24 and net.subnet_of(ipaddress.ip_network("10.192.0.0/10"))
    assert net.network_address >= ipaddress.ip_address("10.200.0.0")


def test_containerd_config_keeps_state_inside_and_names_the_vm_setting(tmp_path):
    paths = NodePaths.of(cfg_at(tmp_path))
    conf = tomllib.loads(nodeconfig.containerd_config(paths, "localhost/lime-task-pause:0123456789abcdef",
                                                      Path("/c/bin/containerd-shim-runc-v2")))
    assert conf["version"] == 3
    assert conf["root"] == str(paths.containerd_root) and conf["state"] == str(paths.containerd_state)
    runtime = conf["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["netns_mounts_under_state_dir"] is True
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["runtime_path"] == "/c/bin/containerd-shim-runc-v2"
    assert runc["options"]["Root"] == str(paths.runc_root) and runc["options"]["SystemdCgroup"] is False
    assert runtime["cni"]["conf_dir"] == str(paths.cni_conf_dir)
    images = conf["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == "localhost/lime-task-pause:0123456789abcdef"
    assert "io.containerd.nri.v1.nri" in conf["disabled_plugins"]
    assert images["registry"]["config_path"] == str(paths.registry_hosts)


def test_every_registry_is_a_closed_loopback_port():
    hosts = tomllib.loads(nodeconfig.registry_hosts_toml())
    assert hosts["server"] == "http://127.0.0.1:9"
    assert list(hosts["host"]) == ["http://127.0.0.1:9"]


def test_cni_conflist_uses_the_private_bridge_subnet_and_no_iptables(tmp_path):
    cfg = cfg_at(tmp_path, 1000)
    conf = nodeconfig.cni_conflist(cfg, NodePaths.of(cfg))
    bridge = conf["plugins"][0]
    assert bridge["bridge"] == "lime17443" and bridge["ipMasq"] is False
    assert bridge["ipam"]["dataDir"].startswith(str(tmp_path))
    assert bridge["ipam"]["ranges"] == [[{"subnet": nodeconfig.pod_cidr(cfg)}]]


def test_kubelet_config_serves_on_the_node_ip_and_never_collects_images(tmp_path):
    cfg = cfg_at(tmp_path, 1000)
    conf = nodeconfig.kubelet_config(cfg, NodePaths.of(cfg), "192.0.2.2")
    assert conf["address"] == "192.0.2.2" and conf["port"] == 11250 and conf["healthzPort"] == 11248
    assert conf["tlsCertFile"].endswith("kubelet-192.0.2.2.crt")
    assert conf["authentication"]["anonymous"]["enabled"] is False
    assert conf["authorization"]["mode"] == "Webhook"
    assert conf["imageGCHighThresholdPercent"] == 100
    assert conf["cgroupDriver"] == "cgroupfs" and conf["failCgroupV1"] is False
    assert conf["cgroupRoot"] == "/lime-17443"
    assert conf["podLogsDir"].startswith(str(tmp_path))
    assert conf["containerRuntimeEndpoint"] == f"unix://{NodePaths.of(cfg).containerd_socket}"
