"""Pure helpers of the test fixtures (devcluster.testing): values merging, external images."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from devcluster import cluster, config, testing
from devcluster.cluster import ClusterError
from devcluster.components import Component
from devcluster.config import ClusterConfig


def test_merge_values_merges_dicts_and_concatenates_lists():
    base = {"image": {"repository": "r", "tag": "1"}, "env": [{"name": "A"}], "x": 1}
    over = {"image": {"tag": "2"}, "env": [{"name": "B"}], "x": 2, "y": 3}
    assert testing.merge_values(base, over) == {
        "image": {"repository": "r", "tag": "2"}, "env": [{"name": "A"}, {"name": "B"}], "x": 2, "y": 3}
    assert base["env"] == [{"name": "A"}]  # inputs untouched


def test_external_images_need_runner_operator_and_tasks():
    images = {"runner": "r:1", "operator": "o:1", "tasks": "t:1"}
    assert testing.external_images(json.dumps(images)) == images
    with pytest.raises(ClusterError, match="lacks tasks"):
        testing.external_images(json.dumps({"runner": "r:1", "operator": "o:1"}))
    with pytest.raises(ClusterError, match="not JSON"):
        testing.external_images("{runner")
    with pytest.raises(ClusterError, match="JSON object of image references"):
        testing.external_images("")
    with pytest.raises(ClusterError, match="JSON object of image references"):
        testing.external_images('{"runner": ""}')


def kubelet_cluster(tmp_path: Path) -> testing.Cluster:
    cfg = ClusterConfig.from_env({"LIME_CLUSTER_DIR": str(tmp_path), "LIME_CLUSTER_PORT_OFFSET": "1000"})
    return testing.Cluster(kubeconfig=tmp_path / "k", bin_dir=tmp_path, local=True, cfg=cfg,
                           images={"operator": "localhost/lime-task-operator:abc", "tasks": "localhost/lime-task-tasks:def"})


def test_chart_values_on_the_kubelet_node_use_the_images_and_the_loopback_api(tmp_path):
    values = kubelet_cluster(tmp_path).operator_chart_values()
    assert values["image"] == {"repository": "localhost/lime-task-operator", "tag": "abc", "pullPolicy": "Never"}
    assert values["operator"]["defaultImage"] == "localhost/lime-task-tasks:def"
    # Host network: the health and metrics ports are free ones, not the chart's defaults.
    assert values["operator"]["healthPort"] != 8080 and values["metrics"]["port"] != 9090
    assert {"name": "KUBERNETES_SERVICE_PORT", "value": "17443"} in values["env"]


def test_operator_env_defaults_to_the_tasks_image_and_drops_leaked_settings(tmp_path):
    env = testing.operator_env({"LIME_TASK_OPERATOR_X": "leak"}, {"tasks": "localhost/lime-task-tasks:def"},
                               MAX_RUNNING=2)
    assert env["LIME_TASK_OPERATOR_DEFAULT_IMAGE"] == "localhost/lime-task-tasks:def"
    assert env["LIME_TASK_OPERATOR_MAX_RUNNING"] == "2"
    assert "LIME_TASK_OPERATOR_EXTRA_ENV" not in env and "LIME_TASK_OPERATOR_X" not in env
    # A test's own setting wins over the default.
    assert testing.operator_env({}, {"tasks": "a:1"}, DEFAULT_IMAGE="b:2")["LIME_TASK_OPERATOR_DEFAULT_IMAGE"] == "b:2"


def test_free_loopback_ports_are_below_the_ephemeral_range_distinct_and_bindable():
    first_ephemeral, _ = config.ephemeral_port_range()
    ports = [testing.free_loopback_port() for _ in range(50)]
    assert len(set(ports)) == 50  # none handed out twice, though none was bound in between
    assert all(testing.TEST_PORT_BAND_START <= p < first_ephemeral for p in ports)
    cluster_ports = set(ClusterConfig.from_env({}).ports().values())
    assert not cluster_ports & set(ports)
    with socket.socket() as server:
        server.bind(("127.0.0.1", ports[0]))


def test_a_component_whose_port_is_held_is_refused_by_name_before_it_starts(tmp_path):
    """A port held as the local end of a connection (no listener there, so a connect
    probe finds nothing) still refuses a server: the start is refused naming the port."""
    held = testing.free_loopback_port()
    with socket.socket() as server, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client.bind(("127.0.0.1", held))
        client.connect(server.getsockname())
        cfg = ClusterConfig(tmp_path / "state", tmp_path / "cache")
        marker = tmp_path / "never-started"
        component = Component(name="sleeper", argv=["sh", "-c", f"touch {marker}"], marker="sleeper",
                              ready=lambda: True, ports=[held])
        with pytest.raises(ClusterError, match=rf"sleeper cannot start: port\(s\) \[{held}\] on 127.0.0.1 are in use"):
            cluster.ensure_running(cfg, component)
        assert not marker.exists()
