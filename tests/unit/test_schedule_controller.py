"""schedule_controller's passes against a fake API server and a fake clock: a run is
created once (409 = adopted), its status written once (no write when nothing changed),
a refused task turns Ready False, Replace deletes before it creates, history prunes."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from lime_task.constants import LABEL_SCHEDULE
from lime_task.schedules import task_for_run
from lime_task_operator import schedule
from lime_task_operator.kube import Invalid
from lime_task_operator.schedule_clock import ScheduleClock
from lime_task_operator.schedule_controller import ScheduleController

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=timezone.utc)
KEY = ("ns", "every")


class FakeKube:
    """The calls the controller makes, recorded; tasks kept by name."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict] = {}
        self.calls: list[tuple] = []
        self.refuse_create: str | None = None
        self._instance = "test"

    async def _request(self, method, path, body=None, query=None, content_type="", ok_missing=False,
                 ok_conflict=False, parse=True):
        self.calls.append((method, path))
        if method == "POST" and path.endswith("/limetasks"):
            if self.refuse_create:
                raise Invalid(422, self.refuse_create)
            name = body["metadata"]["name"]
            if name in self.tasks:
                return {"_conflict": True}
            stored = copy.deepcopy(body)
            stored["metadata"].update(uid=f"uid-{name}", creationTimestamp="2026-05-04T12:00:00Z")
            self.tasks[name] = stored
            return copy.deepcopy(stored)
        if method == "PATCH":
            self.status_patch = body
            return {}
        if method == "POST" and path.endswith("/events"):
            self.events = getattr(self, "events", []) + [body["reason"]]
            return {}
        raise AssertionError(f"unexpected {method} {path}")

    async def get_task(self, namespace, name):
        return copy.deepcopy(self.tasks.get(name))

    def in_background(self, call):
        """Kube.in_background without its bounds: the call runs as soon as the test awaits."""
        self.background = getattr(self, "background", []) + [asyncio.get_running_loop().create_task(call)]

    async def delete_task(self, namespace, name, uid):
        self.calls.append(("DELETE", name))
        return self.tasks.pop(name, None) is not None


def schedule_body(**spec):
    return {"metadata": {"name": "every", "namespace": "ns", "uid": "s-uid", "resourceVersion": "7",
                         "generation": 1, "creationTimestamp": "2026-05-04T11:00:00Z"},
            "spec": {"schedule": "*/5 * * * *", "taskTemplate": {"task": "m.f", "app": "a", "args": [], "kwargs": {}},
                     **spec},
            "status": {"lastScheduleTime": "2026-05-04T11:55:00Z"}}


def controller(kube, now):
    clock = ScheduleClock(0.0, 1.0, lambda: now.timestamp())
    return ScheduleController(SimpleNamespace(events_enabled=False), ["ns"], kube, clock)


def run(ctl, body, tasks=()):
    async def go():
        ctl._schedules[KEY] = body
        for owner_uid, task in tasks:
            ctl._tasks.setdefault(KEY, {})[task.name] = (owner_uid, task)
        await ctl.reconcile(KEY)
        await asyncio.sleep(0)  # let fire-and-forget Event posts run
        timer = ctl.queue._timers.get(KEY)
        ctl.timer_after = timer.when() - asyncio.get_running_loop().time() if timer else None
        ctl.queue.forget(KEY)
    asyncio.run(go())


def test_a_due_run_is_created_owned_and_its_status_written():
    kube = FakeKube()
    ctl = controller(kube, T0 + timedelta(seconds=3))
    run(ctl, schedule_body())
    name = schedule.task_name("every", T0)
    assert list(kube.tasks) == [name]
    task = kube.tasks[name]
    assert task["metadata"]["labels"][LABEL_SCHEDULE] == "every"
    assert task["metadata"]["ownerReferences"][0]["uid"] == "s-uid"
    ops = {op["path"]: op.get("value") for op in kube.status_patch}
    assert ops["/metadata/resourceVersion"] == "7"  # the precondition
    assert ops["/status/lastScheduleTime"] == "2026-05-04T12:00:00Z"
    assert ops["/status/active"] == [name] and ops["/status/activeCount"] == 1
    # The controller knows its task before the watch delivers it (Forbid needs that).
    assert [t.name for t in ctl.owned(KEY, "s-uid")] == [name]


def test_an_existing_run_is_adopted_not_created_again():
    kube = FakeKube()
    body = schedule_body()
    name = schedule.task_name("every", T0)
    kube.tasks[name] = task_for_run(body, name, T0)
    kube.tasks[name]["metadata"]["uid"] = "uid-old"
    ctl = controller(kube, T0 + timedelta(seconds=3))
    run(ctl, body)  # the cache has not seen it (a restarted operator): POST -> 409 -> GET
    assert list(kube.tasks) == [name] and kube.tasks[name]["metadata"]["uid"] == "uid-old"
    assert ("POST", "/apis/limetask.dev/v1alpha1/namespaces/ns/limetasks") in kube.calls


def test_nothing_changed_nothing_written():
    kube = FakeKube()
    now = T0 + timedelta(seconds=3)
    first = controller(kube, now)
    run(first, schedule_body())
    body = schedule_body()
    body["status"] = {op["path"].split("/")[-1]: op["value"] for op in kube.status_patch[1:]}
    kube.status_patch = None
    again = controller(kube, now)
    name = schedule.task_name("every", T0)
    owned = schedule.owned_task(kube.tasks[name], False, "limetask.dev/scheduled-at")
    run(again, body, [("s-uid", owned)])
    assert kube.status_patch is None


def test_a_task_the_api_server_refuses_turns_ready_false():
    kube = FakeKube()
    kube.refuse_create = "admission webhook denied the request: no tasks on Mondays"
    ctl = controller(kube, T0 + timedelta(seconds=3))
    run(ctl, schedule_body())
    ops = {op["path"]: op.get("value") for op in kube.status_patch}
    [ready] = ops["/status/conditions"]
    assert ready["status"] == "False" and ready["reason"] == "InvalidTemplate"
    assert "no tasks on Mondays" in ready["message"]
    assert "/status/lastScheduleTime" not in ops  # the run is not marked as started
    # ... and tried again at the next due time (12:05), not never.
    assert 290 < ctl.timer_after <= 297.1


def test_replace_deletes_the_unfinished_task_before_creating():
    kube = FakeKube()
    body = schedule_body(concurrencyPolicy="Replace")
    old = schedule.task_name("every", T0 - timedelta(minutes=5))
    kube.tasks[old] = task_for_run(body, old, T0 - timedelta(minutes=5))
    owned = schedule.OwnedTask(old, "uid-x", "STARTED", T0 - timedelta(minutes=5), T0 - timedelta(minutes=5))
    ctl = controller(kube, T0 + timedelta(seconds=3))
    run(ctl, body, [("s-uid", owned)])
    deletes = [i for i, call in enumerate(kube.calls) if call[0] == "DELETE"]
    posts = [i for i, call in enumerate(kube.calls) if call[0] == "POST" and call[1].endswith("/limetasks")]
    assert deletes and posts and deletes[0] < posts[0]
    assert list(kube.tasks) == [schedule.task_name("every", T0)]


def test_tasks_of_an_earlier_schedule_with_the_same_name_are_not_counted():
    kube = FakeKube()
    stale = schedule.OwnedTask("every-1", "uid-1", "STARTED", T0, T0)
    ctl = controller(kube, T0 + timedelta(seconds=3))
    run(ctl, schedule_body(concurrencyPolicy="Forbid"), [("another-uid", stale)])
    assert schedule.task_name("every", T0) in kube.tasks  # Forbid did not see the stale task


def test_task_deliveries_follow_their_schedule_and_nudge_it():
    kube = FakeKube()
    ctl = controller(kube, T0)
    body = schedule_body()
    task = task_for_run(body, "every-1", T0)
    task["metadata"].update(uid="t-uid", creationTimestamp="2026-05-04T12:00:00Z")
    task["status"] = {"state": "SUCCESS", "finishedAt": "2026-05-04T12:00:05Z",
                      "conditions": [{"type": "EventPublished", "status": "False", "reason": "EventsDisabled"}]}

    async def go():
        ctl._schedules[KEY] = body
        owner, view = ctl._reduce_task(task)
        assert owner == KEY and view[0] == "s-uid" and view[1].finished_ok and view[1].settled
        ctl._on_task("ADDED", ("ns", "every-1"), owner, view)
        assert [t.name for t in ctl.owned(KEY, "s-uid")] == ["every-1"]
        assert ctl.queue._queued == {KEY}  # nudged
        ctl._on_task("DELETED", ("ns", "every-1"), None, None)
        assert ctl.owned(KEY, "s-uid") == []
        assert ctl._reduce_task({"metadata": {"name": "x", "namespace": "ns", "labels": {}}}) is None
    asyncio.run(go())
