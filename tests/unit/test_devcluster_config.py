"""Local cluster configuration and certificate specs (pure parts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devcluster import cluster, pki
from devcluster.config import ClusterConfig


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
    assert "export LIME_TASK_BROKER_URL='amqp://guest:guest@127.0.0.1:35672/%2F'" in out
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
    assert (cfg.apiserver_port, cfg.etcd_client_port, cfg.amqp_port, cfg.kubelet_port) == (16543, 23890, 35772, 10350)


def test_bad_port_offset_is_named():
    with pytest.raises(ValueError, match="LIME_CLUSTER_PORT_OFFSET"):
        ClusterConfig.from_env({"LIME_CLUSTER_PORT_OFFSET": "ten"})
