"""Names Kubernetes derives from a task's name (the task-id label, the Job name) are cut
and hashed when the name does not fit, so two tasks can share one. Each task is still
judged on its own pods only, and one whose Job name another Job holds ends FAILURE in
bounded time instead of waiting for ever.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lime_task.children import task_label
from lime_task_operator.jobs import job_name

from ._operator_helpers import state

pytestmark = pytest.mark.integration

T = "sample_tasks.tasks"
BOUND = 30  # seconds


def logs(cluster, namespace: str, name: str, app: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lime_task.cli", "logs", name, "--app", app, "-n", namespace],
                          capture_output=True, text=True, timeout=60, env=cluster.env())


def test_a_task_named_like_a_long_names_label_is_judged_on_its_own_pods(cluster, operator, namespace, api):
    """Before: the failing short-named task of app-b ended SUCCESS with app-a's result,
    read from the long-named task's pod, and `lime-task logs` showed app-a's log to app-b."""
    operator(namespace)
    long_name = "m" * 70
    short_name = task_label(long_name)  # a valid name of its own, sharing the label
    api.create(f"{T}.add", 40, 2, app="app-a", name=long_name)
    ran = api.wait_state(long_name, "SUCCESS", "FAILURE", timeout=BOUND)["status"]["result"]
    assert (ran["sum"], ran["app"]) == (42, "app-a")
    api.create(f"{T}.fail", "boom", app="app-b", name=short_name)
    done = api.wait_state(short_name, "SUCCESS", "FAILURE", timeout=BOUND)
    assert (state(done), done["status"]["reason"]) == ("FAILURE", "TaskRaised"), json.dumps(done["status"])[:2000]
    assert done["status"].get("result") is None and done["status"]["error"]["message"] == "boom"
    assert done["status"]["attempts"] == 1
    # The long-named task kept its own result.
    assert api.get(long_name)["status"]["result"] == ran

    of_long = logs(cluster, namespace, long_name, "app-a")
    assert of_long.returncode == 0, of_long.stderr
    assert f"running {T}.add" in of_long.stdout and f"{T}.fail" not in of_long.stdout
    of_short = logs(cluster, namespace, short_name, "app-b")
    assert f"{T}.fail" in of_short.stdout + of_short.stderr
    assert f"running {T}.add" not in of_short.stdout + of_short.stderr


def test_an_orphaned_job_at_the_tasks_job_name_fails_the_task_naming_it(cluster, operator, namespace, api):
    """`kubectl delete --cascade=orphan` leaves the Job; a new task of the same name used
    to wait for its removal for ever, with no status."""
    operator(namespace)
    name = api.create(f"{T}.add", 1, 1, name="fixed-one")
    assert state(api.wait_state(name, "SUCCESS", "FAILURE", timeout=BOUND)) == "SUCCESS"
    cluster.kubectl("delete", "limetask", name, "-n", namespace, "--cascade=orphan", "--wait=true")
    api.wait_gone(name, timeout=BOUND)
    api.create(f"{T}.add", 2, 2, name="fixed-one")
    done = api.wait_state(name, "SUCCESS", "FAILURE", timeout=BOUND)
    assert (state(done), done["status"]["reason"]) == ("FAILURE", "JobNameTaken"), json.dumps(done["status"])[:2000]
    assert f"Job {job_name(name)} exists and no LimeTask controls it" in done["status"]["error"]["message"]
    assert done["status"]["attempts"] == 0
    # The orphaned Job is left as it was: it is not the task's to delete.
    assert cluster.kubectl("get", "job", job_name(name), "-n", namespace, "-o", "name").stdout.strip()


def test_two_names_that_map_to_one_job_name_fail_the_second_at_once(cluster, operator, namespace, api):
    operator(namespace)
    dotted = "col.one"  # a dot is legal in a LimeTask name, not in a Job's pod host name
    plain = job_name(dotted)[len("lt-"):]  # the name whose Job name is the same
    api.create(f"{T}.add", 1, 2, name=plain)
    assert state(api.wait_state(plain, "SUCCESS", "FAILURE", timeout=BOUND)) == "SUCCESS"
    api.create(f"{T}.add", 3, 4, name=dotted)
    done = api.wait_state(dotted, "SUCCESS", "FAILURE", timeout=BOUND)
    assert (state(done), done["status"]["reason"]) == ("FAILURE", "JobNameTaken"), json.dumps(done["status"])[:2000]
    assert f"belongs to LimeTask {plain}" in done["status"]["error"]["message"]
    first = api.get(plain)["status"]
    assert (first["state"], first["result"]["sum"]) == ("SUCCESS", 3)  # untouched
