"""The reconciler, table-driven with a fake API and a fake clock (Job controller style).

Each row: a task (and its Job and pods as the cache holds them), the settings, what the
fake API answers, and the writes the pass must make. One pass per row
(``Reconciler.reconcile`` or ``.publish``), no cluster.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import pytest

from lime_task_operator import kube as kube_module
from lime_task_operator import views
from lime_task_operator.cache import JOBS, PODS, Cache
from lime_task_operator.kube import Invalid, QuotaExceeded
from lime_task_operator.reconciler import Reconciler
from lime_task_operator.settings import Settings
from lime_task_operator.workqueue import Retry

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=timezone.utc)
KEY = ("ns", "t1")


def task(state=None, uid="uid-1", task_name="pkg.tasks.add", job_name=None, finished=None, confirmed=False,
         event_condition=None, ttl=None, **extra_status) -> dict:
    status: dict[str, Any] = dict(extra_status)
    if state:
        status["state"] = state
        status["reason"] = {"SUCCESS": "Completed", "FAILURE": "TaskRaised"}.get(state, "Pending")
    if job_name:
        status["jobName"] = job_name
    if finished:
        status["finishedAt"] = finished
    if state in ("SUCCESS", "FAILURE"):
        status.setdefault("result", {"sum": 5} if state == "SUCCESS" else None)
        status["conditions"] = [{"type": "Succeeded", "status": "True", "reason": "Completed",
                                 "message": "", "lastTransitionTime": "2026-11-30T11:00:00Z"}]
        if event_condition:
            status["conditions"].append({"type": "EventPublished", "status": "False", "reason": event_condition,
                                         "message": "x", "lastTransitionTime": "2026-11-30T11:00:00Z"})
    if confirmed:
        status["event"] = {"routingKey": "k", "messageId": "m", "confirmedAt": "2026-11-30T11:00:00Z"}
    spec = {"task": task_name, "app": "demo", "args": [2, 3], "kwargs": {}}
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {"metadata": {"name": KEY[1], "namespace": KEY[0], "uid": uid, "resourceVersion": "7",
                         "creationTimestamp": "2026-11-30T10:00:00Z"},
            "spec": spec, "status": status}


def job(owner_uid="uid-1", **status) -> dict:
    return {"metadata": {"name": "lt-t1", "namespace": "ns", "uid": "job-uid",
                         "ownerReferences": [{"kind": "LimeTask", "name": "t1", "uid": owner_uid,
                                              "controller": True}]},
            "status": status}


def pod(phase="Running", terminated=None, running=True) -> dict:
    state = {"terminated": terminated} if terminated else ({"running": {"startedAt": "2026-11-30T11:59:00Z"}}
                                                           if running else {"waiting": {"reason": "ContainerCreating"}})
    return {"metadata": {"name": "lt-t1-abcde", "namespace": "ns", "uid": "pod-uid",
                         "creationTimestamp": "2026-11-30T11:58:00Z"},
            "status": {"phase": phase, "containerStatuses": [{"name": "task", "state": state, "restartCount": 0}]}}


async def no_log(*args, **kwargs):
    return ""


class FakeKube:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.writes: list[tuple[str, Any]] = []

    def _answer(self, name, default):
        value = self.answers.get(name, default)
        if isinstance(value, tuple):  # one answer per call, in order; the last one stays
            self.answers[name] = value[1:] or value
            value = value[0]
        if isinstance(value, Exception):
            raise value
        return value

    async def get_job(self, namespace, name):
        return self._answer("get_job", None)

    async def get_task(self, namespace, name):
        return self._answer("get_task", None)

    async def create_job(self, namespace, body):
        self.writes.append(("create_job", body["metadata"]["name"]))
        created = self._answer("create_job", None)
        return (created or {**body, "metadata": {**body["metadata"], "uid": "job-uid"}}), True

    async def list_task_pods(self, namespace, name):
        return self._answer("list_task_pods", [])

    async def patch_task_status(self, namespace, name, fields, resource_version, has_status=True):
        self.writes.append(("patch", dict(fields)))
        return self._answer("patch", {})

    async def delete_task(self, namespace, name, uid):
        self.writes.append(("delete_task", uid))
        return True

    def in_background(self, call):
        """Kube.in_background without its bounds: the call runs as soon as the test awaits."""
        self.background = getattr(self, "background", []) + [asyncio.get_running_loop().create_task(call)]

    async def record_event(self, *args):
        pass


class FakePublisher:
    def __init__(self, error: Optional[Exception] = None) -> None:
        self.error = error
        self.published: list[tuple] = []

    def publish(self, routing_key, body, message_id, timestamp):
        if self.error:
            raise self.error
        self.published.append((routing_key, message_id))

    def close(self):
        pass


class PublishError(Exception):
    reason = "BrokerUnreachable"
    message = "connection refused"


@dataclass
class Row:
    name: str
    task: dict
    job: Optional[dict] = None
    pods: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    answers: dict = field(default_factory=dict)
    others: list = field(default_factory=list)  # other tasks' views in the cache (admission)
    publisher: Optional[FakePublisher] = None
    step: str = "reconcile"
    # Expected: [("create_job", None) | ("patch", {"state":..., "reason":...}) | ("delete_task", None)]
    writes: list = field(default_factory=list)
    raises: Optional[type] = None


def check(row: Row) -> tuple[FakeKube, Reconciler]:
    kube = FakeKube(row.answers)
    cache = Cache()
    config = Settings(default_image="runner:1", **row.settings)
    for key, other in row.others:
        cache.put_task(key, other)
    cache.put_task(KEY, views.task_view(row.task, config.events_enabled))
    if row.job:
        cache.put_child(JOBS, ("ns", "lt-t1"), KEY, views.job_view(row.job))
    for i, p in enumerate(row.pods):
        cache.put_child(PODS, ("ns", f"pod{i}"), KEY, views.pod_view(p))

    async def one_pass():
        reconciler = Reconciler(config, kube, cache, row.publisher, PublishError, clock=lambda: NOW)
        step = reconciler.reconcile if row.step == "reconcile" else reconciler.publish
        try:
            if row.raises:
                with pytest.raises(row.raises):
                    await step(KEY)
            else:
                await step(KEY)
        finally:
            await reconciler.stop()
        return reconciler

    reconciler = asyncio.run(one_pass())
    got = []
    for kind, value in kube.writes:
        if kind == "patch":
            got.append((kind, {k: value.get(k) for k in ("state", "reason") if k in value} or
                        sorted(value)))
        else:
            got.append((kind, None))
    if row.writes == "not terminal":
        assert all(w[1].get("state") not in ("SUCCESS", "FAILURE") for w in kube.writes if w[0] == "patch"), \
            kube.writes
        return kube, reconciler
    assert got == row.writes, f"{row.name}: {json.dumps(kube.writes, default=str)[:2000]}"
    return kube, reconciler


OLD = (NOW - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
RECENT = (NOW - timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")

ROWS = [
    Row("new task gets a Job, then PENDING/Pending", task(),
        writes=[("create_job", None), ("patch", {"state": "PENDING", "reason": "Pending"})]),
    Row("no free slot: PENDING/Queued, no Job", task(), settings={"max_running": 1},
        others=[(("ns", "busy"), {**views.task_view(task(state="STARTED", job_name="lt-busy")),
                                  "metadata": {"name": "busy", "namespace": "ns", "uid": "u2",
                                               "resourceVersion": "1", "creationTimestamp": "x"}})],
        writes=[("patch", {"state": "PENDING", "reason": "Queued"})]),
    Row("quota refuses the Job: PENDING/QuotaExceeded and retried", task(),
        answers={"create_job": QuotaExceeded(403, "exceeded quota: jobs")},
        writes=[("create_job", None), ("patch", {"state": "PENDING", "reason": "QuotaExceeded"})], raises=Retry),
    Row("API server refuses the Job: FAILURE/JobRejected, not retried", task(),
        answers={"create_job": Invalid(422, "spec.template: invalid")},
        writes=[("create_job", None), ("patch", {"state": "FAILURE", "reason": "JobRejected"})]),
    Row("refused status write ends as StatusRejected", task(),
        answers={"patch": (Invalid(422, "status.error.message: Too long"), {})},
        writes=[("create_job", None), ("patch", {"state": "PENDING", "reason": "Pending"}),
                ("patch", {"state": "FAILURE", "reason": "StatusRejected"})]),
    Row("Job deleted under a running task: Cancelled", task(state="STARTED", job_name="lt-t1"),
        writes=[("patch", {"state": "FAILURE", "reason": "Cancelled"})]),
    Row("Job of an earlier task with the same name: wait, write nothing", task(),
        job=job(owner_uid="old-uid"), writes=[]),
    Row("orphaned Job at the task's Job name (kubectl delete --cascade=orphan): FAILURE/JobNameTaken at once",
        task(), job={**job(), "metadata": {**job()["metadata"], "ownerReferences": []}},
        writes=[("patch", {"state": "FAILURE", "reason": "JobNameTaken"})]),
    Row("orphaned Job being deleted: wait for it, write nothing", task(),
        job={**job(), "metadata": {**job()["metadata"], "ownerReferences": [], "deletionTimestamp": RECENT}},
        writes=[]),
    Row("Job of another live task whose name maps to the same Job name: FAILURE/JobNameTaken at once",
        task(), answers={"create_job": {"metadata": {"name": "lt-t1", "namespace": "ns", "uid": "j2",
                                                     "ownerReferences": [{"kind": "LimeTask", "name": "t-1",
                                                                          "uid": "u-other", "controller": True}]}}},
        others=[(("ns", "t-1"), {**views.task_view(task(state="STARTED", job_name="lt-t1")),
                                 "metadata": {"name": "t-1", "namespace": "ns", "uid": "u-other",
                                              "resourceVersion": "1", "creationTimestamp": "x"}})],
        writes=[("create_job", None), ("patch", {"state": "FAILURE", "reason": "JobNameTaken"})]),
    Row("pod running: STARTED/Running", task(state="PENDING", job_name="lt-t1"), job=job(active=1),
        pods=[pod()], writes=[("patch", {"state": "STARTED", "reason": "Running"})]),
    Row("Job complete: SUCCESS with the result from the fresh pod",
        task(state="STARTED", job_name="lt-t1", startedAt="2026-11-30T11:59:00Z", attempts=1),
        job=job(succeeded=1, conditions=[{"type": "Complete", "status": "True",
                                          "lastTransitionTime": "2026-11-30T12:00:00Z"}]),
        pods=[pod()],
        answers={"list_task_pods": [pod(phase="Succeeded", terminated={
            "exitCode": 0, "startedAt": "2026-11-30T11:59:00Z", "finishedAt": "2026-11-30T11:59:30Z",
            "message": json.dumps({"ok": True, "result": {"parent": None}})})]},
        writes=[("patch", {"state": "SUCCESS", "reason": "Completed"})]),
    Row("pod succeeded before the Job says so: SUCCESS from the pod's own report",
        task(state="STARTED", job_name="lt-t1", startedAt="2026-11-30T11:59:00Z", attempts=1),
        job=job(active=1), pods=[pod(phase="Succeeded", terminated={
            "exitCode": 0, "startedAt": "2026-11-30T11:59:00Z", "finishedAt": "2026-11-30T11:59:30Z",
            "message": json.dumps({"ok": True, "result": 7})})],
        writes=[("patch", {"state": "SUCCESS", "reason": "Completed"})]),
    Row("a failed pod alone is not a verdict: the Job may retry",
        task(state="STARTED", job_name="lt-t1", startedAt="2026-11-30T11:59:00Z", attempts=1),
        job=job(active=1), pods=[pod(phase="Failed", terminated={
            "exitCode": 1, "startedAt": "2026-11-30T11:59:00Z", "finishedAt": "2026-11-30T11:59:30Z",
            "message": json.dumps({"ok": False, "error": {"type": "ValueError", "message": "boom"}})})],
        writes="not terminal"),
    Row("finished, TTL passed, event confirmed: deleted", task(state="SUCCESS", finished=OLD, confirmed=True),
        writes=[("delete_task", None)]),
    Row("finished, TTL not passed: nothing written", task(state="SUCCESS", finished=RECENT, confirmed=True),
        writes=[]),
    Row("finished, event never publishable, TTL passed: deleted all the same",
        task(state="SUCCESS", finished=OLD, event_condition="InvalidEvent"), publisher=FakePublisher(),
        writes=[("delete_task", None)]),
    Row("events disabled: the task says so once", task(state="SUCCESS", finished=RECENT),
        writes=[("patch", ["conditions"])]),
    Row("publish: confirmed event is recorded", task(state="SUCCESS", finished=RECENT),
        publisher=FakePublisher(), step="publish", writes=[("patch", ["conditions", "event"])]),
    Row("publish: broker down, condition says so, queue backs off", task(state="FAILURE", finished=RECENT),
        publisher=FakePublisher(PublishError()), step="publish", writes=[("patch", ["conditions"])], raises=Retry),
    Row("publish: routing key over 255 bytes: InvalidEvent, no retry",
        task(state="SUCCESS", finished=RECENT, task_name="a." + "b" * 250), publisher=FakePublisher(),
        step="publish", writes=[("patch", ["conditions"])]),
]


def named(prefix: str) -> Row:
    (row,) = [row for row in ROWS if row.name.startswith(prefix)]
    return row


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_reconcile_pass(row, monkeypatch):
    monkeypatch.setattr(kube_module, "read_pod_log_tail", no_log)
    kube, _ = check(row)
    if row.publisher is not None and row.step == "publish" and not row.publisher.error:
        published = [key for key, _ in row.publisher.published]
        assert published == ([] if "255" in row.name else ["core.task.pkg.tasks.add.success.v1"])


def test_success_result_keeps_null_members(monkeypatch):
    monkeypatch.setattr(kube_module, "read_pod_log_tail", no_log)
    kube, _ = check(named("Job complete"))
    (_, fields), = kube.writes
    assert fields["result"] == {"parent": None}


def test_status_messages_are_cut_to_the_crd_limits(monkeypatch):
    monkeypatch.setattr(kube_module, "read_pod_log_tail", no_log)
    row = Row("long", task(), answers={"create_job": Invalid(422, "x" * 50_000)},
              writes=[("create_job", None), ("patch", {"state": "FAILURE", "reason": "JobRejected"})])
    kube, _ = check(row)
    fields = kube.writes[-1][1]
    assert len(fields["error"]["message"]) <= 4096 and "characters cut" in fields["error"]["message"]
    assert all(len(c["message"]) <= 32768 for c in fields["conditions"])


def test_no_status_write_is_ever_built_from_a_compact_view(monkeypatch):
    row = named("finished, TTL passed, event confirmed")
    cache_view = views.task_view(row.task)
    assert views.is_compact(cache_view)

    async def attempt():
        reconciler = Reconciler(Settings(default_image="x"), FakeKube({}), Cache(), clock=lambda: NOW)
        try:
            with pytest.raises(RuntimeError, match="compact"):
                await reconciler._patch(KEY, cache_view, {"state": "FAILURE"})
        finally:
            await reconciler.stop()

    asyncio.run(attempt())


POD_SUCCESS = named("pod succeeded before the Job")


def test_terminal_state_and_event_confirmation_are_one_write(monkeypatch):
    monkeypatch.setattr(kube_module, "read_pod_log_tail", no_log)
    publisher = FakePublisher()
    row = Row("one write", POD_SUCCESS.task, job=POD_SUCCESS.job, pods=POD_SUCCESS.pods, publisher=publisher,
              writes=[("patch", {"state": "SUCCESS", "reason": "Completed"})])
    kube, _ = check(row)
    (_, fields), = kube.writes
    assert fields["result"] == 7 and fields["event"]["messageId"] == "uid-1.success"
    assert {c["type"]: c["status"] for c in fields["conditions"]} == {"Succeeded": "True", "EventPublished": "True"}
    assert publisher.published == [("core.task.pkg.tasks.add.success.v1", "uid-1.success")]


def test_broker_down_the_state_is_written_alone_and_the_event_retried(monkeypatch):
    monkeypatch.setattr(kube_module, "read_pod_log_tail", no_log)
    row = Row("broker down", POD_SUCCESS.task, job=POD_SUCCESS.job, pods=POD_SUCCESS.pods,
              publisher=FakePublisher(PublishError()),
              writes=[("patch", {"state": "SUCCESS", "reason": "Completed"})])
    kube, _ = check(row)
    (_, fields), = kube.writes
    assert "event" not in fields


def test_our_own_write_of_an_unfinished_state_starts_no_pass_and_a_finished_one_does():
    async def scenario():
        cache = Cache()
        reconciler = Reconciler(Settings(default_image="x"), FakeKube({}), cache, clock=lambda: NOW)
        try:
            cache.put_task(KEY, views.task_view(task()))
            written = task(state="PENDING", job_name="lt-t1")
            written["metadata"]["resourceVersion"] = "8"
            reconciler._write_through(KEY, written)
            pending_queued = KEY in reconciler.main._queued
            assert cache.task(KEY)["status"]["state"] == "PENDING"  # the cache has the write
            finished = task(state="SUCCESS", finished=RECENT)
            finished["metadata"]["resourceVersion"] = "9"
            reconciler._write_through(KEY, finished)
            return pending_queued, KEY in reconciler.main._queued
        finally:
            await reconciler.stop()

    assert asyncio.run(scenario()) == (False, True)


def test_a_job_of_an_earlier_task_that_stays_fails_the_task_after_the_bounded_wait(monkeypatch):
    """Waiting for the garbage collector is bounded: a Job whose deleted owner it never
    removes ends the task FAILURE/JobNameTaken, not PENDING for ever."""
    from lime_task_operator import reconciler as reconciler_module

    kube, cache, config = FakeKube({}), Cache(), Settings(default_image="runner:1")
    cache.put_task(KEY, views.task_view(task(), config.events_enabled))
    cache.put_child(JOBS, ("ns", "lt-t1"), KEY, views.job_view(job(owner_uid="old-uid")))
    clock = [1000.0]

    async def passes():
        reconciler = Reconciler(config, kube, cache, None, PublishError, clock=lambda: NOW,
                                monotonic=lambda: clock[0])
        try:
            await reconciler.reconcile(KEY)
            clock[0] += reconciler_module.STALE_JOB_MAX_WAIT_SECONDS - 1
            await reconciler.reconcile(KEY)
            assert kube.writes == []  # still within the bound: waiting
            clock[0] += 2
            await reconciler.reconcile(KEY)
        finally:
            await reconciler.stop()

    asyncio.run(passes())
    assert [(kind, value.get("state"), value.get("reason")) for kind, value in kube.writes] == [
        ("patch", "FAILURE", "JobNameTaken")]
    assert "was not removed within 120 s" in kube.writes[0][1]["error"]["message"]
