"""Tasks the API server accepts but that cannot run end as FAILURE in bounded time, and
none of them stops, deafens or slows the operator for other tasks (issue #10, kinds 2-4).
"""

from __future__ import annotations

import json
import time

import pytest

from ._operator_helpers import condition, state

pytestmark = pytest.mark.integration

BOUND = 30  # seconds: "ends as FAILURE within 30 s"


def _poison(cluster, namespace: str, name: str, depth: int) -> None:
    """A LimeTask whose args nest `depth` levels (the Python client cannot even encode it:
    kubectl sends the bytes)."""
    args = "[" * depth + "1" + "]" * depth
    body = ('{"apiVersion":"limetask.dev/v1alpha1","kind":"LimeTask","metadata":{"name":"%s","namespace":"%s"},'
            '"spec":{"task":"sample_tasks.tasks.add","app":"demo","args":[%s]}}' % (name, namespace, args))
    cluster.kubectl("create", "--raw", f"/apis/limetask.dev/v1alpha1/namespaces/{namespace}/limetasks",
                    "-f", "-", input=body)


def _jsonpath(cluster, namespace: str, name: str, path: str) -> str:
    # kubectl (Go) reads bodies of any depth the API server accepts; the Python client's
    # json would hit the recursion limit on these objects.
    return cluster.kubectl("get", "limetask", name, "-n", namespace, "-o", f"jsonpath={path}").stdout


def _wait_jsonpath(cluster, namespace, name, path, want, timeout=BOUND) -> str:
    deadline = time.monotonic() + timeout
    value = ""
    while time.monotonic() < deadline:
        value = _jsonpath(cluster, namespace, name, path)
        if value in want:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{name}: {path} is {value!r} after {timeout}s")


def test_poison_objects_end_invalid_and_canaries_still_run(cluster, operator, namespace, api):
    _poison(cluster, namespace, "deep-600", 600)      # there before the operator starts
    operator(namespace)
    canary = api.create("sample_tasks.tasks.add", 1, 1)
    _poison(cluster, namespace, "deep-3000", 3000)    # arrives on the watch
    _poison(cluster, namespace, "deep-9990", 9990)    # near the API server's own limit
    late_canary = api.create("sample_tasks.tasks.add", 2, 2)

    for name in ("deep-600", "deep-3000", "deep-9990"):
        assert _wait_jsonpath(cluster, namespace, name, "{.status.state}", {"FAILURE"}) == "FAILURE"
        assert _jsonpath(cluster, namespace, name, "{.status.reason}") == "InvalidTask"
        assert "levels deep" in _jsonpath(cluster, namespace, name, "{.status.error.message}")
    for name in (canary, late_canary):
        assert state(api.wait_state(name, "SUCCESS", "FAILURE", timeout=BOUND)) == "SUCCESS"
    # The watch survived: a task created after all of it still runs.
    last = api.create("sample_tasks.tasks.add", 3, 3)
    assert state(api.wait_state(last, "SUCCESS", "FAILURE", timeout=BOUND)) == "SUCCESS"


def test_an_80_character_name_runs(operator, namespace, api):
    operator(namespace)
    name = ("n" * 60 + "-" + "m" * 19)[:80]
    assert len(name) == 80
    api.create("sample_tasks.tasks.add", 2, 3, name=name)
    done = api.wait_state(name, "SUCCESS", "FAILURE", timeout=BOUND)
    assert state(done) == "SUCCESS", done["status"]
    (job,) = api.batch.list_namespaced_job(namespace).items
    assert job.metadata.annotations["limetask.dev/task-name"] == name
    assert len(job.metadata.labels["limetask.dev/task-id"]) <= 63


def test_a_huge_keyword_name_fails_with_a_cut_message(operator, namespace, api):
    operator(namespace)
    key = "k" * 5400
    name = api.create("sample_tasks.tasks.add", 2, 3, kwargs={key: 1})
    done = api.wait_state(name, "SUCCESS", "FAILURE", timeout=BOUND)
    assert state(done) == "FAILURE"
    message = done["status"]["error"]["message"]
    assert len(message) <= 4096 and ("characters cut" in message or len(key) > len(message))
    assert len(condition(done, "Succeeded")["message"]) <= 32768


def test_job_refused_by_the_api_server_fails_the_task_naming_why(cluster, operator, namespace, api):
    operator(namespace)
    # A resource quantity the schema lets through (int-or-string) but the Job API refuses.
    name = api.create("sample_tasks.tasks.add", 2, 3, resources={"limits": {"memory": "lots"}})
    done = api.wait_state(name, "SUCCESS", "FAILURE", timeout=BOUND)
    assert state(done) == "FAILURE"
    assert done["status"]["reason"] in ("JobRejected", "InvalidTask")
    assert "quantities must match" in done["status"]["error"]["message"]


def test_quota_keeps_the_task_pending_then_it_runs(cluster, operator, namespace, api):
    cluster.kubectl("create", "quota", "jobs", "-n", namespace, "--hard=count/jobs.batch=0")
    operator(namespace)
    name = api.create("sample_tasks.tasks.add", 2, 3)
    waiting = api.wait(name, lambda o: ((o or {}).get("status") or {}).get("reason") == "QuotaExceeded",
                       timeout=BOUND, what="reason QuotaExceeded")
    assert state(waiting) == "PENDING"
    assert "exceeded quota" in condition(waiting, "Succeeded")["message"]
    wide = cluster.kubectl("get", "lt", name, "-n", namespace, "-o", "wide").stdout
    assert "QuotaExceeded" in wide
    cluster.kubectl("delete", "quota", "jobs", "-n", namespace)
    done = api.wait_state(name, "SUCCESS", "FAILURE", timeout=90)
    assert state(done) == "SUCCESS", json.dumps(done["status"])[:2000]
