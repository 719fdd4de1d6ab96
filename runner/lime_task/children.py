"""Which Jobs and pods belong to a task: the label to select them by, and the check that
what a selector returned really is the task's.

A label value holds at most 63 characters (Kubernetes label syntax), a LimeTask's name up
to 253, so the task-id label of a long name is a cut of it plus a hash, and that cut is
itself a valid name another task may have. A selector by label therefore finds a superset;
the full name, in the ``limetask.dev/task-name`` annotation the operator puts on every Job
and pod it makes, decides. Shared by the operator and the CLI (``lime-task logs``).
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

from .constants import LABEL_TASK_ID

LABEL_VALUE_MAX = 63
ANNOTATION_TASK_NAME = "limetask.dev/task-name"


def task_label(task_name: str) -> str:
    """The value of the task-id label on the task's Job and pods: the name itself when it
    fits a label value (at most 63 characters), else a cut of it plus a 10-hex-digit hash
    suffix, so that a valid 253-character object name never makes an invalid label. Not
    unique: select by it, then keep what ``belongs_to`` the task."""
    if len(task_name) <= LABEL_VALUE_MAX:
        return task_name
    digest = hashlib.sha256(task_name.encode()).hexdigest()[:10]
    stem = task_name[: LABEL_VALUE_MAX - len(digest) - 1].rstrip("-.")
    return f"{stem}-{digest}"


def task_name_of(metadata: Mapping[str, Any]) -> str | None:
    """The name of the task a Job or pod with this ``metadata`` (a dict, camelCase as the
    API server sends it) was made for: its full-name annotation or, for one made before
    the annotation existed (0.1.0), its task-id label; None without either."""
    return ((metadata.get("annotations") or {}).get(ANNOTATION_TASK_NAME)
            or (metadata.get("labels") or {}).get(LABEL_TASK_ID) or None)


def belongs_to(metadata: Mapping[str, Any], task_name: str) -> bool:
    """True if the Job or pod with this ``metadata`` was made for the task named
    ``task_name`` (``task_name_of``)."""
    return task_name_of(metadata) == task_name
