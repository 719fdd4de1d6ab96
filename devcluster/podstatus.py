"""Pure logic: the pod status kubelet would report, from what our processes did.

The node agent records one ``ContainerRun`` per container and calls ``build_status``
whenever something changes; the result is sent as a strategic-merge patch to the
pods/status subresource.

Restarts are modelled as kubelet reports them (when to restart is restarts.py's
decision): a restarted container keeps its ``ContainerRun``; ``restart_count`` is the
number of the instance that is current (kubelet's count, so it goes up when the new
instance starts), ``last_termination`` the previous instance's end (``lastState``), and
while the node waits out the back-off the container is ``waiting`` with reason
CrashLoopBackOff. The pod stays Running meanwhile: it reaches a terminal phase only when
nothing will restart (``restartPolicy: Never``, ``OnFailure`` after exit 0) or when the
node ended it (deletion, deadline).

After the node agent restarts, ``resumed_runs`` rebuilds the runs of a pod it restarts in
place from the status the previous agent reported, so counts and ``lastState`` carry on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from .restarts import LOST_EXIT_CODE, should_restart

HOST_IP = "127.0.0.1"
# kubelet: at most 4096 bytes of the termination message file; with
# FallbackToLogsOnError, at most 80 lines / 2048 bytes of the log tail.
MESSAGE_LIMIT = 4096
LOG_FALLBACK_LINES = 80
LOG_FALLBACK_BYTES = 2048
IMAGE_ID = "local://image-not-pulled"

WAITING, RUNNING, TERMINATED = "waiting", "running", "terminated"
CRASH_LOOP = "CrashLoopBackOff"


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """An API timestamp (``2026-01-02T03:04:05Z``) back to a datetime; None stays None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from None


def pid_of(container_id: str | None) -> int | None:
    """Our container ids are ``local://<pid>``; anything else has no pid we know."""
    if container_id and container_id.startswith("local://") and container_id[8:].isdigit():
        return int(container_id[8:])
    return None


AGENT_RESTARTED = "NodeAgentRestarted"
AGENT_RESTARTED_MESSAGE = ("the local node agent restarted and this container's process did not survive it "
                           "(as on a node reboot); the container is started again in the same pod")


@dataclass(frozen=True)
class Termination:
    """How one instance of a container ended: ``lastState.terminated`` after a restart."""

    exit_code: int
    reason: str
    message: str | None
    started_at: datetime | None
    finished_at: datetime
    pid: int | None

    @classmethod
    def from_status(cls, term: dict) -> "Termination":
        """A ``terminated`` state as the API returns it (what a previous agent reported)."""
        finished = parse_time(term.get("finishedAt"))
        if finished is None:
            raise ValueError(f"terminated container state without finishedAt: {term!r}")
        return cls(int(term.get("exitCode", 0)), term.get("reason") or "", term.get("message"),
                   parse_time(term.get("startedAt")), finished, pid_of(term.get("containerID")))

    def as_status(self) -> dict:
        term: dict = {"exitCode": self.exit_code, "reason": self.reason}
        if self.message:
            term["message"] = self.message
        if self.started_at:
            term["startedAt"] = rfc3339(self.started_at)
        term["finishedAt"] = rfc3339(self.finished_at)
        if self.pid is not None:
            term["containerID"] = f"local://{self.pid}"
        return term


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
    restart_count: int = 0
    last_termination: Termination | None = None

    def running(self, pid: int, at: datetime) -> "ContainerRun":
        """A new instance started. If one ran before, this is a restart: the count goes
        up and the previous instance's end is (or stays) ``lastState``."""
        run = self.restarting() if self.state == TERMINATED else self
        count = run.restart_count + (1 if run.last_termination is not None else 0)
        return replace(run, state=RUNNING, reason="", message=None, pid=pid, started_at=at, finished_at=None,
                       exit_code=None, restart_count=count)

    def terminated(self, exit_code: int, at: datetime, message: str | None) -> "ContainerRun":
        return replace(self, state=TERMINATED, exit_code=exit_code, finished_at=at, message=message,
                       reason="Completed" if exit_code == 0 else "Error")

    def termination(self) -> Termination:
        if self.state != TERMINATED:
            raise ValueError(f"container {self.name!r} is {self.state}, not terminated")
        return Termination(self.exit_code, self.reason, self.message, self.started_at, self.finished_at, self.pid)

    def restarting(self) -> "ContainerRun":
        """The terminated instance is kept as ``lastState``; the container waits to be
        started again (``ContainerCreating`` until the node starts it)."""
        return replace(self, state=WAITING, reason="ContainerCreating", message=None,
                       last_termination=self.termination())

    def backing_off(self, message: str) -> "ContainerRun":
        """Waiting out the restart back-off, reported as kubelet does (CrashLoopBackOff)."""
        return replace(self.restarting(), reason=CRASH_LOOP, message=message)


@dataclass
class PodOutcome:
    """Pod-level facts beside the containers: why the pod was ended, if it was."""

    start_time: datetime | None = None
    reason: str | None = None
    message: str | None = None
    # Force Failed (deadline exceeded, unsupported pod, node shutdown).
    failed: bool = False
    # The node ended the pod (it is being deleted): nothing restarts, so the phase is
    # terminal whatever the restart policy.
    stopped: bool = False
    # The API defaults it to Always; "Never" here keeps a bare PodOutcome() a run-once pod.
    restart_policy: str = "Never"
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
    """kubelet's ``getPhase``: all containers ended is terminal only if nothing will be
    restarted; a container in back-off has run, so the pod is Running, not Pending."""
    if outcome.failed:
        return "Failed"
    if all(r.state == TERMINATED for r in runs):
        succeeded = all(r.exit_code == 0 for r in runs)
        if outcome.stopped or outcome.restart_policy == "Never":
            return "Succeeded" if succeeded else "Failed"
        if outcome.restart_policy == "OnFailure" and succeeded:
            return "Succeeded"
        return "Running"  # the failed ones are about to be restarted
    if any(r.state != WAITING or r.last_termination is not None for r in runs):
        # Containers run one after the other here: once one started the pod is Running
        # until the last one ends (kubelet would run them side by side).
        return "Running"
    return "Pending"


def container_status(run: ContainerRun) -> dict:
    status = {
        "name": run.name,
        "image": run.image,
        "imageID": IMAGE_ID if run.state != WAITING or run.last_termination else "",
        "ready": run.state == RUNNING,
        "started": run.state == RUNNING,
        "restartCount": run.restart_count,
        "lastState": {"terminated": run.last_termination.as_status()} if run.last_termination else {},
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
        status["state"] = {"waiting": None, "running": None, "terminated": run.termination().as_status()}
    return status


def finalize_unstarted(runs: list[ContainerRun], at: datetime) -> list[ContainerRun]:
    """When a pod ends before some containers started, kubelet reports those as
    terminated with ContainerStatusUnknown / 137. A container ended while waiting to be
    restarted reports how its last instance ended."""
    out = []
    for r in runs:
        if r.state == TERMINATED:
            out.append(r)
        elif r.state == WAITING and r.last_termination is not None:
            last = r.last_termination
            out.append(replace(r, state=TERMINATED, exit_code=last.exit_code, reason=last.reason,
                               message=last.message, started_at=last.started_at, finished_at=last.finished_at,
                               pid=last.pid))
        else:
            out.append(replace(
                r, state=TERMINATED, exit_code=137, reason="ContainerStatusUnknown", finished_at=at,
                message="The container could not be located when the pod was terminated",
            ))
    return out


def resumed_runs(containers: list[dict], statuses: list[dict], policy: str, at: datetime) -> list[ContainerRun]:
    """The runs of a pod the node agent restarts in place after it restarted itself,
    from the ``containerStatuses`` the previous agent reported (``at``: now).

    Per container, as kubelet after a reboot: an instance that was running is lost, so it
    becomes ``lastState`` (exit 137, reason NodeAgentRestarted) and the container waits to
    start again (``restartCount`` goes up when it does). One that had exited, or was
    waiting out a back-off, keeps its real last exit and is started again if the policy
    says so; one that ended for good (OnFailure, exit 0) stays terminated and is not run
    again. A container that never ran starts fresh."""
    by_name = {cs.get("name"): cs for cs in statuses or []}
    runs = []
    for container in containers:
        fresh = ContainerRun(container["name"], container.get("image", ""))
        cs = by_name.get(container["name"])
        if cs is None:
            runs.append(fresh)
            continue
        count = int(cs.get("restartCount") or 0)
        state = cs.get("state") or {}
        last = (cs.get("lastState") or {}).get("terminated")
        previous = Termination.from_status(last) if last else None
        if state.get("running") is not None:
            started = parse_time(state["running"].get("startedAt"))
            lost = Termination(LOST_EXIT_CODE, AGENT_RESTARTED, AGENT_RESTARTED_MESSAGE, started, at,
                               pid_of(cs.get("containerID")))
            if should_restart(policy, LOST_EXIT_CODE):
                runs.append(replace(fresh, restart_count=count, last_termination=lost))
            else:
                runs.append(replace(fresh, state=TERMINATED, exit_code=lost.exit_code, reason=lost.reason,
                                    message=lost.message, started_at=lost.started_at, finished_at=at,
                                    pid=lost.pid, restart_count=count, last_termination=previous))
        elif state.get("terminated") is not None:
            ended = Termination.from_status(state["terminated"])
            if should_restart(policy, ended.exit_code):
                runs.append(replace(fresh, restart_count=count, last_termination=ended))
            else:
                runs.append(replace(fresh, state=TERMINATED, exit_code=ended.exit_code, reason=ended.reason,
                                    message=ended.message, started_at=ended.started_at,
                                    finished_at=ended.finished_at, pid=ended.pid, restart_count=count,
                                    last_termination=previous))
        else:
            # Waiting: never started (no lastState), or in a back-off after a real exit.
            runs.append(replace(fresh, restart_count=count, last_termination=previous))
    return runs


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
