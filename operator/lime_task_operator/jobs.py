"""The Job that runs one LimeTask: a pure builder, testable without a cluster.

Everything the operator decides about a task's pod lives here (name, image, limits,
security), so the handlers only ship the resulting dict to the API server.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Mapping

from pydantic import ValidationError

# The task-id label (a cut of long names, so not unique) and the full-name annotation
# that decides which task a Job or pod is for: shared with `lime-task logs`.
from lime_task.children import ANNOTATION_TASK_NAME, task_label  # noqa: F401 - task_label re-exported
from lime_task.constants import (
    API_VERSION,
    ENV_NAMESPACE,
    ENV_TASK,
    KIND,
    LABEL_APP,
    LABEL_MANAGED_BY,
    LABEL_TASK_ID,
    MANAGED_BY,
    TERMINATION_MESSAGE_PATH,
)
from lime_task.models import LimeTaskSpec, describe_errors
from lime_task.termination import NON_RETRIABLE_EXIT_CODES

from .settings import Settings

JOB_NAME_PREFIX = "lt-"
# Job names end up in the pods' `job-name` label, whose values are at most 63 characters.
JOB_NAME_MAX = 63
CONTAINER_NAME = "task"
RUNNER_COMMAND = ["python", "-m", "lime_task.runner"]
# The runner base image (docker/Dockerfile.runner) creates this user ("nonroot", the
# distroless convention); images built FROM it keep a home and files it can read.
RUN_AS_USER = 65532


class InvalidTask(ValueError):
    """The task passed the CRD schema but the operator refuses to run it.

    It ends as FAILURE with reason InvalidTask; retrying cannot help, so it never is.
    """


def job_name(task_name: str) -> str:
    """The deterministic Job name for a task.

    Deterministic so that a restarted operator finds the Job it created before (409 on
    create) instead of creating a second one. Long names, and names with dots (legal for
    a LimeTask, awkward in pod host names), are cut and made unique by a hash suffix.
    """
    plain = JOB_NAME_PREFIX + task_name
    if len(plain) <= JOB_NAME_MAX and "." not in task_name:
        return plain
    digest = hashlib.sha256(task_name.encode()).hexdigest()[:10]
    stem = re.sub(r"[^a-z0-9-]", "-", task_name.lower())
    stem = stem[: JOB_NAME_MAX - len(JOB_NAME_PREFIX) - len(digest) - 1].strip("-")
    return f"{JOB_NAME_PREFIX}{stem}-{digest}" if stem else f"{JOB_NAME_PREFIX}{digest}"


def parse_spec(task_obj: Mapping[str, Any]) -> LimeTaskSpec:
    """The task's spec as the shared model; InvalidTask names what is wrong with it."""
    try:
        spec = LimeTaskSpec.model_validate(task_obj.get("spec") or {})
    except ValidationError as error:
        raise InvalidTask(f"invalid spec: {describe_errors(error, 'spec')}") from None
    try:
        spec.check_arguments_size()
    except ValueError as error:
        raise InvalidTask(str(error)) from None
    return spec


def image_allowed(image: str, entries: tuple[str, ...]) -> bool:
    """Whether `image` matches one of `entries` (LIME_TASK_OPERATOR_ALLOWED_IMAGES).

    An entry ending in "/" allows every image under that registry path
    ("registry.local/team/"); any other entry is one repository, allowed with any tag or
    digest ("registry.local/runner" allows "registry.local/runner:1.2" and
    "registry.local/runner@sha256:…", not "registry.local/runner-evil"). Plain string
    prefixes would let "registry.local" match "registry.local.attacker.example/x".
    """
    for entry in entries:
        if entry.endswith("/"):
            if image.startswith(entry):
                return True
        elif image == entry or image.startswith((entry + ":", entry + "@")):
            return True
    return False


def resolve_image(spec: LimeTaskSpec, settings: Settings) -> str:
    """The image to run: the task's own (if allowed), the app's, or the default.

    Secure by default: whoever may create a LimeTask must not gain the power to run any
    image in the namespace (RBAC may deny them Jobs and pods). A task may name an image
    only if it is one the operator is configured with (DEFAULT_IMAGE, APP_IMAGES) or
    matches ALLOWED_IMAGES (image_allowed); with ALLOWED_IMAGES empty, only the
    configured ones. The operator's own configuration is trusted, a task's spec is
    user input. Raises InvalidTask naming the rule.
    """
    configured = {image for image in (settings.default_image, *settings.app_images.values()) if image}
    if spec.image:
        if spec.image in configured or image_allowed(spec.image, settings.allowed_images):
            return spec.image
        allowed = ", ".join(settings.allowed_images) if settings.allowed_images else "none"
        raise InvalidTask(
            f"image {spec.image!r} is not allowed: a task may name only the operator's configured images "
            f"(DEFAULT_IMAGE, APP_IMAGES) or one matching LIME_TASK_OPERATOR_ALLOWED_IMAGES (now: {allowed})"
        )
    image = settings.app_images.get(spec.app) or settings.default_image
    if not image:
        raise InvalidTask(
            f"no image configured for app {spec.app!r}: set the operator's "
            "LIME_TASK_OPERATOR_APP_IMAGES or LIME_TASK_OPERATOR_DEFAULT_IMAGE (or spec.image, if allowed)"
        )
    return image


def pod_failure_policy() -> dict[str, Any]:
    """The Job's podFailurePolicy: fail the Job at once on the runner's non-retriable
    exit codes (lime_task.termination.NON_RETRIABLE_EXIT_CODES: CouldNotLoad,
    InvalidResult), since the same spec fails the same way again.

    Every other failure - the task raised, the pod was evicted (DisruptionTarget), the
    container was OOM-killed, the pod was deleted or its node lost - counts against
    `retries` (the Job's default action, Count). Disruptions are deliberately not
    `Ignore`d: Ignore would start another pod even with retries=0, running a task that
    may have done half its work a second time without the user having asked for it.
    """
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER_NAME,
                    "operator": "In",
                    "values": [int(code) for code in NON_RETRIABLE_EXIT_CODES],
                },
            }
        ]
    }


def build_job(task_obj: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The batch/v1 Job for a LimeTask; raises InvalidTask if the task cannot run."""
    metadata = task_obj.get("metadata") or {}
    name = metadata.get("name")
    namespace = metadata.get("namespace")
    uid = metadata.get("uid")
    if not (name and namespace and uid):
        raise InvalidTask("the LimeTask has no name, namespace or uid")
    spec = parse_spec(task_obj)
    image = resolve_image(spec, settings)

    labels = {LABEL_TASK_ID: task_label(name), LABEL_APP: spec.app, LABEL_MANAGED_BY: MANAGED_BY}
    annotations = {ANNOTATION_TASK_NAME: name}
    runner_input = {
        "id": name,
        "task": spec.task,
        "app": spec.app,
        "args": spec.args,
        "kwargs": spec.kwargs,
        "namespace": namespace,
    }
    ours = {
        ENV_TASK: json.dumps(runner_input, separators=(",", ":")),
        ENV_NAMESPACE: namespace,
    }
    # EXTRA_ENV comes first and never overrides what the runner needs to find its task.
    env = [{"name": k, "value": v} for k, v in settings.extra_env.items() if k not in ours]
    env += [{"name": k, "value": v} for k, v in ours.items()]

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "command": list(RUNNER_COMMAND),
        "env": env,
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            # Python writes byte-code caches and temp files; a read-only root breaks tasks.
            "readOnlyRootFilesystem": False,
        },
    }
    if spec.resources and (spec.resources.limits or spec.resources.requests):
        container["resources"] = {
            key: {k: str(v) for k, v in value.items()}
            for key, value in (("limits", spec.resources.limits), ("requests", spec.resources.requests))
            if value
        }

    job_spec: dict[str, Any] = {
        "backoffLimit": spec.retries,
        "podFailurePolicy": pod_failure_policy(),
        # A replacement pod is only created once the failed one has fully terminated,
        # so two copies of one task never run side by side (an evicted or deleted pod
        # may run on for its grace period). It is also the only value the Job API
        # accepts together with a podFailurePolicy (and its default there): explicit,
        # so that the rule is visible and survives if the policy ever goes.
        "podReplacementPolicy": "Failed",
        "template": {
            "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": RUN_AS_USER,
                    "runAsGroup": RUN_AS_USER,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
            },
        },
    }
    if settings.task_service_account:
        job_spec["template"]["spec"]["serviceAccountName"] = settings.task_service_account
    if spec.timeout_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.timeout_seconds

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }


def owner_uid(job: Mapping[str, Any]) -> str | None:
    """The uid of the LimeTask that controls this Job, if any."""
    owner = _owner(job)
    return owner.get("uid") if owner else None


def _owner(job: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in (job.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("controller"):
            return ref
    return None


def owner_name(job: Mapping[str, Any]) -> str | None:
    """The name of the LimeTask that controls this Job, if any."""
    owner = _owner(job)
    return owner.get("name") if owner else None


def foreign_job(job: Mapping[str, Any], owner_exists: bool) -> str | None:
    """Why a Job found at a task's Job name, but controlled by no LimeTask of that uid,
    can never become the task's (a message naming it), or None while it may still go away.

    ``owner_exists``: the LimeTask that controls the Job still exists (same uid). Such a
    Job stays: two names map to one Job name (job_name cuts and hashes some names). One
    without a LimeTask controller stays too: orphaned (``kubectl delete
    --cascade=orphan``) or made by someone else. One being deleted, or whose task is gone,
    is removed by the garbage collector, so it is worth waiting for.
    """
    metadata = job.get("metadata") or {}
    name = metadata.get("name")
    if metadata.get("deletionTimestamp"):
        return None
    owner = _owner(job)
    if owner is None:
        return (f"Job {name} exists and no LimeTask controls it (orphaned by `kubectl delete "
                "--cascade=orphan`, or made by someone else); delete it, then send the task again")
    if owner_exists:
        return (f"Job {name} belongs to LimeTask {owner.get('name')}, whose name maps to the same "
                "Job name; send this task under another name")
    return None


