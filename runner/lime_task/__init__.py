"""Lime Task: asynchronous tasks for Python applications, run natively on Kubernetes.

Public API (see lime_task.api for configuration and namespaces):

- `@task` / `@task(name=..., retries=..., timeout_seconds=..., ttl_seconds_after_finished=...)`
- `send_task(task_name, app, *args, **kwargs) -> TaskStatus`
- `send_task_with_options(task_name, app, args=(), kwargs=None, *, timeout_seconds=None,
  retries=None, image=None, resources=None, ttl_seconds_after_finished=None, namespace=None)`
- `get_status(task_id, app_name, namespace=None) -> TaskStatus`
- `TaskStatus` (`id`, `status`, `result`, `error`, `is_completed()`, `to_dict()`, `wait()`)
- `NotFoundError`, `InvalidTaskError`
- `Application`: the default application object the runner passes to tasks

The API-server half (send_task, get_status, TaskStatus) is imported on first use: task
modules and the runner only need `@task`, and every task pod would otherwise pay for
importing the kubernetes client at start-up.
"""

from typing import Any

from .apps import Application
from .errors import InvalidTaskError, NotFoundError
from .tasks import task

_LAZY = {"TaskStatus", "get_status", "send_task", "send_task_with_options"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'lime_task' has no attribute {name!r}")


__all__ = [
    "Application",
    "InvalidTaskError",
    "NotFoundError",
    "TaskStatus",
    "get_status",
    "send_task",
    "send_task_with_options",
    "task",
]
