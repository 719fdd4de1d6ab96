"""Pure helpers of the test fixtures (devcluster.testing): values merging, external images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devcluster import testing
from devcluster.cluster import ClusterError
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
    cfg = ClusterConfig.from_env({"LIME_CLUSTER_DIR": str(tmp_path), "LIME_NODE": "kubelet",
                                  "LIME_CLUSTER_PORT_OFFSET": "1000"})
    return testing.Cluster(kubeconfig=tmp_path / "k", bin_dir=tmp_path, local=True, cfg=cfg, node_kind="kubelet",
                           images={"operator": "localhost/lime-task-operator:abc", "tasks": "localhost/lime-task-tasks:def"})


def test_chart_values_on_the_kubelet_node_use_the_images_and_the_loopback_api(tmp_path):
    values = kubelet_cluster(tmp_path).operator_chart_values()
    assert values["image"] == {"repository": "localhost/lime-task-operator", "tag": "abc", "pullPolicy": "Never"}
    assert values["operator"]["defaultImage"] == "localhost/lime-task-tasks:def"
    # Host network: the health and metrics ports are free ones, not the chart's defaults.
    assert values["operator"]["healthPort"] != 8080 and values["metrics"]["port"] != 9090
    assert {"name": "KUBERNETES_SERVICE_PORT", "value": "17443"} in values["env"]


def test_operator_env_defaults_follow_the_node(tmp_path):
    with_images = testing.operator_env({"LIME_TASK_OPERATOR_X": "leak"}, {"tasks": "localhost/lime-task-tasks:def"})
    assert with_images["LIME_TASK_OPERATOR_DEFAULT_IMAGE"] == "localhost/lime-task-tasks:def"
    assert "LIME_TASK_OPERATOR_EXTRA_ENV" not in with_images and "LIME_TASK_OPERATOR_X" not in with_images
    host = testing.operator_env({}, None, MAX_RUNNING=2)
    assert "PYTHONPATH" in host["LIME_TASK_OPERATOR_EXTRA_ENV"] and host["LIME_TASK_OPERATOR_MAX_RUNNING"] == "2"
