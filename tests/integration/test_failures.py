"""Every failure says what happened, is counted right and outlives its pod (issue #11).

One test per reason, against the real control plane and the operator as a process.

What is real and what is driven through the API, per test:
- Eviction (Eviction API, as `kubectl drain`), pod deletion, a failing task's log tail,
  DeadlineExceeded, Unschedulable, the runner's own reports, an OOM kill under a memory
  limit and an image that cannot be pulled are real: kubelet runs the containers, the
  scheduler and the Job controller decide.
- A lost node is driven: the task's pod is bound (Binding API) to a Node object that no
  kubelet serves, tainted so that nothing else is scheduled there; the test writes the
  pod status the way kubelet would, then deletes the Node, and the real pod garbage
  collector fails and removes the pod (DisruptionTarget DeletionByPodGC). It runs
  unchanged on any cluster.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager

import pytest
from kubernetes import client

from ._operator_helpers import Api, condition, running_containers, wait_for

pytestmark = pytest.mark.integration

T = "sample_tasks.tasks"
# More memory than any node offers: the scheduler leaves the pod Pending, so the test
# decides where it goes (or that it goes nowhere).
HUGE = "4000Ti"
FAKE_TAINT = {"key": "limetask.dev/no-agent", "value": "true", "effect": "NoSchedule"}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def only_pod(api: Api, name: str, timeout: float = 60.0):
    return wait_for(lambda: (api.pods(name) or [None])[0], f"pod of task {name}", timeout)


def wait_running_container(api: Api, name: str) -> None:
    wait_for(lambda: running_containers(api, name), f"container of task {name}", 60)


def finished(api: Api, name: str, timeout: float = 120.0) -> dict:
    return api.wait_state(name, "SUCCESS", "FAILURE", timeout=timeout)["status"]


# ------------------------------------------------------------ a Node without an agent

@contextmanager
def node_without_agent(core: client.CoreV1Api):
    """A Ready Node that nothing serves (its heartbeat refreshed by a thread), tainted so
    that the scheduler puts nothing there; pods reach it only through the Binding API."""
    name = f"lt-test-no-agent-{uuid.uuid4().hex[:6]}"
    core.create_node({"apiVersion": "v1", "kind": "Node",
                      "metadata": {"name": name, "labels": {"limetask.dev/test": "true"}},
                      "spec": {"taints": [FAKE_TAINT]}})
    stop = threading.Event()

    def heartbeat():
        while not stop.is_set():
            stamp = now()
            body = {"status": {
                "capacity": {"cpu": "8", "memory": "8000Ti", "pods": "10"},
                "allocatable": {"cpu": "8", "memory": "8000Ti", "pods": "10"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "test node without an agent", "lastHeartbeatTime": stamp,
                                "lastTransitionTime": stamp}]}}
            try:
                core.patch_node_status(name, body)
            except client.ApiException as error:
                if error.status == 404:
                    return
            stop.wait(5)

    thread = threading.Thread(target=heartbeat, daemon=True)
    thread.start()
    try:
        yield name
    finally:
        stop.set()
        thread.join(10)
        try:
            core.delete_node(name)
        except client.ApiException as error:
            if error.status != 404:
                raise


def bind(core: client.CoreV1Api, namespace: str, pod: str, node: str) -> None:
    """What the scheduler does: a Binding of the pod to the node."""
    body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
    # The generated client cannot parse the Binding answer; the call itself is what counts.
    core.create_namespaced_binding(namespace, body, _preload_content=False)


def kubelet_reports(core: client.CoreV1Api, namespace: str, pod: str, phase: str, state: dict,
                    started: bool = False) -> None:
    """Write the pod status the way kubelet reports it (see the module docstring)."""
    stamp = now()
    status = {
        "phase": phase,
        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp}],
        "startTime": stamp,
        "containerStatuses": [{
            "name": "task", "image": "registry.invalid/tasks:missing", "imageID": "",
            "ready": False, "restartCount": 0, "started": started, "state": state,
        }],
    }
    core.patch_namespaced_pod_status(pod, namespace, {"status": status})


def bound_task_pod(api: Api, name: str, node: str):
    pod = only_pod(api, name)
    bind(api.core, api.namespace, pod.metadata.name, node)
    return pod.metadata.name


# ------------------------------------------------------------ the tests

def test_an_evicted_task_says_evicted_keeps_attempts_start_and_log(operator, namespace, api, cluster):
    operator(namespace)
    name = api.create(f"{T}.sleep", 120)
    api.wait_state(name, "STARTED")
    wait_running_container(api, name)
    pod = only_pod(api, name).metadata.name
    def logged():
        try:
            return "running" in api.core.read_namespaced_pod_log(pod, namespace, container="task")
        except client.ApiException:  # 400 while the node still reports ContainerCreating
            return False

    wait_for(logged, "the runner's first log line", 30)
    # What `kubectl drain` does for each pod: the Eviction API.
    api.core.create_namespaced_pod_eviction(pod, namespace, client.V1Eviction(
        metadata=client.V1ObjectMeta(name=pod, namespace=namespace)))
    status = finished(api, name)
    assert (status["state"], status["reason"]) == ("FAILURE", "Evicted"), status
    assert status["attempts"] >= 1
    assert status["startedAt"]
    assert status["error"]["type"] == "Evicted"
    assert "EvictionByEvictionAPI" in status["error"]["message"]
    last = status["lastAttempt"]
    assert (last["pod"], last["reason"]) == (pod, "Evicted")
    assert f"running {T}.sleep" in last["logTail"]  # the runner's first log line
    # The pod is gone; `lime-task logs` shows what the status kept.
    wait_for(lambda: not api.pods(name), "the evicted pod to go", 60)
    done = subprocess.run([sys.executable, "-m", "lime_task.cli", "logs", name, "--app", "demo", "-n", namespace],
                          capture_output=True, text=True, timeout=60, env=cluster.env())
    assert done.returncode == 0, done.stderr
    assert f"running {T}.sleep" in done.stdout
    assert "its pods are gone" in done.stderr and pod in done.stderr


def test_a_deleted_pod_says_pod_deleted(operator, namespace, api):
    operator(namespace)
    name = api.create(f"{T}.sleep", 120)
    api.wait_state(name, "STARTED")
    wait_running_container(api, name)
    api.core.delete_namespaced_pod(only_pod(api, name).metadata.name, namespace)
    status = finished(api, name)
    assert (status["state"], status["reason"]) == ("FAILURE", "PodDeleted"), status
    assert status["attempts"] == 1 and status["startedAt"]


def test_a_failed_attempt_keeps_its_log_tail_and_error(operator, namespace, api):
    operator(namespace)
    name = api.create(f"{T}.fail", "boom")
    status = finished(api, name)
    assert (status["state"], status["reason"]) == ("FAILURE", "TaskRaised")
    last = status["lastAttempt"]
    assert last["reason"] == "TaskRaised" and last["exitCode"] == 1
    assert last["error"]["type"] == "ValueError" and last["error"]["message"] == "boom"
    assert "raised ValueError" in last["logTail"] and len(last["logTail"].encode()) <= 2048
    assert status["message"].startswith("ValueError: boom")


def test_deadline_exceeded_keeps_the_last_attempts_exception(operator, namespace, api):
    operator(namespace)
    # Fails at once on every attempt; the Job retries after 10 s, 20 s, ...: the 15 s
    # deadline passes while it waits for the third attempt.
    name = api.create(f"{T}.fail", "boom", retries=5, timeoutSeconds=15)
    status = finished(api, name, timeout=120)
    assert (status["state"], status["reason"]) == ("FAILURE", "DeadlineExceeded"), status
    assert status["error"]["type"] == "ValueError"
    assert status["error"]["message"] == "boom"
    assert "ValueError" in status["error"]["traceback"]
    succeeded = condition(api.get(name), "Succeeded")
    assert "timeoutSeconds=15" in succeeded["message"] and "ValueError: boom" in succeeded["message"]
    assert status["attempts"] >= 1  # the second attempt may not start in 15 s on a busy node


def test_a_running_task_past_its_deadline_is_stopped_by_sigterm_not_left_to_the_grace_period(
        operator, namespace, api):
    """The Job controller deletes the pod when timeoutSeconds passes; kubelet sends
    SIGTERM, then SIGKILL 30 s later. The runner (PID 1, where SIGTERM has no default
    action) stops the task on SIGTERM: the container ends 143, not 137."""
    operator(namespace)
    name = api.create(f"{T}.sleep", 120, timeoutSeconds=5)
    api.wait_state(name, "STARTED", timeout=60)
    wait_running_container(api, name)
    pod = only_pod(api, name).metadata.name
    status = finished(api, name, timeout=120)
    assert (status["state"], status["reason"]) == ("FAILURE", "DeadlineExceeded"), status
    # Ended with the deadline, not 30 s later when SIGKILL would have come.
    ran = (datetime.datetime.fromisoformat(status["finishedAt"].replace("Z", "+00:00"))
           - datetime.datetime.fromisoformat(status["startedAt"].replace("Z", "+00:00"))).total_seconds()
    assert ran < 25, status
    assert status["attempts"] == 1  # one pod (it was counted twice while it stopped)
    # The pod's own end (exit 143) is not asserted: the operator reads the log tail
    # while the pod stops and the pod is gone soon after, so what it kept may end before
    # the runner's SIGTERM lines; the time to FAILURE above is what SIGTERM changed.
    assert status["lastAttempt"]["pod"] == pod


@pytest.mark.parametrize("task", ["venv.__main__.main", "unittest.__main__.main"])
def test_a_module_that_exits_on_import_could_not_load_and_is_not_retried(operator, namespace, api, task):
    operator(namespace)
    name = api.create(task, retries=2)
    status = finished(api, name)
    assert (status["state"], status["reason"]) == ("FAILURE", "CouldNotLoad"), status
    assert "SystemExit" in status["error"]["message"]
    assert status["attempts"] == 1
    assert len(api.pods(name)) == 1


def test_unschedulable_stays_pending_with_the_schedulers_message(operator, namespace, api, cluster):
    operator(namespace)
    name = api.create(f"{T}.add", 1, 2, resources={"requests": {"memory": HUGE}})
    task = api.wait(name, lambda o: ((o or {}).get("status") or {}).get("reason") == "Unschedulable", 60,
                    "reason Unschedulable")
    assert task["status"]["state"] == "PENDING"
    assert "Insufficient memory" in task["status"]["message"]
    wide = cluster.kubectl("get", "lt", name, "-n", namespace, "-o", "wide").stdout
    assert "Unschedulable" in wide and "Insufficient memory" in wide
    time.sleep(3)
    assert api.get(name)["status"]["state"] == "PENDING"


def test_a_lost_node_says_node_lost(operator, namespace, api):
    operator(namespace)
    with node_without_agent(api.core) as node:
        name = api.create(f"{T}.add", 1, 2, resources={"requests": {"memory": HUGE}})
        pod = bound_task_pod(api, name, node)
        kubelet_reports(api.core, namespace, pod, "Running", {"running": {"startedAt": now()}}, started=True)
        api.wait_state(name, "STARTED", timeout=30)
        # The node goes away; the pod garbage collector fails its pods (DisruptionTarget
        # DeletionByPodGC) and removes them, after its quarantine (40 s + its 20 s period).
        api.core.delete_node(node)
        status = finished(api, name, timeout=150)
    assert (status["state"], status["reason"]) == ("FAILURE", "NodeLost"), status
    assert status["attempts"] == 1 and status["startedAt"]
    assert status["lastAttempt"]["pod"] == pod


# ------------------------------------------------------------ causes only a real kubelet gives

POD_TASKS = "tests.integration.pod_tasks"


def test_a_real_oom_kill_says_oom_killed_with_the_limit(operator, namespace, api):
    operator(namespace)
    name = api.create(f"{POD_TASKS}.allocate", 256, resources={"limits": {"memory": "64Mi"}})
    status = finished(api, name)
    assert (status["state"], status["reason"]) == ("FAILURE", "OOMKilled"), status
    assert "memory limit of 64Mi" in status["error"]["message"]
    assert status["attempts"] == 1


def test_a_real_missing_image_fails_with_kubelets_reason_and_message(operator, namespace, api):
    timeout = 20
    operator(namespace, CONTAINER_START_TIMEOUT_SECONDS=timeout, ALLOWED_IMAGES="registry.invalid/")
    name = api.create(f"{T}.add", 1, 2, image="registry.invalid/lime-task/no-such-image:1")
    # While kubelet keeps trying, the task says why it waits.
    pending = api.wait(name, lambda o: ((o or {}).get("status") or {}).get("reason") in (
        "ErrImagePull", "ImagePullBackOff"), timeout, "kubelet's pull error")
    assert pending["status"]["state"] == "PENDING" and "no-such-image" in pending["status"]["message"]
    created = only_pod(api, name).metadata.creation_timestamp
    status = finished(api, name, timeout=90)
    assert status["state"] == "FAILURE", status
    assert status["reason"] in ("ErrImagePull", "ImagePullBackOff"), status
    assert "no-such-image" in status["error"]["message"] and f"{timeout}s" in status["error"]["message"]
    assert status["attempts"] == 0
    # On time (the operator looks again when the wait runs out), not at a later resync.
    waited = datetime.datetime.fromisoformat(status["finishedAt"].replace("Z", "+00:00")) - created
    assert timeout <= waited.total_seconds() < timeout + 15, waited
    # The Job must not start the failed task if the image shows up later.
    wait_for(lambda: not api.jobs(name), "the Job's deletion", 30)
