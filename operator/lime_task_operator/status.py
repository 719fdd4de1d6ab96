"""What a LimeTask's status should say, computed from the task, its Job and its pods.

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

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping, Optional

from lime_task.constants import TERMINAL_STATES

from . import jobs

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
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
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


def parse_termination_message(text: Optional[str]) -> Optional[dict[str, Any]]:
    """The runner's report (``{"ok": ..., ...}``) or None if there is none or it is garbage."""
    if not text:
        return None
    try:
        report = json.loads(text)
    except ValueError:
        return None
    if not isinstance(report, dict) or not isinstance(report.get("ok"), bool):
        return None
    return report


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
    status.update({k: v for k, v in fields.items() if v is not None})
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
    if is_terminal(task):
        return None
    return _transition(
        task,
        "FAILURE",
        INVALID_TASK,
        message,
        now,
        error={"type": INVALID_TASK, "message": message, "traceback": ""},
        finishedAt=format_time(now),
        attempts=0,
    )


def cancelled(task: Mapping[str, Any], job_name: str, now: datetime) -> Optional[Transition]:
    """FAILURE/Cancelled: the task's Job was deleted before it finished.

    The task still exists (deleting the task itself removes everything), so somebody
    deleted the Job; we cannot know whether the task ran, and re-running it could run it
    twice, so the task fails and says why.
    """
    if is_terminal(task):
        return None
    message = f"Job {job_name} was deleted before the task finished"
    current = task.get("status") or {}
    started = parse_time(current.get("startedAt"))
    return _transition(
        task,
        "FAILURE",
        CANCELLED,
        message,
        now,
        error={"type": CANCELLED, "message": message, "traceback": ""},
        finishedAt=format_time(now),
        duration=format_duration((now - started).total_seconds()) if started else None,
    )


# ---------------------------------------------------------------- following the Job


def _container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == jobs.CONTAINER_NAME:
            return status
    return statuses[0] if statuses else {}


def _running(pod: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
    return (_container(pod).get("state") or {}).get("running")


def _terminated(pod: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
    state = _container(pod).get("state") or {}
    return state.get("terminated") or (_container(pod).get("lastState") or {}).get("terminated")


def pod_ran(pod: Mapping[str, Any]) -> bool:
    """Whether the task's process started in this pod (counts as an attempt)."""
    if _running(pod):
        return True
    terminated = _terminated(pod)
    return bool(terminated and terminated.get("startedAt"))


def _pod_order(pod: Mapping[str, Any]) -> tuple[str, str]:
    metadata = pod.get("metadata") or {}
    return (metadata.get("creationTimestamp") or "", metadata.get("name") or "")


def _job_condition(job: Mapping[str, Any], type_: str) -> Optional[Mapping[str, Any]]:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return condition
    return None


def job_finished(job: Mapping[str, Any]) -> bool:
    return bool(_job_condition(job, "Complete") or _job_condition(job, "Failed"))


def observe(
    task: Mapping[str, Any],
    job: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    now: datetime,
) -> Optional[Transition]:
    """The transition the task's Job and pods call for, or None if the status is current."""
    if is_terminal(task):
        return None
    current = task.get("status") or {}
    name = (job.get("metadata") or {}).get("name") or current.get("jobName")
    pods = sorted(pods, key=_pod_order)
    ran = [pod for pod in pods if pod_ran(pod)]
    attempts = len(ran)
    started_at = current.get("startedAt") or _first_start(ran)

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
            attempts=attempts,
        )
        if complete:
            return _success(task, ran, now, common)
        return _failure(task, job, failed, ran, now, common)

    if any(_running(pod) for pod in pods) or ran or current.get("state") == "STARTED":
        if (
            current.get("state") == "STARTED"
            and current.get("jobName") == name
            and current.get("attempts") == attempts
        ):
            return None
        return _transition(
            task,
            "STARTED",
            RUNNING,
            f"attempt {max(attempts, 1)} running",
            now,
            jobName=name,
            startedAt=started_at or format_time(now),
            attempts=attempts,
        )
    return pending(task, name, now)


def _first_start(ran: list[Mapping[str, Any]]) -> Optional[str]:
    for pod in ran:
        running = _running(pod)
        terminated = _terminated(pod)
        start = (running or {}).get("startedAt") or (terminated or {}).get("startedAt")
        if start:
            return start
    return None


def _finish_time(condition: Mapping[str, Any], ran: list[Mapping[str, Any]], now: datetime) -> datetime:
    """When the task ended: its last process's end, else when the Job said so."""
    for pod in reversed(ran):
        end = parse_time((_terminated(pod) or {}).get("finishedAt"))
        if end:
            return end
    return parse_time(condition.get("lastTransitionTime")) or now


def _success(task, ran, now, common) -> Transition:
    for pod in reversed(ran):
        terminated = _terminated(pod) or {}
        if terminated.get("exitCode") != 0:
            continue
        report = parse_termination_message(terminated.get("message"))
        if report and report.get("ok"):
            return _transition(
                task, "SUCCESS", COMPLETED, "the task returned a result", now,
                result=report.get("result"), **common,
            )
    message = "the task's pod exited successfully but left no readable result"
    return _transition(
        task, "FAILURE", INVALID_RESULT, message, now,
        error={"type": INVALID_RESULT, "message": message, "traceback": ""}, **common,
    )


def _failure(task, job, failed, ran, now, common) -> Transition:
    last = _terminated(ran[-1]) if ran else None
    exit_code = (last or {}).get("exitCode")
    report = parse_termination_message((last or {}).get("message"))
    reported = report.get("error") if report and not report.get("ok") else None
    job_reason = failed.get("reason") or ""

    if job_reason == "DeadlineExceeded":
        timeout = ((task.get("spec") or {}).get("timeoutSeconds"))
        reason = DEADLINE_EXCEEDED
        error = {
            "type": DEADLINE_EXCEEDED,
            "message": f"the task did not finish within timeoutSeconds={timeout}",
            "traceback": "",
        }
    elif exit_code == jobs.EXIT_COULD_NOT_LOAD:
        reason = COULD_NOT_LOAD
        error = _error(reported, COULD_NOT_LOAD, "the runner could not load the task")
    elif exit_code == jobs.EXIT_INVALID_RESULT:
        reason = INVALID_RESULT
        error = _error(reported, INVALID_RESULT, "the task's result is not JSON or too large")
    elif exit_code == jobs.EXIT_TASK_RAISED and reported:
        reason = TASK_RAISED
        error = _error(reported, "Exception", "the task raised")
    else:
        reason = POD_FAILED
        detail = (last or {}).get("reason") or failed.get("message") or job_reason or "unknown"
        error = _error(
            None,
            POD_FAILED,
            f"the task's pod failed (exit code {exit_code}, {detail})"
            if exit_code is not None
            else f"the task's pod failed ({detail})",
        )
    message = f"{error['type']}: {error['message']}"
    return _transition(task, "FAILURE", reason, message[:1024], now, error=error, **common)


def _error(reported: Any, default_type: str, default_message: str) -> dict[str, str]:
    if isinstance(reported, Mapping):
        return {
            "type": str(reported.get("type") or default_type),
            "message": str(reported.get("message") or default_message),
            "traceback": str(reported.get("traceback") or ""),
        }
    return {"type": default_type, "message": default_message, "traceback": ""}


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


def may_delete(task: Mapping[str, Any], default_ttl_seconds: int, events_enabled: bool, now: datetime) -> bool:
    """A finished task is deleted after its TTL, but never before its event went out."""
    deadline = expiry(task, default_ttl_seconds)
    if deadline is None or now < deadline:
        return False
    return event_confirmed(task) or not events_enabled
