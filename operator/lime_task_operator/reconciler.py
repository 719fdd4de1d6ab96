"""Drives every LimeTask to its terminal state; the only place that sequences I/O.

Level-based: each pass reads the latest known task, Job and pods (kopf's indexes, fed
by the watches), asks the pure modules what should change (jobs.py, transitions.py,
admission.py) and applies it through kube.py. Nothing depends on having seen a particular
event, so an operator killed at any moment and started again picks every task up
from the initial listing and finishes it:

- the Job name is deterministic and creation adopts an existing Job (409), so a task
  never gets a second Job;
- status patches carry the resourceVersion the decision was based on, so a stale
  decision can never overwrite a newer (e.g. terminal) status;
- events are retried until their confirmation is recorded in the status, and a
  finished task is only deleted after that.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Optional

from lime_task import events as task_events
from lime_task.constants import TERMINAL_STATES

from . import admission, jobs, kube as kube_module, logtail, metrics, transitions, views
from .cache import Cache
from .kube import Kube, KubeError, QuotaExceeded
from .settings import Settings
from .workqueue import Retry, WorkQueue

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)

# Concurrent reconcile passes (distinct tasks; one task is never decided twice at once).
# Passes mostly wait on the API server, so this bounds how many of its calls are in
# flight. With 8, a 200-task burst on 2 cores queued new tasks ~8s behind earlier ones'
# pod events (each call took ~0.4s on the busy machine): create -> Job p50 9.6s. With 32
# the queue stays short: p50 1.5s, the same total run time (the pods are the limit).
RECONCILE_WORKERS = 32
EVENT_WORKERS = 2
# Safety net: non-terminal tasks are looked at again this often even without events.
RESYNC_SECONDS = 30.0
# AMQP 0-9-1 carries a routing key as a "shortstr": at most 255 bytes.
AMQP_SHORTSTR_BYTES = 255
# A Job of an earlier task with the same name is still being garbage-collected: looked
# at again this often, and for this long at most before the task fails JobNameTaken (the
# garbage collector removes the dependents of a deleted owner within seconds).
STALE_JOB_RETRY_SECONDS = 2.0
STALE_JOB_MAX_WAIT_SECONDS = 120.0


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Reconciler:
    def __init__(
        self,
        config: Settings,
        kube: Kube,
        cache: Cache,
        publisher: Any = None,
        publish_error: type[Exception] = Exception,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.kube = kube
        self.cache = cache
        self.publisher = publisher
        self._publish_error = publish_error
        self._clock = clock
        self._monotonic = monotonic
        # Tasks whose Job name a Job of another (earlier) task holds: since when (the
        # monotonic clock), to bound the wait for its removal.
        self._foreign_since: dict[Key, float] = {}
        # Broker calls block for up to a connect timeout during an outage: they get
        # their own thread, so they never hold up API calls or the event loop.
        self._broker = ThreadPoolExecutor(1, thread_name_prefix="lt-broker")
        self.main = WorkQueue("reconcile", self.reconcile, RECONCILE_WORKERS)
        self.events = WorkQueue("publish", self.publish, EVENT_WORKERS)
        # Tasks whose Job this process created (or is creating): they hold a slot even
        # before the Job's watch event arrives.
        self._launched: set[Key] = set()
        self._order: dict[Key, tuple] = {}
        self._resync: Optional[asyncio.Task] = None
        self.running = False

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start deciding: called once the caches hold a complete picture (every initial
        list applied), so that admission counts every running task. Nudges that arrive
        before that wait in the queue."""
        if self.running:
            return
        self.running = True
        self.main.start()
        self.kick_queue()
        self.events.start()
        self._resync = asyncio.create_task(self._resync_forever(), name="lt-resync")

    async def stop(self) -> None:
        if self._resync:
            self._resync.cancel()
        await self.main.stop()
        await self.events.stop()
        self._broker.shutdown(wait=False, cancel_futures=True)
        if self.publisher is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.publisher.close)

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            for key in self.cache.task_keys():
                task = self._task(key)
                if task is not None and not transitions.is_terminal(task):
                    self.main.nudge(key)

    # ------------------------------------------------------------ inputs (from handlers)

    def on_task_event(self, event_type: Optional[str], key: Key, body: Mapping[str, Any],
                      nudge: bool = True) -> None:
        """A task was added, changed or deleted: bookkeeping (creation order, metrics)
        and a reconcile pass (``nudge`` False: our own write of an unfinished state,
        see _write_through)."""
        if event_type == "DELETED":
            self._forget(key)
            self.kick_queue()
            return
        terminal = (body.get("status") or {}).get("state") in TERMINAL_STATES
        if terminal:
            self._order.pop(key, None)
        elif key not in self._order:
            self._order[key] = self._creation_order(body)
            if not (body.get("status") or {}).get("state"):
                metrics.TASKS_SEEN.inc()
        if nudge:
            self.main.nudge(key)
        if terminal:
            self.kick_queue()

    def on_child_event(self, key: Key) -> None:
        if self.cache.task(key) is not None:
            self.main.nudge(key)

    def _creation_order(self, body: Mapping[str, Any]) -> tuple:
        """Sort key for "creation order" (creationTimestamp has only 1-second steps).

        A task seen before anyone wrote its status still has its creation
        resourceVersion, which orders creations exactly. Tasks that already had a
        status when this process first saw them (after a restart) fall back to their
        name within the same second.
        """
        metadata = body.get("metadata") or {}
        created = metadata.get("creationTimestamp") or ""
        version = str(metadata.get("resourceVersion") or "")
        if not body.get("status") and version.isdigit():
            return (created, 0, int(version), "")
        return (created, 1, 0, metadata.get("name") or "")

    def _forget(self, key: Key) -> None:
        self._launched.discard(key)
        self._foreign_since.pop(key, None)
        self._order.pop(key, None)
        self.main.forget(key)
        self.events.forget(key)

    # ------------------------------------------------------------ index access

    def _task(self, key: Key) -> Optional[views.TaskView]:
        return self.cache.task(key)

    def _job(self, key: Key) -> Optional[views.JobView]:
        return self.cache.job(key)

    def _task_pods(self, key: Key) -> list[views.PodView]:
        return self.cache.pods(key)

    # ------------------------------------------------------------ admission

    def _entries(self) -> list[admission.Entry]:
        entries = []
        for key in self.cache.task_keys():
            task = self._task(key)
            if task is None or transitions.is_terminal(task) or task["metadata"].get("deletionTimestamp"):
                continue
            has_job = key in self._launched or self.cache.has_job(key) or bool(task["status"].get("jobName"))
            entries.append(
                admission.Entry(
                    key=key,
                    app=(task.get("spec") or {}).get("app") or "",
                    order=self._order.get(key) or (task["metadata"].get("creationTimestamp") or "", 2, 0, key[1]),
                    running=has_job,
                    waiting=not has_job,
                )
            )
        return entries

    def _admitted(self) -> list[Key]:
        return admission.admit(self._entries(), self.config.max_running, self.config.max_running_per_app)

    def _reserve(self, key: Key) -> bool:
        """Take a running slot for `key` if admission allows it now.

        No await between the check and the reservation: on one event loop that makes
        the pair atomic, so two workers can never both take the last slot.
        """
        if self.config.limited and key not in self._admitted():
            return False
        self._launched.add(key)
        return True

    def kick_queue(self) -> None:
        """A slot may have freed up: look at the tasks that may start now."""
        if self.config.limited and self.running:
            for key in self._admitted():
                self.main.nudge(key)

    # ------------------------------------------------------------ the reconcile pass

    async def reconcile(self, key: Key) -> None:
        task = self._task(key)
        if task is None:
            return
        if task["metadata"].get("deletionTimestamp"):
            return  # being deleted: the garbage collector cancels the Job
        if transitions.is_terminal(task):
            self._launched.discard(key)
            await self._stop_job_of_failed_task(key, task)
            await self._finished(key, task)
            return

        namespace, name = key
        uid = task["metadata"]["uid"]
        now = self._clock()
        job = self._job(key)
        if job is None and (task["status"].get("jobName") or key in self._launched):
            # The index may lag behind a Job we created a moment ago: ask the API.
            job = await self.kube.get_job(namespace, task["status"].get("jobName") or jobs.job_name(name))
            if job is None:
                await self._apply(key, task, transitions.cancelled(task, jobs.job_name(name), now))
                return
        if job is None:
            await self._start(key, task, now)
            return
        if jobs.owner_uid(job) != uid:
            await self._foreign_job(key, task, job, now)
            return
        self._foreign_since.pop(key, None)

        pods = self._task_pods(key)
        if transitions.job_finished(job):
            # The verdict needs every pod's final report; the pod watch may lag the
            # Job's, so read them fresh.
            pods = await self.kube.list_task_pods(namespace, name)
        pods, log_tail = await self._failed_attempt_log(namespace, task, job, pods)
        transition = transitions.observe(task, job, pods, now, self.config.container_start_timeout_seconds, log_tail)
        if await self._apply(key, task, transition) and transitions.job_to_stop({"status": transition.status}, job):
            # Now, while the Job is at hand: the cache drops a finished task's children.
            await self._delete_job(key, job)
        recheck = transitions.seconds_until_start_timeout(pods, now, self.config.container_start_timeout_seconds)
        if recheck is not None:  # a stuck container fails on time, not at the next resync
            self.main.nudge_later(key, recheck + 0.5)

    # ------------------------------------------------------------ failure forensics (#11)

    async def _failed_attempt_log(self, namespace: str, task: dict[str, Any], job: Mapping[str, Any],
                                  pods: list[dict[str, Any]]
                                  ) -> tuple[list[dict[str, Any]], Optional[tuple[str, str]]]:
        """The pods to decide on and (pod, log tail) of the failed attempt
        transitions.pod_needing_log names, read before the pod can go; a log that cannot be
        read is recorded as such, not retried. When a log is read, the pods are listed
        afresh: the cache's pod views may lack the runner's report, and the attempt is
        recorded from it, like the final verdict."""
        if transitions.pod_needing_log(task, job, pods) is None:
            return pods, None
        pods = await self.kube.list_task_pods(namespace, task["metadata"]["name"])
        pod = transitions.pod_needing_log(task, job, pods)
        if pod is None:
            return pods, None
        try:
            text = await kube_module.read_pod_log_tail(self.kube, namespace, pod, jobs.CONTAINER_NAME,
                                                       logtail.READ_LINES, logtail.READ_BYTES)
        except kube_module.KubeError as error:
            log.info("task %s/%s: no log of pod %s: %s", namespace, task["metadata"]["name"], pod, error)
            recorded = (task.get("status") or {}).get("lastAttempt") or {}
            if recorded.get("pod") == pod and recorded.get("logTail"):
                return pods, None  # keep the tail read earlier (e.g. while it was being evicted)
            if error.status == 400:
                # "container ... is waiting to start": the pod's status lags its container
                # (kubelet reports the end a moment later). Read again on the next pass.
                return pods, None
            text = f"(the log of pod {pod} could not be read: {error})\n"
        return pods, (pod, text)

    async def _stop_job_of_failed_task(self, key: Key, task: dict[str, Any]) -> None:
        """Delete the Job of a task that failed while its Job still tries (transitions.job_to_stop):
        the fallback for an operator that stopped between the FAILURE write and the
        deletion. The cache drops a finished task's children, so the Job is read."""
        if not transitions.job_to_stop(task, {}):
            return
        job = self._job(key) or await self.kube.get_job(key[0], jobs.job_name(key[1]))
        if transitions.job_to_stop(task, job) and jobs.owner_uid(job) == task["metadata"].get("uid"):
            await self._delete_job(key, job)

    async def _delete_job(self, key: Key, job: Mapping[str, Any]) -> None:
        metadata = job["metadata"]
        if await kube_module.delete_job(self.kube, key[0], metadata["name"], metadata["uid"]):
            log.info("task %s/%s: deleted Job %s, which still tried to start the failed task", *key, metadata["name"])

    async def _start(self, key: Key, task: dict[str, Any], now: datetime) -> None:
        namespace, name = key
        if task.get("invalid"):
            await self._apply(key, task, transitions.invalid(task, task["invalid"], now))
            return
        if task.get("argumentsOmitted"):
            # Large arguments are not kept in memory (views.py): read the task now.
            fresh = await self.kube.get_task(namespace, name)
            if fresh is None:
                return
            full = views.task_view(fresh, self.config.events_enabled)
            for field in ("args", "kwargs", "floatPaths"):
                if field in (fresh.get("spec") or {}):
                    full["spec"][field] = fresh["spec"][field]
            full.pop("argumentsOmitted", None)
            task = full
        try:
            body = jobs.build_job(task, self.config)
        except jobs.InvalidTask as error:
            await self._apply(key, task, transitions.invalid(task, str(error), now))
            return
        if not self._reserve(key):
            message = admission.queue_message(self.config.max_running, self.config.max_running_per_app,
                                          task["spec"].get("app", ""))
            await self._apply(key, task, transitions.queued(task, message, now))
            return
        try:
            job, created = await self.kube.create_job(namespace, body)
        except QuotaExceeded as error:
            # Retrying can succeed once the namespace's usage drops: wait, visibly.
            self._launched.discard(key)
            await self._apply(key, task, transitions.quota_exceeded(task, error.message, now))
            raise Retry(f"ResourceQuota: {error.message}") from error
        except KubeError as error:
            self._launched.discard(key)
            if error.temporary:
                raise
            # The API server refused the Job we derived from this task (400/422, or a
            # 403 that is not a quota): the same request can never succeed.
            await self._apply(key, task, transitions.job_rejected(task, error.message, now))
            return
        except Exception:
            self._launched.discard(key)
            raise
        if jobs.owner_uid(job) != task["metadata"]["uid"]:
            self._launched.discard(key)
            await self._foreign_job(key, task, job, now)
            return
        self._foreign_since.pop(key, None)
        # The normal path logs one INFO line per task, at its end (_apply): a line per step
        # cost as much CPU as a reconcile pass in a burst (issue #16).
        log.log(logging.DEBUG if created else logging.INFO, "%s Job %s/%s for task %s",
                "created" if created else "adopted existing", namespace, job["metadata"]["name"],
                task["spec"].get("task"))
        born = transitions.parse_time(task["metadata"].get("creationTimestamp"))
        if created and born:
            metrics.QUEUE_WAIT.observe(max(0.0, (now - born).total_seconds()))
        await self._apply(key, task, transitions.pending(task, job["metadata"]["name"], now))

    async def _foreign_job(self, key: Key, task: dict[str, Any], job: Mapping[str, Any], now: datetime) -> None:
        """The Job at this task's Job name is not this task's. Wait while the garbage
        collector may still remove it (at most STALE_JOB_MAX_WAIT_SECONDS from when this
        operator first saw it); end the task FAILURE/JobNameTaken when it will stay."""
        namespace, name = key
        owner = jobs.owner_name(job)
        holder = self._task((namespace, owner)) if owner else None
        owner_exists = holder is not None and holder["metadata"].get("uid") == jobs.owner_uid(job)
        why = jobs.foreign_job(job, owner_exists)
        if why is None:
            first = self._foreign_since.setdefault(key, self._monotonic())
            waited = self._monotonic() - first
            if waited < STALE_JOB_MAX_WAIT_SECONDS:
                log.info("Job %s/%s belongs to an earlier task %s; waiting for its removal",
                         namespace, job["metadata"]["name"], name)
                self.main.nudge_later(key, STALE_JOB_RETRY_SECONDS)
                return
            why = (f"Job {job['metadata']['name']} of an earlier task {owner or name} was not removed "
                   f"within {STALE_JOB_MAX_WAIT_SECONDS:.0f} s; delete it, then send the task again")
        self._foreign_since.pop(key, None)
        await self._apply(key, task, transitions.job_name_taken(task, why, now))

    async def _apply(self, key: Key, task: dict[str, Any], transition: Optional[transitions.Transition]) -> bool:
        if transition is None:
            return False
        fields = transition.status
        if transition.terminal and self.publisher is None:
            # No broker: say so in the same write as the terminal state.
            finished = {**task, "status": {**(task.get("status") or {}), **fields}}
            fields = {**fields, **(transitions.events_disabled(finished, self._clock()) or {})}
        elif transition.terminal and self.publisher is not None:
            # Publish first and record the terminal state and the broker's confirmation
            # in one write (issue #16: one write fewer per task). If the broker cannot
            # take it now, the state is written alone and the publish queue retries; if
            # the write fails after a publish, the next pass publishes again with the
            # same message id, which consumers drop (at-least-once, as documented).
            finished = {**task, "status": {**(task.get("status") or {}), **fields}}
            confirmed = await self._publish_now(key, finished)
            if confirmed is not None:
                fields = {**fields, **confirmed}
        written = await self._patch(key, task, fields)
        if written:
            # PENDING/Pending and STARTED/Running are every task's steps: DEBUG (see _start).
            routine = (transition.state, transition.reason) in (("PENDING", transitions.PENDING),
                                                                ("STARTED", transitions.RUNNING))
            log.log(logging.DEBUG if routine else logging.INFO, "task %s/%s: %s (%s) %s", key[0], key[1],
                    transition.state, transition.reason, transition.message)
            if transition.terminal:
                self._count_finished(transition.state, transition.reason, fields)
            if self.config.records_event(transition.state):
                # Fire and forget: an Event is a courtesy for `kubectl describe`.
                self.kube.in_background(self.kube.record_event(
                    task, transition.event_type, transition.reason, f"{transition.state}: {transition.message}"))
        return written

    def _count_finished(self, state: str, reason: str, fields: Mapping[str, Any]) -> None:
        metrics.TASKS_FINISHED.labels(state=state, reason=reason).inc()
        started, finished = transitions.parse_time(fields.get("startedAt")), transitions.parse_time(fields.get("finishedAt"))
        if started and finished:
            metrics.TASK_DURATION.observe(max(0.0, (finished - started).total_seconds()))
        if finished and (fields.get("event") or {}).get("confirmedAt"):
            metrics.EVENT_LAG.observe(max(0.0, (self._clock() - finished).total_seconds()))

    async def _publish_now(self, key: Key, task: dict[str, Any]) -> Optional[dict[str, Any]]:
        """Publish a finishing task's event; the status fields recording the broker's
        confirmation, or None when it is not out (the publish queue then takes over)."""
        try:
            routing_key, message_id, body = self._event_of(task)
        except (KeyError, ValueError):
            return None  # publish() records InvalidEvent after the state is written
        timestamp = transitions.parse_time(task["status"].get("finishedAt")) or self._clock()
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._broker, self.publisher.publish, routing_key, body, message_id, timestamp)
        except self._publish_error as error:
            log.info("task %s/%s: event not published yet (%s); the state is written first", *key,
                     getattr(error, "reason", error))
            return None
        return transitions.event_published(task, routing_key, message_id, self._clock())

    @staticmethod
    def _event_of(task: Mapping[str, Any]) -> tuple[str, str, Any]:
        """(routing key, message id, body) of a finished task's event; ValueError if it
        can never be sent."""
        state = task["status"]["state"]
        routing_key = task_events.routing_key(task["spec"]["task"], state)
        if len(routing_key.encode()) > AMQP_SHORTSTR_BYTES:
            raise ValueError(f"routing key {routing_key[:80]}… is {len(routing_key.encode())} bytes; "
                             f"AMQP allows at most {AMQP_SHORTSTR_BYTES}, so the event cannot be sent")
        return (routing_key, task_events.event_message_id(task["metadata"]["uid"], state),
                task_events.build_event_body(task))

    async def _patch(self, key: Key, task: dict[str, Any], fields: Mapping[str, Any]) -> bool:
        """Write status fields decided on `task`'s resourceVersion; False if the task
        changed meanwhile (its newer version brings a new decision) or is gone.

        Every write is first fitted to the CRD's limits (transitions.bounded), so the API
        server cannot refuse it for size. Should it refuse it all the same (422: a
        schema rule we did not foresee), the task ends as FAILURE/StatusRejected with the
        API server's message instead of being retried for ever.
        """
        if views.is_compact(task):
            raise RuntimeError(f"bug: status write decided on the compact view of {key}")
        fields = transitions.bounded(fields)
        try:
            written = await self.kube.patch_task_status(key[0], key[1], fields,
                                                        task["metadata"]["resourceVersion"], bool(task.get("status")))
        except KubeError as error:
            if error.temporary:
                raise
            fallback = transitions.status_rejected(task, error.message, self._clock())
            if fallback is None or fields.get("reason") == transitions.STATUS_REJECTED:
                raise
            log.error("task %s/%s: the API server refused its status (%s); ending it as %s",
                      key[0], key[1], error.message, transitions.STATUS_REJECTED)
            return await self._patch(key, task, fallback.status)
        if written is None:
            log.debug("task %s/%s changed meanwhile; deciding again on its next version", *key)
            return False
        self._write_through(key, written)
        return True

    def _write_through(self, key: Key, body: Mapping[str, Any]) -> None:
        """Put the task as our own write left it into the cache at once.

        Without this, a pod or Job event arriving before the watch delivers our write
        would be decided on the older version, and its status write would fail with 409
        (0.7 refused writes per task in a 200-task burst, issue #16).
        """
        version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        cached = self.cache.task(key)
        if not version.isdigit() or cached is None:
            return
        known = str(cached["metadata"].get("resourceVersion") or "")
        if known.isdigit() and int(known) >= int(version):
            return
        view = views.task_view(body, self.config.events_enabled)
        if self.cache.put_task(key, view):
            # What the watch event of this write would do; that event, when it comes,
            # finds the same view and is dropped (handlers.Wiring). Except the pass on the
            # new version when the task is still unfinished: the pass that wrote it
            # decided on everything known (the written status is what deciding again
            # would give) and any later change arrives as its own event. A finished task
            # does get that pass (the TTL, the event, a freed admission slot). Two passes
            # fewer per task (issue #16).
            self.on_task_event("MODIFIED", key, view, nudge=transitions.is_terminal(view))

    # ------------------------------------------------------------ after the end

    async def _finished(self, key: Key, task: dict[str, Any]) -> None:
        now = self._clock()
        if not transitions.event_confirmed(task) and not transitions.event_abandoned(task):
            if self.publisher is not None:
                if not self.events.pending_retry(key):  # else its backoff timer is set
                    self.events.nudge(key)
                return  # the TTL waits for the event; its status patch brings us back
            fields = transitions.events_disabled(task, now)
            if fields is not None:
                await self._patch(key, task, fields)
                return  # the patch's watch event brings us back with the new version
        ttl = self.config.default_ttl_seconds
        if transitions.may_delete(task, ttl, self.config.events_enabled, now):
            deleted = await self.kube.delete_task(key[0], key[1], task["metadata"]["uid"])
            if deleted:
                log.info("task %s/%s deleted: its TTL after finishing has passed", *key)
            return
        deadline = transitions.expiry(task, ttl)
        if deadline is not None:
            self.main.nudge_later(key, (deadline - now).total_seconds() + 0.5)

    async def publish(self, key: Key) -> None:
        """Publish a finished task's event, then record the broker's confirmation.

        A broker that refuses or cannot be reached raises Retry after recording why in
        the EventPublished condition: the publish queue's backoff is the only one. An
        event that can never be published (its routing key is over AMQP's 255 bytes, a
        task name the CRD of an earlier version let through) is recorded as
        EventPublished=False/InvalidEvent and not retried.
        """
        task = self._task(key)
        if task is None or not transitions.is_terminal(task) or transitions.event_confirmed(task):
            return
        if self.publisher is None or views.is_compact(task):
            return
        now = self._clock()
        try:
            routing_key, message_id, body = self._event_of(task)
        except (KeyError, ValueError) as error:
            fields = transitions.event_failed(task, transitions.INVALID_EVENT, str(error), now)
            if fields:
                await self._patch(key, task, fields)
            return
        timestamp = transitions.parse_time(task["status"].get("finishedAt")) or now
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._broker, self.publisher.publish, routing_key, body, message_id, timestamp)
        except self._publish_error as error:
            attempt, delay = self.events.attempt(key), self.events.backoff(key)
            reason = getattr(error, "reason", "PublishFailed")
            message = getattr(error, "message", str(error))
            fields = transitions.event_failed(task, reason, f"{message} (attempt {attempt}, next in {delay:.0f}s)", now)
            if fields:
                await self._patch(key, task, fields)
            raise Retry(f"event not published: {reason}") from error
        if not await self._patch(key, task, transitions.event_published(task, routing_key, message_id, self._clock())):
            # The task moved on meanwhile; publish again on the next version. A repeat
            # carries the same message id, which consumers drop.
            self.events.nudge_later(key, 1.0)
            return
        log.info("task %s/%s: event %s confirmed", key[0], key[1], routing_key)
        finished = transitions.parse_time(task["status"].get("finishedAt"))
        if finished:
            metrics.EVENT_LAG.observe(max(0.0, (self._clock() - finished).total_seconds()))
