"""The operator installed by the Helm chart runs as a pod, with in-cluster config only.

The chart's Deployment runs `lime-task operator` in a pod of the chart's ServiceAccount.
Its credential is the token the node mounts into that pod (a bound token from the
TokenRequest API), and KUBECONFIG points
nowhere, so in-cluster configuration is the only way it can log in: whatever it manages
to do, the chart's namespaced Role allowed. A task then goes all the way to SUCCESS with
its broker event confirmed, and the task pods carry no token at all.
"""

from __future__ import annotations

import uuid

import pytest

import lime_task
from devcluster.testing import free_loopback_port, merge_values
from lime_task.constants import GROUP, LABEL_TASK_ID, PLURAL

from .chart_support import get_json, helm_install, helm_uninstall, wait_for

pytestmark = pytest.mark.integration

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# The only credential the operator pod may use is its mounted token: a kubeconfig that
# does not exist rules out any fallback to a developer's config file.
NO_KUBECONFIG = {"name": "KUBECONFIG", "value": "/nonexistent/lime-task-operator-pod-kubeconfig"}


def token_volumes(pod: dict) -> list[str]:
    """Names of the pod's volumes that project a ServiceAccount token."""
    return [
        v["name"] for v in pod["spec"].get("volumes") or []
        if any("serviceAccountToken" in s for s in (v.get("projected") or {}).get("sources") or [])
    ]


def task_pods(cluster, namespace: str, task_id: str) -> list[dict]:
    return get_json(cluster, "pods", "-n", namespace, "-l", f"{LABEL_TASK_ID}={task_id}")["items"]


def read_task(cluster, namespace: str, task_id: str) -> dict:
    return get_json(cluster, f"{PLURAL}.{GROUP}", task_id, "-n", namespace)


def test_chart_operator_runs_as_a_pod_with_in_cluster_config(cluster, crd, broker, namespace, monkeypatch):
    release = f"lt-{uuid.uuid4().hex[:8]}"
    full = f"{release}-lime-task"
    exchange = f"lime_task_{release}"  # its own: other tests publish to the same broker
    # The node's images: the operator image, and the tasks image as the default.
    helm_install(
        cluster, release, namespace,
        merge_values(cluster.operator_chart_values(), {
            "watchNamespaces": [namespace],
            "broker": {"url": broker.url, "exchange": exchange},
            "env": [NO_KUBECONFIG],
            "operator": {
                # The operator pod may share the host's network (the local cluster's
                # hostNetwork value): its health endpoint needs a port no other operator
                # (another test's release) listens on.
                "healthPort": free_loopback_port(),
            },
        }),
    )
    try:
        cluster.kubectl("wait", "-n", namespace, f"deployment/{full}", "--for=condition=Available", "--timeout=120s")
        (operator_pod,) = [
            p for p in get_json(cluster, "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}")["items"]
            if p["status"].get("phase") == "Running"
        ]
        assert operator_pod["spec"]["serviceAccountName"] == full
        # The chart's hostNetwork value reached the pod (the local cluster needs it).
        assert operator_pod["spec"].get("hostNetwork", False) is cluster.local
        assert operator_pod["spec"]["dnsPolicy"] == ("ClusterFirstWithHostNet" if cluster.local else "ClusterFirst")
        # Its credential is the token volume the ServiceAccount admission plugin injected.
        assert token_volumes(operator_pod)
        mounts = [m["mountPath"] for m in operator_pod["spec"]["containers"][0]["volumeMounts"]]
        assert SA_DIR in mounts

        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
        sent = lime_task.send_task_with_options("sample_tasks.tasks.add", "chart-app", [2, 3], namespace=namespace)
        probe = lime_task.send_task_with_options("tests.integration.pod_tasks.credentials", "chart-app",
                                                 namespace=namespace)
        assert sent.wait(timeout=150).status == "SUCCESS", sent.error
        assert sent.result["sum"] == 5 and sent.result["app"] == "chart-app"

        # The broker confirmed the task's event: recorded in its status by the operator.
        def confirmed_event():
            return (read_task(cluster, namespace, sent.id).get("status") or {}).get("event", {}).get("confirmedAt")

        wait_for(confirmed_event, "the operator to record the confirmed event", timeout=90)
        status = read_task(cluster, namespace, sent.id)["status"]
        assert status["event"]["routingKey"] == "core.task.sample_tasks.tasks.add.success.v1"
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions == {"Succeeded": "True", "EventPublished": "True"}

        # Task pods: the chart's no-rights ServiceAccount, no token in the spec, and none
        # in the running process's view of the file system either.
        for pod in task_pods(cluster, namespace, sent.id):
            assert pod["spec"]["serviceAccountName"] == f"{full}-task"
            assert pod["spec"]["automountServiceAccountToken"] is False
            assert token_volumes(pod) == []
        assert probe.wait(timeout=150).status == "SUCCESS", probe.error
        assert probe.result["token"] is False
        assert probe.result["serviceHost"]  # the API's address is known; no credential for it
    finally:
        # Shown by pytest when the test failed: what the operator pod itself said.
        logs = cluster.kubectl("logs", "-n", namespace, f"deployment/{full}", "--tail=200", check=False)
        print(f"----- operator pod log -----\n{logs.stdout}{logs.stderr}")
        helm_uninstall(cluster, release, namespace)
    remaining = get_json(cluster, "deployments", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}")
    assert remaining["items"] == []
