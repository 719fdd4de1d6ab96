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
"""

from .api import TaskStatus, get_status, send_task, send_task_with_options
from .apps import Application
from .errors import InvalidTaskError, NotFoundError
from .tasks import task

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
