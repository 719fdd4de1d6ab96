"""The parts of LimeTasks, Jobs and pods the reconciler keeps in memory.

kopf's indexes hold these copies. Only what decisions need is kept (no managedFields,
no pod specs), so memory stays small with thousands of tasks, and each copy is a plain
dict detached from kopf's body, safe to read from any worker.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

_META = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
         "deletionTimestamp", "labels")


def _metadata(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata") or {}
    return {key: copy.deepcopy(metadata[key]) for key in _META if metadata.get(key) is not None}


def task_view(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "metadata": _metadata(body),
        "spec": copy.deepcopy(dict(body.get("spec") or {})),
        "status": copy.deepcopy(dict(body.get("status") or {})),
    }


def job_view(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = _metadata(body)
    metadata["ownerReferences"] = copy.deepcopy(list((body.get("metadata") or {}).get("ownerReferences") or []))
    return {"metadata": metadata, "status": copy.deepcopy(dict(body.get("status") or {}))}


def pod_view(body: Mapping[str, Any]) -> dict[str, Any]:
    status = body.get("status") or {}
    return {
        "metadata": _metadata(body),
        "status": {
            "phase": status.get("phase"),
            "reason": status.get("reason"),
            "containerStatuses": copy.deepcopy(list(status.get("containerStatuses") or [])),
        },
    }
