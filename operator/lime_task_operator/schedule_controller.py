"""Runs LimeTaskSchedules: starts one LimeTask per due time; the I/O around schedule.py.

Two informers per namespace (informer.py): the LimeTaskSchedules, and the LimeTasks
that carry the ``limetask.dev/schedule`` label (reduced to schedule.OwnedTask). A keyed
work queue (workqueue.py, its one backoff) runs a pass per schedule when the schedule
or one of its tasks changes, and again at its next due time. A pass asks schedule.plan
what to do and does it: delete the unfinished tasks (Replace), create the run's task,
delete finished tasks beyond the history limits, write the status, post Events.

Restart-safe as the task reconciler is: a run's task name is deterministic
(schedule.task_name), so creating it again is a 409 that is adopted, never a second run;
status writes carry the resourceVersion they were decided on. Passes start only once
every informer here has applied its first list, so a restarted operator knows every
unfinished task before it applies Forbid.

Not part of the operator's readiness (handlers.Wiring): the task machinery must serve
even where the LimeTaskSchedule CRD is not installed yet (`helm upgrade` does not install
new CRDs); the schedule informer then retries with its backoff and passes start once it
is.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Optional

from lime_task.constants import (ANNOTATION_SCHEDULED_AT, GROUP, LABEL_SCHEDULE, PLURAL, SCHEDULE_KIND,
                                 SCHEDULE_PLURAL, VERSION)
from lime_task.schedules import task_for_run, template_problem

from . import kube as kube_module, schedule, views
from .informer import Informer, Resource
from .kube import Kube, KubeError
from .schedule_clock import ScheduleClock
from .workqueue import WorkQueue

log = logging.getLogger(__name__)

SCHEDULES = Resource(GROUP, VERSION, SCHEDULE_PLURAL)
TASKS = Resource(GROUP, VERSION, PLURAL)
# Concurrent passes (distinct schedules). A pass makes a few API calls; schedules are few.
WORKERS = 4
# Wake a little after a due time, never a little before it (timers are not exact).
WAKE_MARGIN_SECONDS = 0.05

Key = tuple[str, str]


def _schedule_view(body: dict[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata") or {}
    keep = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp")
    return {"metadata": {k: metadata[k] for k in keep if metadata.get(k) is not None},
            "spec": body.get("spec") or {}, "status": body.get("status") or {}}


def _owner_uid(body: dict[str, Any]) -> str:
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == SCHEDULE_KIND and ref.get("controller"):
            return str(ref.get("uid") or "")
    return ""


def status_changes(current: dict[str, Any], wanted: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(fields to set, fields to remove) to turn `current` into `wanted` (None = absent);
    both empty when nothing changes, so a pass that decides the same writes nothing
    (its own write's watch event would otherwise start the next pass, for ever)."""
    to_set = {k: v for k, v in wanted.items() if v is not None and current.get(k) != v}
    to_remove = [k for k, v in wanted.items() if v is None and k in current]
    return to_set, to_remove


class ScheduleController:
    """The LimeTaskSchedules of one operator process (namespaces, or [] = cluster-wide)."""

    def __init__(self, config: Any, namespaces: list[str], kube: Kube, clock: Optional[ScheduleClock] = None) -> None:
        self.config = config
        self.kube = kube
        self.clock = clock or ScheduleClock()
        self._schedules: dict[Key, dict[str, Any]] = {}
        # schedule key -> task name -> (owner uid, OwnedTask)
        self._tasks: dict[Key, dict[str, tuple[str, schedule.OwnedTask]]] = {}
        self._task_schedule: dict[Key, Key] = {}
        self.informers: list[Informer] = []
        for namespace in list(namespaces) or [None]:
            self.informers.append(Informer(kube, SCHEDULES, namespace, "", self._reduce_schedule,
                                           self._on_schedule, self._on_synced))
            self.informers.append(Informer(kube, TASKS, namespace, LABEL_SCHEDULE, self._reduce_task,
                                           self._on_task, self._on_synced))
        self.queue = WorkQueue("schedule", self.reconcile, WORKERS)
        self.running = False

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for informer in self.informers:
            informer.start()

    async def stop(self) -> None:
        for informer in self.informers:
            informer.stop()
        if self.running:
            await self.queue.stop()

    def _on_synced(self) -> None:
        if not self.running and all(informer.synced for informer in self.informers):
            self.running = True
            self.queue.start()
            log.info("schedules: %d LimeTaskSchedules, %d of their tasks known; scheduling%s", len(self._schedules),
                     len(self._task_schedule),
                     f" (TEST-ONLY clock at {self.clock.speed:g}x)" if self.clock.scaled else "")
            for key in self._schedules:
                self.queue.nudge(key)

    # ------------------------------------------------------------ reductions and deliveries

    @staticmethod
    def _reduce_schedule(body: dict[str, Any]) -> Any:
        metadata = body.get("metadata") or {}
        return (metadata.get("namespace") or "", metadata.get("name") or ""), _schedule_view(body)

    def _reduce_task(self, body: dict[str, Any]) -> Any:
        metadata = body.get("metadata") or {}
        name = (metadata.get("labels") or {}).get(LABEL_SCHEDULE)
        if not name:
            return None
        settled = views.event_settled(body.get("status") or {}, self.config.events_enabled)
        owned = schedule.owned_task(body, settled, ANNOTATION_SCHEDULED_AT)
        return (metadata.get("namespace") or "", name), (_owner_uid(body), owned)

    def _on_schedule(self, kind: str, key: Key, owner: Any, view: Any) -> None:
        if kind == "DELETED":
            self._schedules.pop(key, None)
            self.queue.forget(key)
            return
        self._schedules[key] = view
        self.queue.nudge(key)

    def _on_task(self, kind: str, key: Key, owner: Any, view: Any) -> None:
        if kind == "DELETED":
            owner = self._task_schedule.pop(key, None)
            if owner is not None:
                self._tasks.get(owner, {}).pop(key[1], None)
        else:
            previous = self._task_schedule.get(key)
            if previous is not None and previous != owner:
                self._tasks.get(previous, {}).pop(key[1], None)
            self._task_schedule[key] = owner
            self._tasks.setdefault(owner, {})[key[1]] = view
        if owner is not None and owner in self._schedules:
            self.queue.nudge(owner)

    # ------------------------------------------------------------ the pass

    def owned(self, key: Key, uid: str) -> list[schedule.OwnedTask]:
        """The schedule's tasks: labelled with its name and owned by this very schedule
        (a task of an earlier schedule of the same name is the garbage collector's)."""
        return [task for owner_uid, task in self._tasks.get(key, {}).values() if owner_uid == uid]

    async def reconcile(self, key: Key) -> None:
        body = self._schedules.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        namespace, name = key
        metadata, spec, status = body["metadata"], body["spec"], body["status"]
        uid = metadata["uid"]
        created = schedule.parse_time(metadata.get("creationTimestamp")) or self.clock.now()
        problem = template_problem(spec.get("taskTemplate"))
        now = self.clock.now()
        tasks = self.owned(key, uid)
        decision = schedule.plan(name, spec, status, created, metadata.get("generation"), tasks, now, problem)

        for task in decision.replace:
            if await self.kube.delete_task(namespace, task.name, task.uid):
                log.info("schedule %s/%s: deleted unfinished task %s (Replace)", namespace, name, task.name)
        if decision.create is not None:
            decision = await self._create_run(key, body, decision, tasks, now, problem)
        for task in decision.prune:
            if await self.kube.delete_task(namespace, task.name, task.uid):
                log.info("schedule %s/%s: deleted %s task %s (history limit)", namespace, name, task.state, task.name)

        to_set, to_remove = status_changes(status, decision.status)
        if to_set or to_remove:
            written = await kube_module.patch_schedule_status(self.kube, namespace, name, to_set,
                                                              to_remove, metadata["resourceVersion"], bool(status))
            if not written:
                log.debug("schedule %s/%s changed meanwhile; deciding again on its next version", namespace, name)
        for event in decision.events:
            self.kube.in_background(kube_module.record_object_event(
                self.kube, body, SCHEDULE_KIND, event.type, event.reason, event.message))
        if decision.requeue_after is not None:
            self.queue.nudge_later(key, self.clock.real_seconds(decision.requeue_after) + WAKE_MARGIN_SECONDS)

    async def _create_run(self, key: Key, body: dict[str, Any], decision: schedule.Plan,
                          tasks: list[schedule.OwnedTask], now: datetime, problem: Optional[str]) -> schedule.Plan:
        namespace, name = key
        task_body = task_for_run(body, decision.create_name, decision.create)
        try:
            task, created = await kube_module.create_task(self.kube, namespace, task_body)
        except KubeError as error:
            if error.temporary:
                raise  # the work queue's backoff; nothing was written
            # The API server refused the run's task (an admission webhook, a schema the
            # template no longer fits): say so in Ready instead of retrying for ever.
            log.warning("schedule %s/%s: the API server refused task %s: %s", namespace, name,
                        decision.create_name, error.message)
            metadata = body["metadata"]
            refused = schedule.plan(name, body["spec"], body["status"],
                                    schedule.parse_time(metadata.get("creationTimestamp")) or now,
                                    metadata.get("generation"), tasks, now,
                                    f"the API server refused the task {decision.create_name}: {error.message}")
            # Try again at the next due time: what refused it (a webhook, a policy) may
            # have changed by then, and a change of the schedule brings a pass anyway.
            refused.requeue_after = decision.requeue_after
            refused.prune = decision.prune
            return refused
        if _owner_uid(task) != body["metadata"]["uid"]:
            # Someone else's task has the run's name: the run cannot have it. Recorded, and
            # lastScheduleTime moves on (else every pass would try again).
            decision.events.append(schedule.Event(
                "Warning", "RunNameTaken", f"task {decision.create_name} exists and is not this schedule's; "
                f"the run due at {schedule.format_time(decision.create)} did not start"))
            return decision
        if created:
            log.info("schedule %s/%s: created task %s for %s", namespace, name, decision.create_name,
                     schedule.format_time(decision.create))
            decision.events.append(schedule.Event(
                "Normal", "SuccessfulCreate",
                f"created task {decision.create_name} for the run due at {schedule.format_time(decision.create)}"))
        # Known now, before its watch event: the next pass must count it (Forbid).
        owned = schedule.owned_task(task, False, ANNOTATION_SCHEDULED_AT)
        self._tasks.setdefault(key, {})[decision.create_name] = (body["metadata"]["uid"], owned)
        self._task_schedule[(namespace, decision.create_name)] = key
        return decision


def start(config: Any, namespaces: list[str], kube: Kube) -> ScheduleController:
    """Create and start the schedules' controller (handlers.startup calls this).

    Reads the TEST-ONLY clock setting (schedule_clock); a bad value stops the operator
    with a message naming the variable (kopf.PermanentError)."""
    import kopf

    from . import schedule_clock

    try:
        clock = schedule_clock.from_environ()
    except ValueError as error:
        raise kopf.PermanentError(str(error)) from None
    if clock.scaled:
        log.warning("%s is set: schedules run %gx faster than real time (a TEST-ONLY setting)",
                    schedule_clock.ENV_TEST_CLOCK, clock.speed)
    controller = ScheduleController(config, namespaces, kube, clock)
    controller.start()
    return controller
