"""Pure logic: the pod status kubelet would report, from what our processes did.

The node agent records one ``ContainerRun`` per container and calls ``build_status``
whenever something changes; the result is sent as a strategic-merge patch to the
pods/status subresource. Only ``restartPolicy: Never`` semantics are modelled: a
container runs once and the pod ends Succeeded or Failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

HOST_IP = "127.0.0.1"
# kubelet: at most 4096 bytes of the termination message file; with
# FallbackToLogsOnError, at most 80 lines / 2048 bytes of the log tail.
MESSAGE_LIMIT = 4096
LOG_FALLBACK_LINES = 80
LOG_FALLBACK_BYTES = 2048
IMAGE_ID = "local://image-not-pulled"

WAITING, RUNNING, TERMINATED = "waiting", "running", "terminated"


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ContainerRun:
    name: str
    image: str = ""
    state: str = WAITING
    reason: str = "ContainerCreating"
    message: str | None = None
    pid: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None

    def running(self, pid: int, at: datetime) -> "ContainerRun":
        return replace(self, state=RUNNING, reason="", message=None, pid=pid, started_at=at)

    def terminated(self, exit_code: int, at: datetime, message: str | None) -> "ContainerRun":
        return replace(self, state=TERMINATED, exit_code=exit_code, finished_at=at, message=message,
                       reason="Completed" if exit_code == 0 else "Error")


@dataclass
class PodOutcome:
    """Pod-level facts beside the containers: why the pod was ended, if it was."""

    start_time: datetime | None = None
    reason: str | None = None
    message: str | None = None
    # Force Failed (deadline exceeded, unsupported pod, node shutdown).
    failed: bool = False
    previous_conditions: dict[str, dict] = field(default_factory=dict)


def exit_code_of(returncode: int) -> int:
    """Popen's negative "killed by signal N" as a container runtime reports it: 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def termination_message(file_bytes: bytes, log_tail: bytes, policy: str | None, exit_code: int) -> str | None:
    """The message kubelet would put in ``state.terminated.message``: the file's last
    4096 bytes; with FallbackToLogsOnError and an empty file on failure, the log tail."""
    data = file_bytes[-MESSAGE_LIMIT:]
    if not data.strip() and policy == "FallbackToLogsOnError" and exit_code != 0:
        lines = log_tail.splitlines(keepends=True)[-LOG_FALLBACK_LINES:]
        data = b"".join(lines)[-LOG_FALLBACK_BYTES:]
    text = data.decode("utf-8", errors="replace")
    return text or None


def phase(runs: list[ContainerRun], outcome: PodOutcome) -> str:
    if outcome.failed:
        return "Failed"
    if all(r.state == TERMINATED for r in runs):
        return "Succeeded" if all(r.exit_code == 0 for r in runs) else "Failed"
    if any(r.state != WAITING for r in runs):
        # Containers run one after the other here: once one started the pod is Running
        # until the last one ends (kubelet would run them side by side).
        return "Running"
    return "Pending"


def container_status(run: ContainerRun) -> dict:
    status = {
        "name": run.name,
        "image": run.image,
        "imageID": IMAGE_ID if run.state != WAITING else "",
        "ready": run.state == RUNNING,
        "started": run.state == RUNNING,
        "restartCount": 0,
        "lastState": {},
    }
    if run.pid is not None:
        # The pid is the container id: tests and humans can find the process with it.
        status["containerID"] = f"local://{run.pid}"
    # The status is sent as a strategic-merge patch: the states not current are sent as
    # null so that an earlier "waiting" does not survive beside "running".
    if run.state == WAITING:
        waiting = {"reason": run.reason, "message": run.message}
        status["state"] = {"waiting": waiting, "running": None, "terminated": None}
    elif run.state == RUNNING:
        status["state"] = {"waiting": None, "running": {"startedAt": rfc3339(run.started_at)}, "terminated": None}
    else:
        term = {"exitCode": run.exit_code, "reason": run.reason}
        if run.message:
            term["message"] = run.message
        if run.started_at:
            term["startedAt"] = rfc3339(run.started_at)
        term["finishedAt"] = rfc3339(run.finished_at)
        if run.pid is not None:
            term["containerID"] = f"local://{run.pid}"
        status["state"] = {"waiting": None, "running": None, "terminated": term}
    return status


def finalize_unstarted(runs: list[ContainerRun], at: datetime) -> list[ContainerRun]:
    """When a pod ends before some containers started, kubelet reports those as
    terminated with ContainerStatusUnknown / 137."""
    out = []
    for r in runs:
        if r.state == TERMINATED:
            out.append(r)
        else:
            out.append(replace(
                r, state=TERMINATED, exit_code=137, reason="ContainerStatusUnknown", finished_at=at,
                message="The container could not be located when the pod was terminated",
            ))
    return out


def _condition(ctype: str, ok: bool, now: datetime, previous: dict[str, dict],
               reason: str | None = None, message: str | None = None) -> dict:
    status = "True" if ok else "False"
    prev = previous.get(ctype)
    changed = prev is None or prev.get("status") != status
    cond = {
        "type": ctype,
        "status": status,
        "lastProbeTime": None,
        # Unchanged status keeps its transition time, as the API conventions require.
        "lastTransitionTime": rfc3339(now) if changed else prev["lastTransitionTime"],
    }
    # Explicit nulls clear an earlier reason/message in the strategic-merge patch.
    cond["reason"] = reason
    cond["message"] = message
    return cond


def build_status(runs: list[ContainerRun], outcome: PodOutcome, now: datetime) -> dict:
    ph = phase(runs, outcome)
    terminal = ph in ("Succeeded", "Failed")
    not_ready = [r.name for r in runs if r.state != RUNNING]
    prev = outcome.previous_conditions
    if terminal:
        ready_reason, ready_msg = "PodCompleted", None
    elif not_ready:
        ready_reason = "ContainersNotReady"
        ready_msg = f"containers with unready status: [{' '.join(not_ready)}]"
    else:
        ready_reason = ready_msg = None
    all_ready = not terminal and not not_ready
    conditions = [
        _condition("PodReadyToStartContainers", not terminal, now, prev),
        _condition("Initialized", True, now, prev),
        _condition("ContainersReady", all_ready, now, prev, ready_reason, ready_msg),
        _condition("Ready", all_ready, now, prev, ready_reason, ready_msg),
    ]
    status: dict = {
        "phase": ph,
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": HOST_IP,
        "podIPs": [{"ip": HOST_IP}],
        "conditions": conditions,
        "containerStatuses": [container_status(r) for r in runs],
    }
    if outcome.start_time:
        status["startTime"] = rfc3339(outcome.start_time)
    status["reason"] = outcome.reason
    status["message"] = outcome.message
    return status
