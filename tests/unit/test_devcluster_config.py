"""Local cluster configuration and certificate specs (pure parts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devcluster import cluster, config, pki
from devcluster.config import DEFAULT_EPHEMERAL_PORT_RANGE, ClusterConfig


def test_state_dir_and_cache_come_from_the_environment(tmp_path):
    cfg = ClusterConfig.from_env({"LIME_CLUSTER_DIR": str(tmp_path / "s"), "LIME_CACHE": str(tmp_path / "c")})
    assert cfg.state_dir == tmp_path / "s"
    assert cfg.bin_dir == tmp_path / "c" / "bin"
    assert cfg.admin_kubeconfig == tmp_path / "s" / "admin.kubeconfig"
    assert cfg.apiserver_url == "https://127.0.0.1:16443"


def test_default_state_dir():
    assert ClusterConfig.from_env({}).state_dir == Path("/tmp/lime-task-cluster")


def test_env_exports_put_the_cache_bin_first(tmp_path):
    cfg = ClusterConfig.from_env({"LIME_CLUSTER_DIR": str(tmp_path), "LIME_CACHE": "/c"})
    out = cluster.env_exports(cfg)
    assert f"export KUBECONFIG={tmp_path}/admin.kubeconfig" in out
    assert "export LIME_TASK_BROKER_URL='amqp://guest:guest@127.0.0.1:24672/%2F'" in out
    assert 'export PATH="/c/bin:$PATH"' in out


def test_admin_certificate_is_in_system_masters():
    admin = next(s for s in pki.cert_specs("10.96.0.1", "n1") if s.name == "admin")
    assert admin.subject == "/O=system:masters/CN=lime-admin"
    assert "extendedKeyUsage=clientAuth" in admin.extensions()


def test_apiserver_certificate_names_loopback_and_the_service_ip():
    spec = next(s for s in pki.cert_specs("10.96.0.1", "n1") if s.name == "apiserver")
    ext = spec.extensions()
    assert "IP:127.0.0.1" in ext and "IP:10.96.0.1" in ext and "DNS:kubernetes.default.svc" in ext


def test_a_certificate_for_nothing_is_refused():
    with pytest.raises(pki.PkiError, match="server, a client or both"):
        pki.CertSpec("x", "x").extensions()


def test_port_offset_moves_every_port(tmp_path):
    cfg = ClusterConfig.from_env({"LIME_CLUSTER_DIR": str(tmp_path), "LIME_CLUSTER_PORT_OFFSET": "100"})
    assert (cfg.apiserver_port, cfg.etcd_client_port, cfg.amqp_port, cfg.kubelet_port) == (16543, 23890, 24772, 10350)
    assert cfg.ports() == {name: port + 100 for name, port in ClusterConfig(tmp_path, tmp_path).ports().items()}


def test_every_default_port_is_distinct_and_below_the_ephemeral_range(tmp_path):
    """A port in the kernel's ephemeral range can be the local end of any outgoing
    connection when its server (re)starts: one CI run lost its broker that way."""
    ports = ClusterConfig(tmp_path, tmp_path).ports()
    assert len(set(ports.values())) == len(ports)
    assert max(ports.values()) < DEFAULT_EPHEMERAL_PORT_RANGE[0]
    assert ClusterConfig(tmp_path, tmp_path).port_problems(DEFAULT_EPHEMERAL_PORT_RANGE) == []


def test_an_offset_into_the_ephemeral_range_is_refused_naming_the_ports(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "ephemeral_port_range", lambda: (32768, 60999))
    with pytest.raises(ValueError) as info:
        ClusterConfig.from_env({"LIME_CLUSTER_DIR": str(tmp_path), "LIME_CLUSTER_PORT_OFFSET": "10000"})
    message = str(info.value)
    assert "LIME_CLUSTER_PORT_OFFSET=10000" in message
    assert "amqp_port 34672 is in the ephemeral port range 32768-60999" in message
    assert "apiserver_port" not in message  # 26443: fine
    # The same offset is fine where the kernel's range starts higher.
    monkeypatch.setattr(config, "ephemeral_port_range", lambda: (49152, 65535))
    assert ClusterConfig.from_env({"LIME_CLUSTER_PORT_OFFSET": "10000"}).amqp_port == 34672


def test_ports_outside_tcp_are_named(tmp_path):
    problems = ClusterConfig(tmp_path, tmp_path).with_port_offset(-10300).port_problems((32768, 60999))
    assert "kubelet_healthz_port -52 is not a TCP port (1-65535)" in problems
    assert not any(p.startswith("apiserver_port") for p in problems)


def test_the_ephemeral_range_is_read_from_the_kernel_setting(tmp_path):
    path = tmp_path / "ip_local_port_range"
    path.write_text("40000\t50000\n")
    assert config.ephemeral_port_range(path) == (40000, 50000)
    path.write_text("garbage\n")
    assert config.ephemeral_port_range(path) == DEFAULT_EPHEMERAL_PORT_RANGE
    assert config.ephemeral_port_range(tmp_path / "missing") == DEFAULT_EPHEMERAL_PORT_RANGE


def test_bad_port_offset_is_named():
    with pytest.raises(ValueError, match="LIME_CLUSTER_PORT_OFFSET"):
        ClusterConfig.from_env({"LIME_CLUSTER_PORT_OFFSET": "ten"})


def test_up_and_down_stop_a_host_process_node_agent_left_by_an_older_checkout(tmp_path):
    """A state directory kept from before 0.2.0 may still have its host-process node
    agent running; beside kubelet it would answer for the same Node. It is stopped."""
    import sys
    import time

    from devcluster import procs

    cfg = ClusterConfig.from_env({"LIME_CLUSTER_DIR": str(tmp_path)})
    pid_file = cfg.run_dir / cluster.LEGACY_NODE_PID
    # A stand-in with the agent's command-line marker (python -m devcluster.node).
    pid = procs.start_detached([sys.executable, "-c", "import time; time.sleep(60)", "devcluster.node"],
                               pid_file, cfg.log_dir / "node.log")
    deadline = time.monotonic() + 10
    while procs.running_pid(pid_file, cluster.LEGACY_NODE_MARKER) != pid:
        assert time.monotonic() < deadline, "the stand-in never showed its marker"
        time.sleep(0.05)
    assert cluster.stop_legacy_node(cfg) == ["node (host-process agent of an older checkout): stopped"]
    assert procs.running_pid(pid_file, cluster.LEGACY_NODE_MARKER) is None and not pid_file.exists()
    assert cluster.stop_legacy_node(cfg) == []  # nothing left: nothing said
