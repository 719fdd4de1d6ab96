"""The transitions of a LimeTask's state: what its status should say, computed from the
task, its Job and its pods.

Pure functions only: the reconciler feeds in what it read from the API and writes back
what comes out. Keeping the decisions here means every state and reason can be unit
tested without a cluster, and the I/O code has no ``if`` about task semantics.

Rules that matter for restart-safety:
- a terminal state (SUCCESS, FAILURE) is never changed: every function returns None
  for a terminal task except the event/TTL helpers, which only add to it;
- STARTED never goes back to PENDING (a retry's new pod is still the same run);
- times come from the objects (container and Job condition times), not from "now",
  wherever possible, so a restarted operator records when things really happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Optional

from lime_task import timestamps, values
from lime_task.constants import TERMINAL_STATES
from lime_task.termination import parse_report

from . import attempts, logtail

# Reasons of the Succeeded condition (docs/architecture.md).
QUEUED = "Queued"
PENDING = "Pending"
RUNNING = "Running"
COMPLETED = "Completed"
TASK_RAISED = "TaskRaised"
COULD_NOT_LOAD = "CouldNotLoad"
INVALID_RESULT = "InvalidResult"
DEADLINE_EXCEEDED = "DeadlineExceeded"
POD_FAILED = "PodFailed"
CANCELLED = "Cancelled"
INVALID_TASK = "InvalidTask"
# What happened to an attempt's pod (attempts.py reads them from the pod).
OOM_KILLED = attempts.OOM_KILLED
EVICTED = attempts.EVICTED
PREEMPTED = attempts.PREEMPTED
NODE_LOST = attempts.NODE_LOST
POD_DELETED = attempts.POD_DELETED
UNSCHEDULABLE = attempts.UNSCHEDULABLE
# Keys of status.lastAttempt; a merge patch must null the ones a new record lacks, or
# the previous attempt's error or log would stay attached to the new one.
_LAST_ATTEMPT_KEYS = ("pod", "reason", "message", "exitCode", "startedAt", "error", "logTail")

SUCCEEDED = "Succeeded"
EVENT_PUBLISHED = "EventPublished"
EVENTS_DISABLED = "EventsDisabled"
PUBLISHED = "Published"


@dataclass(frozen=True)
class Transition:
    """A change of the task's state/reason: the status patch and the Event to record."""

    state: str
    reason: str
    message: str
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def event_type(self) -> str:
        return "Warning" if self.state == "FAILURE" else "Normal"


# ---------------------------------------------------------------- small helpers


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as Kubernetes writes times."""
    return timestamps.format_time(moment)


def parse_time(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    try:
        return timestamps.parse_time(text)
    except ValueError:
        return None


def format_duration(seconds: float) -> str:
    """A short human duration for the printer column: <1s, 12s, 4m05s, 2h03m.

    Whole seconds, because the timestamps it is computed from (Kubernetes' RFC 3339
    times) have one-second precision: "0.0s" for a quick task would claim a precision
    that is not there.
    """
    seconds = max(0.0, seconds)
    whole = int(seconds)
    if whole < 1:
        return "<1s"
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{(whole % 3600) // 60:02d}m"


def state_of(task: Mapping[str, Any]) -> Optional[str]:
    return (task.get("status") or {}).get("state")


def is_terminal(task: Mapping[str, Any]) -> bool:
    return state_of(task) in TERMINAL_STATES


def set_condition(
    conditions: Iterable[Mapping[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: datetime,
    generation: Optional[int] = None,
) -> list[dict[str, Any]]:
    """The condition list with one condition set; lastTransitionTime moves only when
    the condition's status changes (Kubernetes API conventions)."""

    def updated(previous: Optional[Mapping[str, Any]]) -> dict[str, Any]:
        moved = previous is None or previous.get("status") != status or not previous.get("lastTransitionTime")
        condition = {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": format_time(now) if moved else previous["lastTransitionTime"],
        }
        if generation is not None:
            condition["observedGeneration"] = generation
        return condition

    result = [updated(c) if c.get("type") == type_ else dict(c) for c in conditions]
    if not any(c.get("type") == type_ for c in result):
        result.append(updated(None))
    return result


def _transition(
    task: Mapping[str, Any],
    state: str,
    reason: str,
    message: str,
    now: datetime,
    **fields: Any,
) -> Transition:
    current = task.get("status") or {}
    generation = (task.get("metadata") or {}).get("generation")
    condition_status = {"SUCCESS": "True", "FAILURE": "False"}.get(state, "Unknown")
    status: dict[str, Any] = {
        "state": state,
        "reason": reason,
        "conditions": set_condition(
            current.get("conditions") or [], SUCCEEDED, condition_status, reason, message, now, generation
        ),
    }
    if generation is not None:
        status["observedGeneration"] = generation
    # The condition's message, also at the top level for `kubectl get lt -o wide`.
    status["message"] = attempts.cut(message)
    status.update({k: v for k, v in fields.items() if v is not None})
    if isinstance(status.get("lastAttempt"), Mapping):
        status["lastAttempt"] = {key: status["lastAttempt"].get(key) for key in _LAST_ATTEMPT_KEYS}
    return Transition(state=state, reason=reason, message=message, status=status)


# ---------------------------------------------------------------- before the Job


def queued(task: Mapping[str, Any], message: str, now: datetime) -> Optional[Transition]:
    """PENDING/Queued: the task waits for a free slot (no Job yet)."""
    if is_terminal(task):
        return None
    current = task.get("status") or {}
    if current.get("state") == "PENDING" and current.get("reason") == QUEUED:
        return None
    return _transition(task, "PENDING", QUEUED, message, now)


def pending(task: Mapping[str, Any], job_name: str, now: datetime) -> Optional[Transition]:
    """PENDING/Pending: the Job exists, its pod does not run yet."""
    if is_terminal(task):
        return None
    current = task.get("status") or {}
    if current.get("state") == "STARTED":
        return None  # a retry's new pod is still the same run
    if current.get("reason") == PENDING and current.get("jobName") == job_name:
        return None
    return _transition(
        task, "PENDING", PENDING, f"Job {job_name} created, waiting for its pod", now, jobName=job_name
    )


def invalid(task: Mapping[str, Any], message: str, now: datetime) -> Optional[Transition]:
    """FAILURE/InvalidTask: the operator refuses the task; nothing was run."""
    return _operator_failure(task, INVALID_TASK, message, now, attempts=0)


def cancelled(task: Mapping[str, Any], job_name: str, now: datetime) -> Optional[Transition]:
    """FAILURE/Cancelled: the task's Job was deleted before it finished.

    The task still exists (deleting the task itself removes everything), so somebody
    deleted the Job; we cannot know whether the task ran, and re-running it could run it
    twice, so the task fails and says why.
    """
    started = parse_time((task.get("status") or {}).get("startedAt"))
    return _operator_failure(task, CANCELLED, f"Job {job_name} was deleted before the task finished", now,
                             duration=format_duration((now - started).total_seconds()) if started else None)


# ---------------------------------------------------------------- following the Job

# How long a container may wait for a reason in attempts.STUCK_WAITING_REASONS before
# the task fails (the operator's CONTAINER_START_TIMEOUT_SECONDS, settings.py).
DEFAULT_START_TIMEOUT_SECONDS = 300

# A record of a failed attempt in status.lastAttempt (CRD: status.lastAttempt).
LastAttempt = dict[str, Any]

# Re-exported for the reconciler and older callers.
pod_ran = attempts.ran


def parse_termination_message(text: Optional[str]) -> Optional[dict[str, Any]]:
    """The runner's report as a dict (``{"ok": ..., ...}``), or None; see
    lime_task.termination.parse_report, the one parser."""
    report = parse_report(text)
    if report is None:
        return None
    return {"ok": True, "result": report.result} if report.ok else {"ok": False, "error": dict(report.error)}


def _pod_order(pod: Mapping[str, Any]) -> tuple[str, str]:
    metadata = pod.get("metadata") or {}
    return (metadata.get("creationTimestamp") or "", metadata.get("name") or "")


def _pod_name(pod: Mapping[str, Any]) -> str:
    return (pod.get("metadata") or {}).get("name") or ""


def _job_condition(job: Mapping[str, Any], type_: str) -> Optional[Mapping[str, Any]]:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return condition
    return None


def job_finished(job: Mapping[str, Any]) -> bool:
    return bool(_job_condition(job, "Complete") or _job_condition(job, "Failed"))


def _deadline_passed(job: Mapping[str, Any]) -> bool:
    """Whether the Job is failing or failed for its activeDeadlineSeconds (the Job
    controller sets FailureTarget first, deletes the pods, then Failed)."""
    return any(
        (_job_condition(job, type_) or {}).get("reason") == "DeadlineExceeded"
        for type_ in ("FailureTarget", "Failed")
    )


def count_attempts(task: Mapping[str, Any], job: Mapping[str, Any], pods: list[Mapping[str, Any]]) -> int:
    """How many pods ran the task, from what happened rather than what still exists.

    The largest of: what the status already says (it never goes down), the pods seen
    that ran, and the Job's own counters (status.failed + status.succeeded +
    uncountedTerminatedPods, which count pods that are gone: evicted, deleted, lost)
    minus the finished pods seen that never ran, plus the ones running now and not being
    deleted: the Job controller counts a pod it deleted (activeDeadlineSeconds) as failed
    while its container still runs out its grace period, so one pod was counted twice. A
    pod being deleted is still counted among the pods seen that ran.
    """
    job_status = job.get("status") or {}
    uncounted = job_status.get("uncountedTerminatedPods") or {}
    counted = (
        int(job_status.get("failed") or 0)
        + int(job_status.get("succeeded") or 0)
        + len(uncounted.get("failed") or [])
        + len(uncounted.get("succeeded") or [])
    )
    never_ran = sum(1 for pod in pods if attempts.is_finished(pod) and not attempts.ran(pod))
    active = sum(1 for pod in pods if attempts.running(pod) and not attempts.is_finished(pod)
                 and not (pod.get("metadata") or {}).get("deletionTimestamp"))
    recorded = int((task.get("status") or {}).get("attempts") or 0)
    return max(recorded, sum(1 for pod in pods if attempts.ran(pod)), counted - never_ran + active)


def _bounded_error(error: Mapping[str, Any]) -> dict[str, str]:
    """An error within the CRD's bounds (type 256, message and traceback 4096 chars);
    the traceback keeps its end, which names the failing line."""
    traceback = str(error.get("traceback") or "")
    if len(traceback) > 4096:
        traceback = "...[cut]" + traceback[-(4096 - len("...[cut]")):]
    return {
        "type": attempts.cut(str(error.get("type") or ""), 256),
        "message": attempts.cut(str(error.get("message") or ""), 4096),
        "traceback": traceback,
    }


def _record(pod: Mapping[str, Any], outcome: attempts.Outcome, previous: Optional[Mapping[str, Any]],
            log_tail: Optional[tuple[str, str]]) -> LastAttempt:
    name = _pod_name(pod)
    if previous and previous.get("pod") == name and previous.get("error") and not outcome.error:
        # Same attempt, seen through a view without its termination message (the
        # operator's pod cache may drop it): the recorded report stays the truth.
        kept = dict(previous)
        if log_tail is not None and log_tail[0] == name:
            kept["logTail"] = logtail.tail(log_tail[1])
        return kept
    record: LastAttempt = {"pod": name, "reason": outcome.reason, "message": outcome.message}
    if outcome.exit_code is not None:
        record["exitCode"] = outcome.exit_code
    started = (attempts.terminated(pod) or attempts.running(pod) or {}).get("startedAt")
    if started:
        record["startedAt"] = started
    if outcome.error:
        record["error"] = _bounded_error(outcome.error)
    if log_tail is not None and log_tail[0] == name:
        record["logTail"] = logtail.tail(log_tail[1])
    elif previous and previous.get("pod") == name and previous.get("logTail") is not None:
        record["logTail"] = previous["logTail"]
    return record


def _newest_failure(
    task: Mapping[str, Any], job: Mapping[str, Any], pods: list[Mapping[str, Any]]
) -> Optional[tuple[Mapping[str, Any], attempts.Outcome]]:
    """The newest pod that failed, with how. Pods deleted by the Job's own deadline are
    the deadline's doing, not a failure of the task: they are skipped, so the attempt
    before keeps its exception."""
    spec = task.get("spec") or {}
    deadline = _deadline_passed(job)
    for pod in reversed(pods):
        outcome = attempts.failure(pod, spec)
        if outcome is None:
            continue
        if deadline and outcome.reason == attempts.POD_DELETED:
            continue
        return pod, outcome
    return None


def last_attempt(
    task: Mapping[str, Any],
    job: Mapping[str, Any],
    pods: list[Mapping[str, Any]],
    log_tail: Optional[tuple[str, str]] = None,
) -> Optional[LastAttempt]:
    """The record of the task's last failed attempt: from the newest failed pod seen,
    else what the status recorded while the pod still existed (eviction and node loss
    delete pods; the record outlives them). None if no attempt failed.

    `log_tail` is (pod name, log text) as read by the reconciler for that pod.
    """
    previous = (task.get("status") or {}).get("lastAttempt")
    newest = _newest_failure(task, job, pods)
    if newest is None:
        return dict(previous) if previous else None
    pod, outcome = newest
    names = {_pod_name(p) for p in pods}
    if previous and previous.get("pod") not in names:
        # The recorded pod is gone; a pod created before it started is older.
        created = parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
        recorded_start = parse_time(previous.get("startedAt"))
        if created and recorded_start and created < recorded_start:
            return dict(previous)
    return _record(pod, outcome, previous, log_tail)


_TAKEN_AWAY = (attempts.EVICTED, attempts.PREEMPTED, attempts.NODE_LOST, attempts.POD_DELETED)


def pod_needing_log(task: Mapping[str, Any], job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> Optional[str]:
    """The name of the failed pod whose log tail should be read now, or None.

    The newest failed pod that ran, when the status has no tail of it yet, or only one
    read before its container terminated (an evicted pod is read while it is being
    stopped, in case it vanishes, and again once it has ended).
    """
    pods = sorted(pods, key=_pod_order)
    newest = _newest_failure(task, job, pods)
    if newest is None:
        return None
    pod, outcome = newest
    # A pod taken away may not have reported its container running yet (the status lags
    # the process); one that never got that far has no log, which the read then says.
    if not attempts.ran(pod) and outcome.reason not in _TAKEN_AWAY:
        return None
    name = _pod_name(pod)
    recorded = (task.get("status") or {}).get("lastAttempt") or {}
    if recorded.get("pod") != name or "logTail" not in recorded:
        return name
    if attempts.terminated(pod) and recorded.get("exitCode") is None:
        return name
    return None


def observe(
    task: Mapping[str, Any],
    job: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    now: datetime,
    start_timeout_seconds: int = DEFAULT_START_TIMEOUT_SECONDS,
    log_tail: Optional[tuple[str, str]] = None,
) -> Optional[Transition]:
    """The transition the task's Job and pods call for, or None if the status is current.

    start_timeout_seconds: how long a pod may wait for a reason in
    attempts.STUCK_WAITING_REASONS (from its creation) before the task fails.
    log_tail: (pod name, log text) of the pod pod_needing_log named, if it was read.
    """
    if is_terminal(task):
        return None
    current = task.get("status") or {}
    name = (job.get("metadata") or {}).get("name") or current.get("jobName")
    pods = sorted(pods, key=_pod_order)
    ran = [pod for pod in pods if attempts.ran(pod)]
    count = count_attempts(task, job, pods)
    started_at = current.get("startedAt") or _first_start(ran)
    last = last_attempt(task, job, pods, log_tail)

    complete = _job_condition(job, "Complete")
    failed = _job_condition(job, "Failed")
    if complete or failed:
        finished = _finish_time(complete or failed, ran, now)
        start = parse_time(started_at) or parse_time((job.get("status") or {}).get("startTime"))
        common = dict(
            jobName=name,
            startedAt=started_at,
            finishedAt=format_time(finished),
            duration=format_duration((finished - start).total_seconds()) if start else None,
            attempts=count,
            lastAttempt=last,
        )
        if complete:
            return _success(task, ran, now, common)
        return _failure(task, failed, last, now, common)

    succeeded = _succeeded_pod(ran)
    if succeeded is not None:
        # The pod's own verdict, without waiting for the Job controller to mark the Job
        # Complete (it batches pod updates for about a second). Safe because the Job
        # cannot turn a succeeded attempt into anything else: restartPolicy Never and
        # completions 1 mean one succeeded pod completes the Job, the podFailurePolicy
        # only acts on failed pods, and the runner exits 0 only after writing an ok
        # report. Failures still wait for the Job's Failed condition, which alone knows
        # whether backoffLimit leaves another attempt. docs/architecture.md, "Verdict".
        end = parse_time((attempts.terminated(succeeded) or {}).get("finishedAt")) or now
        start = parse_time(started_at) or parse_time((job.get("status") or {}).get("startTime"))
        return _success(task, [succeeded], now, dict(
            jobName=name, startedAt=started_at, finishedAt=format_time(end),
            duration=format_duration((end - start).total_seconds()) if start else None,
            attempts=max(count, 1), lastAttempt=last,
        ))

    waiting = next((pod for pod in reversed(pods) if not attempts.is_finished(pod)), None)
    blocked = attempts.blocked(waiting) if waiting is not None else None
    if blocked is not None and blocked.reason in attempts.STUCK_WAITING_REASONS:
        created = parse_time((waiting.get("metadata") or {}).get("creationTimestamp")) or now
        fails_at = created + timedelta(seconds=start_timeout_seconds)
        if now >= fails_at or blocked.reason in attempts.HOPELESS_WAITING_REASONS:
            return _cannot_start(task, blocked, name, started_at, count, last, now, start_timeout_seconds)

    if any(attempts.running(pod) for pod in pods) or ran or current.get("state") == "STARTED":
        if (
            current.get("state") == "STARTED"
            and current.get("jobName") == name
            and current.get("attempts") == count
            and current.get("lastAttempt") == last
        ):
            return None
        message = f"attempt {max(count, 1)} running"
        if last is not None:
            running_now = any(attempts.running(pod) and _pod_name(pod) != last["pod"] for pod in pods)
            message = (f"attempt {max(count, 1)} running; the one before failed: {last['message']}" if running_now
                       else f"attempt {max(count, 1)} ended: {last['message']}")
        return _transition(
            task,
            "STARTED",
            RUNNING,
            message,
            now,
            jobName=name,
            startedAt=started_at or format_time(now),
            attempts=count,
            lastAttempt=last,
        )
    if blocked is not None:
        message = blocked.message
        if blocked.reason in attempts.STUCK_WAITING_REASONS:
            message = attempts.cut(f"{message}; the task fails at {format_time(fails_at)} unless the container starts")
        if current.get("reason") == blocked.reason and _succeeded_message(task) == message:
            return None
        return _transition(task, "PENDING", blocked.reason, message, now, jobName=name)
    return pending(task, name, now)


def seconds_until_start_timeout(
    pods: Iterable[Mapping[str, Any]], now: datetime, start_timeout_seconds: int
) -> Optional[float]:
    """Seconds until a pod waiting for a reason in attempts.STUCK_WAITING_REASONS runs out
    of its start timeout (0 if it has), or None if no pod is waiting that way: when to
    look at the task again, since nothing else may change meanwhile."""
    waits = []
    for pod in pods:
        blocked = attempts.blocked(pod)
        if blocked is None or blocked.reason not in attempts.STUCK_WAITING_REASONS:
            continue
        created = parse_time((pod.get("metadata") or {}).get("creationTimestamp")) or now
        waits.append(max(0.0, (created + timedelta(seconds=start_timeout_seconds) - now).total_seconds()))
    return min(waits) if waits else None


def job_to_stop(task: Mapping[str, Any], job: Optional[Mapping[str, Any]]) -> bool:
    """Whether a failed task's Job is still trying and must be deleted.

    Only a task that failed because its container could not start (a reason in
    attempts.STUCK_WAITING_REASONS) ends while its Job runs on: kubelet keeps pulling, and
    a fixed registry or Secret would start a task that already says FAILURE.
    """
    if job is None or state_of(task) != "FAILURE" or job_finished(job):
        return False
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return (task.get("status") or {}).get("reason") in attempts.STUCK_WAITING_REASONS


def _succeeded_message(task: Mapping[str, Any]) -> Optional[str]:
    for condition in (task.get("status") or {}).get("conditions") or []:
        if condition.get("type") == SUCCEEDED:
            return condition.get("message")
    return None


def _cannot_start(task, blocked, name, started_at, count, last, now, timeout) -> Transition:
    """FAILURE: the container could not start within the operator's bound (or never can)."""
    waited = ("kubelet cannot recover from it" if blocked.reason in attempts.HOPELESS_WAITING_REASONS
              else f"still not started after {timeout}s (CONTAINER_START_TIMEOUT_SECONDS)")
    message = attempts.cut(f"{blocked.message}; {waited}")
    return _transition(
        task, "FAILURE", blocked.reason, message, now,
        error={"type": blocked.reason, "message": message, "traceback": ""},
        jobName=name, startedAt=started_at, finishedAt=format_time(now), attempts=count, lastAttempt=last,
    )


def _succeeded_pod(ran: list[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    """The pod whose task container exited 0 with an ok report, if any."""
    for pod in reversed(ran):
        terminated = attempts.terminated(pod) or {}
        if terminated.get("exitCode") == 0:
            report = parse_termination_message(terminated.get("message"))
            if report and report.get("ok"):
                return pod
    return None


def _first_start(ran: list[Mapping[str, Any]]) -> Optional[str]:
    for pod in ran:
        start = (attempts.running(pod) or {}).get("startedAt") or (attempts.terminated(pod) or {}).get("startedAt")
        if start:
            return start
    return None


def _finish_time(condition: Mapping[str, Any], ran: list[Mapping[str, Any]], now: datetime) -> datetime:
    """When the task ended: its last process's end, else when the Job said so."""
    for pod in reversed(ran):
        end = parse_time((attempts.terminated(pod) or {}).get("finishedAt"))
        if end:
            return end
    return parse_time(condition.get("lastTransitionTime")) or now


def _success(task, ran, now, common) -> Transition:
    for pod in reversed(ran):
        terminated = attempts.terminated(pod) or {}
        if terminated.get("exitCode") != 0:
            continue
        report = parse_report(terminated.get("message"))
        if report and report.ok:
            # result_fields: the result plus the places of its integral floats (2.0),
            # which the API server would otherwise store as integers.
            return _transition(
                task, "SUCCESS", COMPLETED, "the task returned a result", now,
                **values.result_fields(report.result), **common,
            )
    message = "the task's pod exited successfully but left no readable result"
    return _transition(
        task, "FAILURE", INVALID_RESULT, message, now,
        error={"type": INVALID_RESULT, "message": message, "traceback": ""}, **common,
    )


def _failure(task, failed, last, now, common) -> Transition:
    """FAILURE with the last attempt's cause; DeadlineExceeded keeps that attempt's error."""
    job_reason = failed.get("reason") or ""
    if job_reason == "DeadlineExceeded":
        timeout = (task.get("spec") or {}).get("timeoutSeconds")
        reason = DEADLINE_EXCEEDED
        message = f"the task did not finish within timeoutSeconds={timeout}"
        if last is not None and last.get("error"):
            error = dict(last["error"])
            message += f"; its last failed attempt raised {last['message']}"
        elif last is not None:
            message += f"; its last failed attempt: {last['message']}"
            error = {"type": DEADLINE_EXCEEDED, "message": message, "traceback": ""}
        else:
            error = {"type": DEADLINE_EXCEEDED, "message": message, "traceback": ""}
    elif last is not None:
        reason = last["reason"]
        error = dict(last.get("error") or {"type": reason, "message": last["message"], "traceback": ""})
        message = last["message"]
    else:
        # The pods are gone and none was seen failing: deleted (or evicted, or lost
        # with its node) before the operator saw how it ended. Say what is known.
        reason = attempts.POD_DELETED
        detail = failed.get("message") or job_reason or "no detail"
        message = f"the task's pod is gone without a report (deleted, evicted or its node lost); the Job says: {detail}"
        error = {"type": reason, "message": message, "traceback": ""}
    error = _bounded_error(error)
    return _transition(task, "FAILURE", reason, attempts.cut(message), now, error=error, **common)


# ---------------------------------------------------------------- after the end


def event_confirmed(task: Mapping[str, Any]) -> bool:
    return bool(((task.get("status") or {}).get("event") or {}).get("confirmedAt"))


def _event_condition(task: Mapping[str, Any]) -> Mapping[str, Any]:
    for condition in (task.get("status") or {}).get("conditions") or []:
        if condition.get("type") == EVENT_PUBLISHED:
            return condition
    return {}


def event_published(
    task: Mapping[str, Any], routing_key: str, message_id: str, now: datetime
) -> dict[str, Any]:
    """Status fields recording that the broker confirmed the task's event."""
    current = task.get("status") or {}
    return {
        "event": {"routingKey": routing_key, "messageId": message_id, "confirmedAt": format_time(now)},
        "conditions": set_condition(
            current.get("conditions") or [], EVENT_PUBLISHED, "True", PUBLISHED,
            f"event {routing_key} confirmed by the broker", now,
        ),
    }


def event_failed(task: Mapping[str, Any], reason: str, message: str, now: datetime) -> Optional[dict[str, Any]]:
    """Status fields saying the event is not out yet (None if it already says exactly that)."""
    condition = _event_condition(task)
    if condition.get("status") == "False" and condition.get("reason") == reason and (
        condition.get("message") == message
    ):
        return None
    current = task.get("status") or {}
    return {
        "conditions": set_condition(
            current.get("conditions") or [], EVENT_PUBLISHED, "False", reason, message, now
        )
    }


def events_disabled(task: Mapping[str, Any], now: datetime) -> Optional[dict[str, Any]]:
    return event_failed(
        task, EVENTS_DISABLED, "the operator has no broker configured (LIME_TASK_OPERATOR_BROKER_URL)", now
    )


def expiry(task: Mapping[str, Any], default_ttl_seconds: int) -> Optional[datetime]:
    """When a finished task may be deleted (None while it is not finished)."""
    if not is_terminal(task):
        return None
    finished = parse_time((task.get("status") or {}).get("finishedAt"))
    if finished is None:
        return None
    ttl = (task.get("spec") or {}).get("ttlSecondsAfterFinished")
    return finished + timedelta(seconds=default_ttl_seconds if ttl is None else ttl)


INVALID_EVENT = "InvalidEvent"


def event_abandoned(task: Mapping[str, Any]) -> bool:
    """Whether the task's event can never be published (EventPublished=False/InvalidEvent,
    e.g. a routing key over AMQP's 255 bytes): retrying cannot help, so nothing waits for it."""
    condition = _event_condition(task)
    return condition.get("status") == "False" and condition.get("reason") == INVALID_EVENT


def may_delete(task: Mapping[str, Any], default_ttl_seconds: int, events_enabled: bool, now: datetime) -> bool:
    """A finished task is deleted after its TTL, but never before its event went out
    (or was recorded as impossible to send)."""
    deadline = expiry(task, default_ttl_seconds)
    if deadline is None or now < deadline:
        return False
    return event_confirmed(task) or not events_enabled or event_abandoned(task)


# ---------------------------------------------------------------- refusals and bounds
# (the operator's own outcomes that no pod reports; see docs/architecture.md, "Errors")

QUOTA_EXCEEDED = "QuotaExceeded"
JOB_REJECTED = "JobRejected"
JOB_NAME_TAKEN = "JobNameTaken"
STATUS_REJECTED = "StatusRejected"

# The CRD's maxLength of each string the operator writes (crds/limetask.yaml); the API
# server refuses a whole status write if one of them is longer.
LIMITS = {"type": 256, "message": 4096, "traceback": 4096, "condition": 32768}
CUT_MARKER = " [… {n} more characters cut]"


def cut(text: str, limit: int, keep_end: bool = False) -> str:
    """`text` fitted to `limit` characters with a visible marker saying how much was cut;
    `keep_end` keeps the end instead (a traceback's last lines name the failing line)."""
    text = str(text)
    if len(text) <= limit:
        return text
    # The marker's length with the largest possible count bounds the room left.
    room = max(0, limit - len(CUT_MARKER.format(n=len(text))))
    marker = CUT_MARKER.format(n=len(text) - room)
    return marker.strip() + " " + text[len(text) - room:] if keep_end else text[:room] + marker


def bounded(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Status fields with every operator-written string cut to the CRD's limits."""
    result = dict(fields)
    error = result.get("error")
    if isinstance(error, Mapping):
        result["error"] = {
            **error,
            "type": cut(error.get("type") or "", LIMITS["type"]),
            "message": cut(error.get("message") or "", LIMITS["message"]),
            "traceback": cut(error.get("traceback") or "", LIMITS["traceback"], keep_end=True),
        }
    if isinstance(result.get("conditions"), list):
        result["conditions"] = [
            {**c, "message": cut(c.get("message") or "", LIMITS["condition"])} if isinstance(c, Mapping) else c
            for c in result["conditions"]
        ]
    return result


def quota_exceeded(task: Mapping[str, Any], message: str, now: datetime) -> Optional[Transition]:
    """PENDING/QuotaExceeded: a ResourceQuota refused the Job; retried with backoff."""
    if is_terminal(task):
        return None
    text = f"a ResourceQuota refused the task's Job; retrying: {message}"
    current = task.get("status") or {}
    if current.get("reason") == QUOTA_EXCEEDED and current.get("state") == "PENDING":
        return None
    return _transition(task, "PENDING", QUOTA_EXCEEDED, text, now)


def job_rejected(task: Mapping[str, Any], message: str, now: datetime) -> Optional[Transition]:
    """FAILURE/JobRejected: the API server refused the Job derived from this task (400, 422,
    a 403 that is not a quota): the same request can never succeed, so it is not retried."""
    return _operator_failure(task, JOB_REJECTED, f"the API server refused the task's Job: {message}", now, attempts=0)


def job_name_taken(task: Mapping[str, Any], message: str, now: datetime) -> Optional[Transition]:
    """FAILURE/JobNameTaken: a Job that is not this task's holds the task's Job name and
    will not go away by itself (jobs.foreign_job); nothing ran, so it is not retried."""
    return _operator_failure(task, JOB_NAME_TAKEN, f"the task's Job name is taken: {message}", now, attempts=0)


def status_rejected(task: Mapping[str, Any], message: str, now: datetime) -> Optional[Transition]:
    """FAILURE/StatusRejected: the API server refused a status write for this task; the
    smallest status that says so (no result, no traceback)."""
    return _operator_failure(task, STATUS_REJECTED, f"the API server refused the task's status: {message}", now)


def _operator_failure(task: Mapping[str, Any], reason: str, text: str, now: datetime,
                      **fields: Any) -> Optional[Transition]:
    """FAILURE with `reason`, and an error of that type saying `text`, for a task ended by
    the operator or the API server rather than by its own code (None if already terminal);
    `fields` are further status fields (attempts, duration)."""
    if is_terminal(task):
        return None
    return _transition(task, "FAILURE", reason, text, now,
                       error={"type": reason, "message": text, "traceback": ""},
                       finishedAt=format_time(now), **fields)
