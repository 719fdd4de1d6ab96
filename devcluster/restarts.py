"""Pure logic: whether a container that exited is started again, and after how long.

kubelet never gives up on a container of a pod whose ``restartPolicy`` says restart: it
starts it again *in the same pod*, pausing longer after each crash (CrashLoopBackOff).
The pod stays Running, so its controller (a ReplicaSet, a Job) sees no reason to create a
replacement. Without this the local node failed such pods and a crashing Deployment made
a new pod per crash (1771 pods in 2 minutes).

The back-off copies kubelet's ``flowcontrol.Backoff`` as ``kuberuntime`` uses it:

- the first exit is restarted at once (there is no back-off entry yet; restarting
  creates one of 10 s);
- each later exit waits the current back-off, and the restart doubles it, up to 5 min;
- an instance that ran longer than 10 min (twice the maximum) expired the entry: its
  exit is treated like a first one (restarted at once, the back-off starts again at 10 s).

So a container that exits at once is started at t=0, 0, 10, 30, 70, 150, 310, 610, ...
seconds. Jitter is left out: one node, nothing to spread.

When the node agent itself restarts (``scripts/cluster down`` then ``up``), the processes
of the pods bound to it are gone, as after a node reboot. ``after_agent_restart`` decides
what happens to each such pod: kubelet starts the containers of a pod whose policy
restarts them again in the same pod (back-off forgotten, as it lives in kubelet's memory);
a ``Never`` pod that had started must not run twice (a task never runs twice), so it fails.
"""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_BACKOFF = 10.0
MAX_BACKOFF = 300.0
# kubelet forgets the back-off of a container whose last run lasted this long.
RESET_AFTER = 2 * MAX_BACKOFF

ALWAYS, ON_FAILURE, NEVER = "Always", "OnFailure", "Never"
POLICIES = (ALWAYS, ON_FAILURE, NEVER)

# A container instance whose process vanished with the node agent: kubelet reports such
# an instance as killed (128 + SIGKILL), so OnFailure restarts it too.
LOST_EXIT_CODE = 137
# What the node agent does, when it starts, with a live pod bound to it that it did not start.
RUN, RESTART, FAIL = "run", "restart", "fail"


def should_restart(policy: str, exit_code: int) -> bool:
    """kubelet's rule: Always restarts every exit, OnFailure only a non-zero one, Never none."""
    if policy not in POLICIES:
        raise ValueError(f"restartPolicy must be one of {', '.join(POLICIES)}, got {policy!r}")
    return policy == ALWAYS or (policy == ON_FAILURE and exit_code != 0)


def after_agent_restart(policy: str, started: bool) -> str:
    """For a pod bound to this node, not terminal and not being deleted, that the node
    agent finds when it starts: RUN a pod that never started (nothing of it ran yet),
    RESTART its containers in the same pod when its policy restarts a lost instance
    (Always, OnFailure), FAIL a ``Never`` pod that started: its process is gone and
    running it again could run a task twice."""
    if not started:
        if policy not in POLICIES:
            raise ValueError(f"restartPolicy must be one of {', '.join(POLICIES)}, got {policy!r}")
        return RUN
    return RESTART if should_restart(policy, LOST_EXIT_CODE) else FAIL


@dataclass(frozen=True)
class Restart:
    """What to do after an exit that is restarted: wait ``delay`` seconds (0: start now),
    then remember ``backoff`` for the next exit."""

    delay: float
    backoff: float


def next_restart(backoff: float | None, ran_seconds: float) -> Restart:
    """The wait before restarting a container that ran ``ran_seconds`` and exited, given
    the back-off remembered from its previous restart (None before the first one)."""
    if backoff is None or ran_seconds > RESET_AFTER:
        return Restart(0.0, INITIAL_BACKOFF)
    return Restart(backoff, min(backoff * 2, MAX_BACKOFF))


def go_duration(seconds: float) -> str:
    """A whole number of seconds as Go's ``time.Duration`` prints it (``40s``,
    ``2m40s``, ``5m0s``), so our messages read exactly like kubelet's."""
    total = int(round(seconds))
    minutes, secs = divmod(total, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def backoff_message(delay: float, container: str, pod: str, namespace: str, uid: str) -> str:
    """kubelet's CrashLoopBackOff message (``format.Pod`` is ``name_namespace(uid)``)."""
    return (f"back-off {go_duration(delay)} restarting failed container={container} "
            f"pod={pod}_{namespace}({uid})")
