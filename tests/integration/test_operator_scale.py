"""A restarted operator serves new tasks however many tasks already exist (issue #9).

More finished tasks than any worker or queue limit of the operator (1,000; the kopf
worker limit that once deadlocked start-up was 200) are written directly, status
included, so that the test stays fast; then the operator starts beside them.
"""

from __future__ import annotations

import time
import urllib.request

import pytest

from devcluster import seeding

from ._operator_helpers import Api, state

pytestmark = pytest.mark.integration

EXISTING = 1000


def _wait_terminal(api: Api, names: list[str], timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        tasks = {t["metadata"]["name"]: t for t in api.tasks() if t["metadata"]["name"] in names}
        if len(tasks) == len(names) and all(state(t) in ("SUCCESS", "FAILURE") for t in tasks.values()):
            return tasks
        assert time.monotonic() < deadline, {n: state(t) for n, t in tasks.items()}
        time.sleep(0.2)


def test_new_task_succeeds_promptly_beside_a_thousand_finished_ones(cluster, operator, namespace, api):
    with cluster.api_client() as api_client:
        seeding.create_finished(api_client, namespace, [f"old-{i:04d}" for i in range(EXISTING)])
    before = {t["metadata"]["name"]: t["status"] for t in api.tasks()}
    assert len(before) == EXISTING

    started = time.monotonic()
    proc = operator(namespace)  # returns once its health endpoint says ready
    ready = time.monotonic() - started
    name = api.create("sample_tasks.tasks.add", 2, 3)
    done = _wait_terminal(api, [name], timeout=30)[name]
    assert done["status"]["state"] == "SUCCESS", done["status"]
    assert done["status"]["result"]["sum"] == 5
    assert "caches synced" in proc.log and f"'tasks': {EXISTING}" in proc.log, proc.log[-3000:]
    # The finished tasks were read, not rewritten: statuses unchanged, none deleted.
    after = {t["metadata"]["name"]: t["status"] for t in api.tasks() if t["metadata"]["name"] != name}
    assert after == before
    print(f"ready {ready:.1f}s after start with {EXISTING} finished tasks")


def test_queued_and_running_tasks_are_counted_right_after_a_restart(cluster, operator, namespace, api):
    with cluster.api_client() as api_client:
        seeding.create_finished(api_client, namespace, [f"old-{i:04d}" for i in range(EXISTING)])
    proc = operator(namespace, MAX_RUNNING=2)
    first = [api.create("sample_tasks.tasks.sleep", 1.5, name=f"q{i}-{namespace[-6:]}") for i in range(5)]
    deadline = time.monotonic() + 30
    while len(api.jobs()) < 2:
        assert time.monotonic() < deadline, "no Jobs"
        time.sleep(0.1)
    proc.kill()
    late = [api.create("sample_tasks.tasks.add", i, 1, name=f"late{i}-{namespace[-6:]}") for i in range(3)]
    proc.start()

    names = first + late
    most_active = 0
    deadline = time.monotonic() + 120
    while True:
        # Task processes alive at once: pods whose container has not terminated. (kubelet
        # reports the terminal phase only after the pod's sandbox is torn down, and the
        # Job is marked Complete a second after that; the slot goes to the next task as
        # soon as the container has ended.)
        pods = api.core.list_namespaced_pod(namespace).items
        active = [p for p in pods if p.status.phase not in ("Succeeded", "Failed") and not (
            p.status.container_statuses and all(cs.state.terminated for cs in p.status.container_statuses))]
        most_active = max(most_active, len(active))
        tasks = {t["metadata"]["name"]: t for t in api.tasks() if t["metadata"]["name"] in names}
        if len(tasks) == len(names) and all(state(t) in ("SUCCESS", "FAILURE") for t in tasks.values()):
            break
        assert time.monotonic() < deadline, {n: state(t) for n, t in tasks.items()}
        time.sleep(0.1)
    assert {n: state(t) for n, t in tasks.items()} == {n: "SUCCESS" for n in names}
    assert most_active <= 2, f"{most_active} task pods ran at once under MAX_RUNNING=2"
    jobs_per_task: dict[str, int] = {}
    for job in api.jobs():
        task = job.metadata.annotations["limetask.dev/task-name"]
        jobs_per_task[task] = jobs_per_task.get(task, 0) + 1
    assert jobs_per_task == {n: 1 for n in names}


def test_health_says_ready_only_once_serving(cluster, operator, namespace, api):
    with cluster.api_client() as api_client:
        seeding.create_finished(api_client, namespace, [f"old-{i:04d}" for i in range(EXISTING)])
    proc = operator(namespace)
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/healthz", timeout=5) as response:
        body = response.read().decode()
    assert response.status == 200
    assert '"synced": true' in body and f'"tasks": {EXISTING}' in body, body
