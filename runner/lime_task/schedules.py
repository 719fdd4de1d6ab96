"""LimeTaskSchedules from Python: create, read, suspend, resume, delete, run now.

A LimeTaskSchedule (crds/limetaskschedule.yaml, docs/schedules.md) makes the operator
start an ordinary LimeTask from its ``taskTemplate`` at every due time of its cron
schedule. This module builds schedule bodies and the task of a run (pure: the operator
builds its runs with `task_for_run` too, so a scheduled and a run-now task look alike)
and talks to the API server through lime_task.kube.

Errors: an unknown schedule raises NotFoundError; a body the API server refuses raises
InvalidTaskError with its message; no API server LimeTaskApiError.
"""

from __future__ import annotations

import copy
import secrets
from datetime import datetime
from typing import Any, Mapping, Optional, Sequence

from pydantic import ValidationError

from . import kube, run_options, timestamps
from .constants import (ANNOTATION_INSTANTIATE, ANNOTATION_SCHEDULED_AT, API_VERSION, KIND, LABEL_APP,
                        LABEL_SCHEDULE, SCHEDULE_KIND)
from .errors import InvalidTaskError, NotFoundError
from .models import LimeTaskSpec, describe_errors

POLICIES = ("Allow", "Forbid", "Replace")


def template_problem(template: Any) -> Optional[str]:
    """Why a taskTemplate cannot make a valid LimeTask (the checks send_task and the
    operator apply to a task's spec: schema, kwargs names, exact values, the 32 KiB
    argument limit), or None when it can."""
    if not isinstance(template, Mapping):
        return "taskTemplate must be an object"
    try:
        spec = LimeTaskSpec.model_validate(dict(template))
        spec.check_arguments_size()
    except ValidationError as error:
        return describe_errors(error, "taskTemplate")
    except ValueError as error:
        return str(error)
    return None


def task_for_run(schedule: Mapping[str, Any], name: str, scheduled_at: Optional[datetime]) -> dict[str, Any]:
    """The LimeTask body of one run of `schedule` (a LimeTaskSchedule as stored).

    ``scheduled_at`` None means run-now (annotated ``instantiate: manual``). The task is
    owned by the schedule (controller reference: deleting the schedule deletes its
    tasks) and labelled with the schedule and app names; its spec is the template as
    stored (floatPaths included, so floats arrive as floats).
    """
    metadata = schedule.get("metadata") or {}
    template = copy.deepcopy((schedule.get("spec") or {}).get("taskTemplate") or {})
    annotations = ({ANNOTATION_SCHEDULED_AT: timestamps.format_time(scheduled_at)}
                   if scheduled_at is not None else {ANNOTATION_INSTANTIATE: "manual"})
    labels = {LABEL_SCHEDULE: metadata.get("name", "")}
    if isinstance(template.get("app"), str):
        labels[LABEL_APP] = template["app"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": metadata.get("namespace"),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": API_VERSION,
                "kind": SCHEDULE_KIND,
                "name": metadata.get("name"),
                "uid": metadata.get("uid"),
                "controller": True,
                # False: true would need `update` on limetaskschedules/finalizers (the
                # OwnerReferencesPermissionEnforcement admission plugin) for the operator
                # and every run-now caller; it only matters for foreground deletion.
                "blockOwnerDeletion": False,
            }],
        },
        "spec": template,
    }


def build_schedule(name: str, schedule: str, task: str, app: str, args: Sequence[Any] = (),
                   kwargs: Optional[Mapping[str, Any]] = None, *, time_zone: Optional[str] = None,
                   concurrency_policy: Optional[str] = None, starting_deadline_seconds: Optional[int] = None,
                   suspend: bool = False, successful_history: Optional[int] = None,
                   failed_history: Optional[int] = None, **options: Any) -> dict[str, Any]:
    """A LimeTaskSchedule body. `options` are the run options of each task (keywords of
    lime_task.run_options). The template is checked as send_task checks a task
    (InvalidTaskError naming the field; TypeError for an unknown option); the cron
    expression and time zone are checked by the API server (shape) and the operator
    (values, reported in the Ready condition).
    """
    run_options.check_names("build_schedule()", options)
    if concurrency_policy is not None and concurrency_policy not in POLICIES:
        raise InvalidTaskError(f"concurrency policy {concurrency_policy!r} is not one of {', '.join(POLICIES)}")
    try:
        spec = LimeTaskSpec(task=task, app=app, args=list(args), kwargs=dict(kwargs or {}),
                            **run_options.given(options))
        spec.check_arguments_size()
    except ValidationError as error:
        raise InvalidTaskError(f"invalid task template: {describe_errors(error, 'template')}") from None
    except ValueError as error:
        raise InvalidTaskError(f"invalid task template: {error}") from None
    body: dict[str, Any] = {"schedule": schedule, "suspend": suspend, "taskTemplate": spec.to_wire()}
    optional = {"timeZone": time_zone, "concurrencyPolicy": concurrency_policy,
                "startingDeadlineSeconds": starting_deadline_seconds,
                "successfulTasksHistoryLimit": successful_history, "failedTasksHistoryLimit": failed_history}
    body.update({key: value for key, value in optional.items() if value is not None})
    return {"apiVersion": API_VERSION, "kind": SCHEDULE_KIND, "metadata": {"name": name}, "spec": body}


run_options.with_option_keywords(build_schedule)


def run_now_name(schedule_name: str) -> str:
    """``<schedule>-manual-<5 random characters>``: never one of the schedule's
    ``<schedule>-<minutes>`` names, so run-now cannot take a due time's place."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return f"{schedule_name}-manual-{''.join(secrets.choice(alphabet) for _ in range(5))}"


# ------------------------------------------------------------------ API (lime_task.kube)


def _namespace(namespace: Optional[str]) -> tuple[kube.Connection, str]:
    from .api import resolve_namespace

    connection = kube.connect()
    return connection, resolve_namespace(namespace, connection)


def create_schedule(body: Mapping[str, Any], namespace: Optional[str] = None) -> dict[str, Any]:
    """Create a LimeTaskSchedule; the stored object. InvalidTaskError if refused."""
    connection, namespace = _namespace(namespace)
    return kube.create_schedule(connection, namespace, dict(body))


def get_schedule(name: str, namespace: Optional[str] = None) -> dict[str, Any]:
    """The LimeTaskSchedule `name`; NotFoundError if there is none."""
    connection, namespace = _namespace(namespace)
    found = kube.get_schedule(connection, namespace, name)
    if found is None:
        raise NotFoundError(f"no LimeTaskSchedule {name!r} in namespace {namespace!r}")
    return found


def list_schedules(namespace: Optional[str] = None) -> list[dict[str, Any]]:
    """The namespace's LimeTaskSchedules, sorted by name."""
    connection, namespace = _namespace(namespace)
    return sorted(kube.list_schedules(connection, namespace), key=lambda s: s["metadata"]["name"])


def set_suspend(name: str, suspend: bool, namespace: Optional[str] = None) -> dict[str, Any]:
    """Suspend (True) or resume (False) a schedule; the stored object."""
    connection, namespace = _namespace(namespace)
    patched = kube.patch_schedule(connection, namespace, name, {"spec": {"suspend": suspend}})
    if patched is None:
        raise NotFoundError(f"no LimeTaskSchedule {name!r} in namespace {namespace!r}")
    return patched


def delete_schedule(name: str, namespace: Optional[str] = None) -> None:
    """Delete a schedule; its tasks (finished or not: unfinished ones are cancelled) go
    with it through the garbage collector. NotFoundError if there is none."""
    connection, namespace = _namespace(namespace)
    if not kube.delete_schedule(connection, namespace, name):
        raise NotFoundError(f"no LimeTaskSchedule {name!r} in namespace {namespace!r}")


def run_now(name: str, namespace: Optional[str] = None, task_name: Optional[str] = None) -> dict[str, Any]:
    """Start one run of the schedule immediately, whatever its schedule, suspension or
    concurrency policy say (as `kubectl create job --from=cronjob/NAME`); the created
    LimeTask. It belongs to the schedule like its other runs (history, deletion)."""
    schedule = get_schedule(name, namespace)
    problem = template_problem((schedule.get("spec") or {}).get("taskTemplate"))
    if problem:
        raise InvalidTaskError(f"schedule {name!r} cannot start a task: {problem}")
    body = task_for_run(schedule, task_name or run_now_name(name), None)
    connection = kube.connect()
    return kube.create_task(connection, schedule["metadata"]["namespace"], body)


def belongs_to_schedule(schedule_name: str, task_id: str) -> bool:
    """Whether `task_id` names a run of schedule `schedule_name`: ``<name>-<minutes>``
    (schedule.task_name in the operator) or ``<name>-manual-<5 characters>`` (run-now).

    For event consumers: an event carries the task id, not its labels. Exact, so the
    runs of a schedule named ``nightly-eu`` are not taken for those of ``nightly``.
    """
    prefix = f"{schedule_name}-"
    if not task_id.startswith(prefix):
        return False
    rest = task_id[len(prefix):]
    if rest.isascii() and rest.isdigit():
        return True
    return rest.startswith("manual-") and len(rest) == len("manual-") + 5 and rest[7:].isalnum()
