"""The parts of LimeTasks, Jobs and pods the reconciler keeps in memory, and why.

The informers reduce every object to one of these views as soon as it is parsed; the
raw body is dropped. What a view keeps is what some decision reads, nothing more, so
the operator's memory grows with the number of objects by a small, documented amount
(docs/architecture.md, "What the operator keeps in memory"):

- a task that is finished and whose event is confirmed (or events are disabled and the
  task says so): only what the TTL clean-up reads (`compact`); this is the common case,
  since finished tasks stay for a day by default;
- any other task: metadata, spec and status, except `args`/`kwargs` larger than
  ``INLINE_ARGUMENTS_BYTES`` (the reconciler reads the task fresh before building its
  Job), so ten thousand queued tasks do not hold ten thousand argument lists;
- a task whose arguments nest deeper than ``MAX_ARGUMENT_DEPTH`` keeps no arguments at
  all and carries the refusal in ``invalid`` (it ends as InvalidTask);
- Jobs: metadata, owner references and the status fields decisions read (conditions,
  pod counts, startTime); pods: metadata and the status fields the verdict reads (the
  termination message included: a succeeded pod's report is the task's result; a
  container that waits to be created is kept as not reported yet). An update that
  changes nothing kept starts no reconcile pass (cache.put_child). Only unfinished tasks' Jobs and pods are kept (cache.py), so this
  grows with the tasks running, not with those that exist.

Each view is a plain dict detached from the parsed body, safe to read from any worker.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional, TypedDict

# The task's full name on its Jobs and pods (a label value holds only 63 characters):
# lime_task.children; ANNOTATION_TASK_NAME stays importable from here.
from lime_task.children import ANNOTATION_TASK_NAME, task_name_of  # noqa: F401
from lime_task.constants import TERMINAL_STATES

from .attempts import STUCK_WAITING_REASONS

# Key = (namespace, name)
Key = tuple[str, str]


class MetadataView(TypedDict, total=False):
    """The metadata kept of any object (no labels, annotations or managedFields)."""

    name: str
    namespace: str
    uid: str
    resourceVersion: str
    generation: int
    creationTimestamp: str
    deletionTimestamp: str
    ownerReferences: list[dict[str, Any]]  # Jobs only


class TaskView(TypedDict, total=False):
    """A LimeTask as kept: `spec`/`status` in the API's camelCase; `compact` (finished and
    settled: only the TTL's fields), `invalid` (why it can never run), `argumentsOmitted`
    (args/kwargs not kept: read the task before building its Job)."""

    metadata: MetadataView
    spec: dict[str, Any]
    status: dict[str, Any]
    compact: bool
    invalid: str
    argumentsOmitted: bool


class JobView(TypedDict):
    """A Job of ours as kept: metadata with owner references, and the Job status fields
    decisions read (``_JOB_STATUS`` and the conditions)."""

    metadata: MetadataView
    status: dict[str, Any]


class PodStatusView(TypedDict, total=False):
    phase: Optional[str]
    reason: Optional[str]
    message: Optional[str]
    conditions: list[dict[str, Any]]  # type, status, reason, message: DisruptionTarget, PodScheduled not True
    containerStatuses: list[dict[str, Any]]  # name, state, lastState, restartCount


class PodView(TypedDict):
    """A pod of ours as kept: metadata and the status fields the verdict reads."""

    metadata: MetadataView
    status: PodStatusView

# A marker key on compact views: nothing may build a status patch from them.
COMPACT = "compact"
# args+kwargs kept inline when their compact JSON is at most this many bytes.
INLINE_ARGUMENTS_BYTES = 4096
# Nesting the operator accepts in args/kwargs (lists and objects; a scalar is depth 0).
# Far below Python's recursion limit, so nothing downstream (copying, validation,
# JSON encoding for the pod) can overflow; real arguments are a few levels deep.
MAX_ARGUMENT_DEPTH = 100

# What decisions read of a Job's status (transitions.py): its conditions (Complete,
# Failed, FailureTarget; lastTransitionTime dates a Job-decided end), the pod counts and
# startTime. Not kept: active, ready, terminating, completionTime: updates that change only
# those (about one Job event per task) then compare equal and start no reconcile pass.
_JOB_STATUS = ("failed", "succeeded", "uncountedTerminatedPods", "startTime")
# The pod conditions decisions read (attempts.py): an eviction's DisruptionTarget and the
# scheduler's PodScheduled=False/Unschedulable; PodScheduled=True, Initialized,
# ContainersReady, Ready and PodReadyToStartContainers change on every start and decide
# nothing, so they are not kept (each was a reconcile pass per task).
_META = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
         "deletionTimestamp")
_SPEC_SMALL = ("task", "app", "timeoutSeconds", "retries", "image", "resources", "ttlSecondsAfterFinished")


def _metadata(body: Mapping[str, Any]) -> MetadataView:
    metadata = body.get("metadata") or {}
    return {key: metadata[key] for key in _META if metadata.get(key) is not None}


def depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value (scalars 0, ``[]`` 1, ``[[1]]`` 2), counted without
    recursion and giving up at ``limit + 1``, so any body the API server accepted can be
    measured."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            level += 1
            if level > deepest:
                deepest = level
                if deepest > limit:
                    return deepest
            stack.extend((child, level) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def event_settled(status: Mapping[str, Any], events_enabled: bool) -> bool:
    """Whether nothing more will be written to a finished task's status: its event is
    confirmed, or events are disabled and the task already says so."""
    if (status.get("event") or {}).get("confirmedAt"):
        return True
    for condition in status.get("conditions") or []:
        if condition.get("type") == "EventPublished" and condition.get("status") == "False":
            # InvalidEvent: can never be published (status.event_abandoned).
            if condition.get("reason") == "InvalidEvent":
                return True
            if condition.get("reason") == "EventsDisabled" and not events_enabled:
                return True
    return False


def task_view(body: Mapping[str, Any], events_enabled: bool = True) -> TaskView:
    """The view of a LimeTask (see the module docstring for what each kind keeps)."""
    spec = body.get("spec") or {}
    status = dict(body.get("status") or {})
    small = {key: spec[key] for key in _SPEC_SMALL if key in spec}
    if status.get("state") in TERMINAL_STATES and event_settled(status, events_enabled):
        kept = {key: status[key] for key in ("state", "reason", "finishedAt", "event") if key in status}
        kept["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") == "EventPublished"]
        return {"metadata": _metadata(body), "spec": small, "status": kept, COMPACT: True}
    view: dict[str, Any] = {"metadata": _metadata(body), "spec": small, "status": status}
    args, kwargs = spec.get("args", []), spec.get("kwargs", {})
    if status.get("state") in TERMINAL_STATES:
        return view  # arguments are only needed to start the task
    deepest = max(depth(args, MAX_ARGUMENT_DEPTH), depth(kwargs, MAX_ARGUMENT_DEPTH))
    if deepest > MAX_ARGUMENT_DEPTH:
        view["invalid"] = (f"spec.args/spec.kwargs nest more than {MAX_ARGUMENT_DEPTH} levels deep "
                           f"(the limit for task arguments)")
        return view
    if len(json.dumps([args, kwargs, spec.get("floatPaths")], separators=(",", ":"))) <= INLINE_ARGUMENTS_BYTES:
        view["spec"]["args"] = args
        view["spec"]["kwargs"] = kwargs
        if "floatPaths" in spec:  # where the integral floats are (lime_task.values)
            view["spec"]["floatPaths"] = spec["floatPaths"]
    else:
        view["argumentsOmitted"] = True
    return view


def is_compact(task: Mapping[str, Any]) -> bool:
    return bool(task.get(COMPACT))


def task_key_of_child(body: Mapping[str, Any]) -> Optional[Key]:
    """The task a Job or pod of ours belongs to: the full-name annotation, else the label."""
    metadata = body.get("metadata") or {}
    name = task_name_of(metadata)
    if not name:
        return None
    return (metadata.get("namespace") or "", name)


def job_view(body: Mapping[str, Any]) -> JobView:
    metadata = _metadata(body)
    metadata["ownerReferences"] = list((body.get("metadata") or {}).get("ownerReferences") or [])
    status = body.get("status") or {}
    kept = {key: status[key] for key in _JOB_STATUS if key in status}
    if "conditions" in status:
        kept["conditions"] = [{k: v for k, v in c.items() if k != "lastProbeTime"} for c in status["conditions"] or []]
    return {"metadata": metadata, "status": kept}


def _not_started(status: Mapping[str, Any]) -> bool:
    """A container that has never run and waits for a reason no decision reads (e.g.
    ContainerCreating): kept as if kubelet had not reported it yet, so that this report
    starts no reconcile pass. Stuck reasons (attempts.STUCK_WAITING_REASONS) are kept."""
    state = status.get("state") or {}
    return (list(state) == ["waiting"] and not status.get("restartCount") and not status.get("lastState")
            and (state["waiting"] or {}).get("reason") not in STUCK_WAITING_REASONS)


def _container_status(status: Mapping[str, Any]) -> dict[str, Any]:
    kept = {"name": status.get("name"), "state": dict(status.get("state") or {}),
            "restartCount": status.get("restartCount", 0)}
    if status.get("lastState"):
        kept["lastState"] = dict(status["lastState"])
    return kept


def pod_view(body: Mapping[str, Any]) -> PodView:
    status = body.get("status") or {}
    return {
        "metadata": _metadata(body),
        "status": {
            "phase": status.get("phase"),
            "reason": status.get("reason"),
            "message": status.get("message"),
            "conditions": [
                {k: c.get(k) for k in ("type", "status", "reason", "message") if c.get(k) is not None}
                for c in status.get("conditions") or []
                if c.get("type") == "DisruptionTarget" or (c.get("type") == "PodScheduled" and c.get("status") != "True")
            ],
            "containerStatuses": [_container_status(c) for c in status.get("containerStatuses") or []
                                  if not _not_started(c)],
        },
    }
