"""What only a node that runs real containers can show: the task pod's identity and
permissions, memory limits enforced by the kernel, the image actually chosen per app,
and container logs.

These run against the local cluster's kubelet node or any external cluster with the
images loaded (LIME_TEST_KUBECONFIG + LIME_TEST_IMAGES).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from kubernetes import client

from lime_task.constants import LABEL_TASK_ID

from ._operator_helpers import Api, state

pytestmark = pytest.mark.integration

T = "tests.integration.pod_tasks"
SAMPLE = "sample_tasks.tasks"


@pytest.fixture
def node(cluster):
    return cluster


@pytest.fixture
def api(node, namespace):
    with node.api_client() as api_client:
        yield Api(api_client, namespace)


def finished(api: Api, name: str, timeout: float = 120) -> dict:
    return api.wait(name, lambda o: state(o) in ("SUCCESS", "FAILURE"), timeout=timeout, what="end")


def task_pod(node, namespace: str, task: str) -> client.V1Pod:
    with node.api_client() as api_client:
        pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector=f"{LABEL_TASK_ID}={task}")
    assert pods.items, f"no pod for task {task}"
    return pods.items[-1]


def test_task_runs_as_65532_without_token_and_cannot_change_its_image(node, operator, namespace, api):
    operator(namespace)
    name = api.create(f"{T}.identity")
    obj = finished(api, name)
    assert state(obj) == "SUCCESS", obj["status"]
    assert obj["status"]["result"] == {"uid": 65532, "gid": 65532, "token": False,
                                       "imageWritable": False, "rootWritable": False}
    pod = task_pod(node, namespace, name)
    assert pod.spec.containers[0].image == node.images["tasks"]
    assert pod.status.container_statuses[0].image_id  # a real image, resolved by the runtime


def test_memory_limit_ends_in_an_oom_kill_and_a_failed_task(node, operator, namespace, api):
    """The kernel enforces the limit: the pod's container is OOMKilled (exit 137) and the
    task fails. (How the task names that reason is the operator's mapping.)"""
    operator(namespace)
    name = api.create(f"{T}.allocate", 256, resources={"limits": {"memory": "64Mi"}})
    obj = finished(api, name)
    assert state(obj) == "FAILURE", obj["status"]
    terminated = task_pod(node, namespace, name).status.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137)


def test_app_image_from_settings_is_used_and_one_without_the_package_cannot_load(node, operator, namespace, api):
    operator(namespace, APP_IMAGES=json.dumps({"bare-app": node.images["runner"]}))
    bare = api.create(f"{SAMPLE}.add", 2, 3, app="bare-app")
    full = api.create(f"{SAMPLE}.add", 2, 3, app="full-app")
    obj = finished(api, bare)
    assert state(obj) == "FAILURE" and obj["status"]["reason"] == "CouldNotLoad", obj["status"]
    assert "sample_tasks" in obj["status"]["error"]["message"]
    assert task_pod(node, namespace, bare).spec.containers[0].image == node.images["runner"]
    obj = finished(api, full)
    assert state(obj) == "SUCCESS" and obj["status"]["result"]["sum"] == 5, obj["status"]
    assert task_pod(node, namespace, full).spec.containers[0].image == node.images["tasks"]


def test_kubectl_logs_and_lime_task_logs_read_the_container_log(node, operator, namespace, api):
    operator(namespace)
    name = api.create(f"{T}.say", "first line from the container", "second line")
    obj = finished(api, name)
    assert state(obj) == "SUCCESS", obj["status"]
    logs = node.kubectl("logs", "-n", namespace, f"job/{obj['status']['jobName']}").stdout
    assert "first line from the container\nsecond line\n" in logs
    cli = subprocess.run([sys.executable, "-m", "lime_task.cli", "logs", name, "--app", "demo", "--namespace", namespace],
                         env=node.env(), capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert "first line from the container" in cli.stdout and "second line" in cli.stdout
