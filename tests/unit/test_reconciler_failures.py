"""The reconciler's failure forensics (#11): the log tail of a failed attempt is read while
the pod exists, and a task whose container could not start has its Job deleted.

Same fake API as tests/unit/test_reconciler.py; the two module-level kube functions
(read_pod_log_tail, delete_job) are replaced by recorders.
"""

from __future__ import annotations

import asyncio
import json

from lime_task_operator import kube as kube_module
from lime_task_operator import views
from lime_task_operator.cache import JOBS, PODS, Cache
from lime_task_operator.reconciler import Reconciler
from lime_task_operator.settings import Settings

from .test_reconciler import KEY, NOW, FakeKube, job, pod, task

ERROR = {"type": "ValueError", "message": "boom", "traceback": "Traceback ...\nValueError: boom\n"}


def failed_pod(report=True):
    return pod(phase="Failed", terminated={
        "exitCode": 1, "startedAt": "2026-11-30T11:59:00Z", "finishedAt": "2026-11-30T11:59:30Z",
        "message": json.dumps({"ok": False, "error": ERROR}) if report else None})


def one_pass(monkeypatch, the_task, the_job, pods, answers=None, log=None, settings=None):
    kube = FakeKube(answers or {})
    calls = {"log": [], "delete_job": []}

    async def read_log(k, namespace, name, container, lines, limit):
        calls["log"].append((name, container, lines, limit))
        if isinstance(log, Exception):
            raise log
        return log

    async def delete_job(k, namespace, name, uid):
        calls["delete_job"].append((name, uid))
        return True

    monkeypatch.setattr(kube_module, "read_pod_log_tail", read_log)
    monkeypatch.setattr(kube_module, "delete_job", delete_job)
    config = Settings(default_image="runner:1", **(settings or {}))
    cache = Cache()
    cache.put_task(KEY, views.task_view(the_task, config.events_enabled))
    cache.put_child(JOBS, ("ns", "lt-t1"), KEY, views.job_view(the_job))
    for i, p in enumerate(pods):
        cache.put_child(PODS, ("ns", f"pod{i}"), KEY, views.pod_view(p))

    async def run():
        reconciler = Reconciler(config, kube, cache, None, Exception, clock=lambda: NOW)
        try:
            await reconciler.reconcile(KEY)
        finally:
            await reconciler.stop()

    asyncio.run(run())
    patches = [fields for kind, fields in kube.writes if kind == "patch"]
    return patches, calls


def running_task():
    return task(state="STARTED", job_name="lt-t1", startedAt="2026-11-30T11:59:00Z", attempts=1)


def test_a_failed_attempts_log_tail_and_report_are_recorded_while_the_job_retries(monkeypatch):
    # The cache's view may lack the report: the pods are listed afresh before recording.
    patches, calls = one_pass(monkeypatch, running_task(), job(active=0, failed=1), [failed_pod(report=False)],
                              answers={"list_task_pods": [failed_pod()]}, log="line 1\nValueError: boom\n")
    assert calls["log"] == [("lt-t1-abcde", "task", 200, 65536)]
    [fields] = patches
    assert fields["state"] == "STARTED"
    last = fields["lastAttempt"]
    assert (last["pod"], last["reason"], last["error"]["type"]) == ("lt-t1-abcde", "TaskRaised", "ValueError")
    assert last["logTail"] == "line 1\nValueError: boom\n"


def test_a_log_not_readable_yet_is_read_again_later(monkeypatch):
    patches, calls = one_pass(monkeypatch, running_task(), job(active=0, failed=1), [failed_pod()],
                              answers={"list_task_pods": [failed_pod()]},
                              log=kube_module.KubeError(400, 'container "task" is waiting to start'))
    [fields] = patches
    assert fields["lastAttempt"]["logTail"] is None  # nothing recorded: the next pass reads again


def test_a_gone_pods_log_is_recorded_as_unreadable(monkeypatch):
    patches, _ = one_pass(monkeypatch, running_task(), job(active=0, failed=1), [failed_pod()],
                          answers={"list_task_pods": [failed_pod()]},
                          log=kube_module.KubeError(404, "pods not found"))
    assert "could not be read" in patches[0]["lastAttempt"]["logTail"]


def test_a_container_that_cannot_start_fails_the_task_and_its_job_is_deleted(monkeypatch):
    stuck = pod(running=False)
    stuck["metadata"]["creationTimestamp"] = "2026-11-30T11:00:00Z"  # an hour ago
    stuck["status"]["phase"] = "Pending"
    stuck["status"]["containerStatuses"][0]["state"] = {
        "waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}}
    patches, calls = one_pass(monkeypatch, task(state="PENDING", job_name="lt-t1"), job(active=1), [stuck],
                              settings={"container_start_timeout_seconds": 60})
    assert [(f["state"], f["reason"]) for f in patches] == [("FAILURE", "ImagePullBackOff")]
    assert calls["delete_job"] == [("lt-t1", "job-uid")]
