"""What happened to one attempt: a task pod read the way kubelet and the API server report it.

Pure functions over the pod view (views.pod_view): phase, reason, message, conditions,
containerStatuses and metadata.deletionTimestamp. transitions.py turns the result into the
task's reason; keeping the pod-level reading here means each cause - the runner's
report, an OOM kill, an eviction, a deleted pod or lost node, an image that cannot be
pulled, a pod the scheduler cannot place - is recognised in exactly one place.

Where the figures and names come from:
- `DisruptionTarget` condition reasons: Kubernetes "Pod disruption conditions"
  (EvictionByEvictionAPI, PreemptionByScheduler, DeletionByTaintManager,
  DeletionByPodGC, TerminationByKubelet).
- container `waiting` reasons kubelet gives for images and container creation
  (ErrImagePull, ImagePullBackOff, InvalidImageName, ErrImageNeverPull,
  CreateContainerConfigError, CreateContainerError, ...): pkg/kubelet/images and
  pkg/kubelet/kuberuntime.
- pod `status.reason` set by kubelet's node-pressure eviction (`Evicted`) and by the
  node lifecycle controller (`NodeLost`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from lime_task.termination import COULD_NOT_LOAD, INVALID_RESULT, ExitCode, parse_report

CONTAINER_NAME = "task"  # jobs.CONTAINER_NAME; repeated to keep this module free of jobs' imports

# Task reasons an attempt can end with (docs/architecture.md "Reasons").
TASK_RAISED = "TaskRaised"
COULD_NOT_LOAD_REASON = COULD_NOT_LOAD
INVALID_RESULT_REASON = INVALID_RESULT
OOM_KILLED = "OOMKilled"
EVICTED = "Evicted"
PREEMPTED = "Preempted"
NODE_LOST = "NodeLost"
POD_DELETED = "PodDeleted"
POD_FAILED = "PodFailed"
UNSCHEDULABLE = "Unschedulable"

# DisruptionTarget condition reason -> task reason.
_DISRUPTIONS = {
    "EvictionByEvictionAPI": EVICTED,
    "TerminationByKubelet": EVICTED,
    "PreemptionByScheduler": PREEMPTED,
    "DeletionByTaintManager": NODE_LOST,
    "DeletionByPodGC": NODE_LOST,
}
# Pod status.reason -> task reason, for failures reported without a condition.
_POD_REASONS = {"Evicted": EVICTED, "NodeLost": NODE_LOST, "Preempting": PREEMPTED}

# Container waiting reasons that mean "this container will not start without someone
# changing something": the task fails after the operator's CONTAINER_START_TIMEOUT_SECONDS
# (kubelet keeps retrying pulls, and a registry or Secret may be fixed meanwhile). The
# task's reason is kubelet's own, so it can be looked up as such.
STUCK_WAITING_REASONS = (
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
    "SignatureValidationFailed",
    "CreateContainerConfigError",
    "CreateContainerError",
)
# Of those, the ones kubelet never recovers from on its own: no point waiting.
HOPELESS_WAITING_REASONS = ("InvalidImageName", "ErrImageNeverPull")

# Bounds for texts copied from the API into the task's status (the CRD's maxLength on
# lastAttempt.message and the condition message budget of docs/architecture.md).
MESSAGE_MAX = 1024


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended (or why it cannot start).

    reason: a task reason (CamelCase, the constants above or a STUCK_WAITING_REASONS
    entry); message: one line for humans, at most MESSAGE_MAX characters; error:
    `{"type", "message", "traceback"}` from the runner's report, or None when the
    runner could not report (killed, never started); exit_code: the container's, if
    it terminated.
    """

    reason: str
    message: str
    error: Optional[dict[str, str]] = None
    exit_code: Optional[int] = None


def cut(text: str, limit: int = MESSAGE_MAX) -> str:
    """`text` in at most `limit` characters, a visible "...[cut]" marking a cut."""
    marker = "...[cut]"
    return text if len(text) <= limit else text[: max(0, limit - len(marker))] + marker


def container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    """The task container's status (the first one if none is named `task`), or {}."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == CONTAINER_NAME:
            return status
    return statuses[0] if statuses else {}


def running(pod: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
    return (container(pod).get("state") or {}).get("running")


def terminated(pod: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
    state = container(pod).get("state") or {}
    return state.get("terminated") or (container(pod).get("lastState") or {}).get("terminated")


def waiting(pod: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
    return (container(pod).get("state") or {}).get("waiting")


def ran(pod: Mapping[str, Any]) -> bool:
    """Whether the task's process started in this pod (counts as an attempt)."""
    if running(pod):
        return True
    end = terminated(pod)
    return bool(end and end.get("startedAt"))


def phase(pod: Mapping[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def is_finished(pod: Mapping[str, Any]) -> bool:
    """Whether the pod reached a terminal phase (Succeeded or Failed)."""
    return phase(pod) in ("Succeeded", "Failed")


def _condition(pod: Mapping[str, Any], type_: str) -> Optional[Mapping[str, Any]]:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_:
            return condition
    return None


def _memory_limit(task_spec: Mapping[str, Any]) -> Optional[str]:
    limits = ((task_spec.get("resources") or {}).get("limits")) or {}
    value = limits.get("memory")
    return None if value is None else str(value)


def failure(pod: Mapping[str, Any], task_spec: Mapping[str, Any]) -> Optional[Outcome]:
    """How this attempt failed, or None while it has not (running, waiting, succeeded).

    Order matters: the runner's own report wins (it knows the exception); then what
    killed the container (OOM); then why the pod was taken away (a DisruptionTarget
    condition, kubelet's pod reason, a deletion); then a bare exit code.
    """
    end = terminated(pod)
    exit_code = end.get("exitCode") if end else None
    report = parse_report(end.get("message")) if end else None
    if end and exit_code != 0 and report is not None and not report.ok:
        if exit_code == ExitCode.COULD_NOT_LOAD:
            reason = COULD_NOT_LOAD_REASON
        elif exit_code == ExitCode.INVALID_RESULT:
            reason = INVALID_RESULT_REASON
        else:
            reason = TASK_RAISED
        error = {
            "type": report.error["type"] or reason,
            "message": report.error["message"],
            "traceback": report.error["traceback"],
        }
        return Outcome(reason, cut(f"{error['type']}: {error['message']}"), error, exit_code)

    if end and exit_code in (ExitCode.COULD_NOT_LOAD, ExitCode.INVALID_RESULT):
        # The runner's codes without its report (the report could not be written).
        reason = COULD_NOT_LOAD_REASON if exit_code == ExitCode.COULD_NOT_LOAD else INVALID_RESULT_REASON
        what = "could not load the task" if reason == COULD_NOT_LOAD_REASON else "got a result it cannot report"
        return Outcome(reason, f"{reason}: the runner {what} (exit code {exit_code}, no report)", None, exit_code)

    if end and end.get("reason") == "OOMKilled":
        limit = _memory_limit(task_spec)
        where = (f"its memory limit of {limit} (spec.resources.limits.memory)" if limit
                 else "the memory the node could give it (no memory limit set)")
        return Outcome(OOM_KILLED, cut(f"the task's container was killed for using more than {where}; "
                                       f"exit code {exit_code}"), None, exit_code)

    disruption = _condition(pod, "DisruptionTarget")
    if disruption and disruption.get("status") == "True":
        reason = _DISRUPTIONS.get(disruption.get("reason") or "", POD_DELETED)
        detail = disruption.get("message") or disruption.get("reason") or "disrupted"
        return Outcome(reason, cut(f"the task's pod was stopped ({disruption.get('reason')}): {detail}"),
                       None, exit_code)

    status = pod.get("status") or {}
    pod_reason = status.get("reason") or ""
    if pod_reason in _POD_REASONS and (is_finished(pod) or end):
        detail = status.get("message") or pod_reason
        return Outcome(_POD_REASONS[pod_reason], cut(f"the task's pod was stopped ({pod_reason}): {detail}"),
                       None, exit_code)

    if (pod.get("metadata") or {}).get("deletionTimestamp") and exit_code != 0:
        return Outcome(POD_DELETED, "the task's pod was deleted before the task finished", None, exit_code)

    if end and exit_code not in (0, None):
        detail = end.get("reason") or "no report from the runner"
        return Outcome(POD_FAILED, cut(f"the task's pod failed (exit code {exit_code}, {detail})"), None, exit_code)

    if phase(pod) == "Failed":
        detail = status.get("message") or pod_reason or "no container status"
        return Outcome(POD_FAILED, cut(f"the task's pod failed ({detail})"), None, exit_code)
    return None


def blocked(pod: Mapping[str, Any]) -> Optional[Outcome]:
    """Why a pod that has not started cannot start, or None if nothing is in its way.

    Unschedulable: the scheduler's PodScheduled=False condition (its message says which
    resources or constraints are missing). A container waiting for a reason in
    STUCK_WAITING_REASONS: kubelet's reason and message (e.g. the registry's answer).
    """
    if is_finished(pod) or ran(pod):
        return None
    scheduled = _condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == UNSCHEDULABLE:
        return Outcome(UNSCHEDULABLE, cut(scheduled.get("message") or "the scheduler found no node for the pod"))
    wait = waiting(pod) or {}
    if wait.get("reason") in STUCK_WAITING_REASONS:
        return Outcome(wait["reason"], cut(f"{wait['reason']}: {wait.get('message') or 'no message from kubelet'}"))
    return None
