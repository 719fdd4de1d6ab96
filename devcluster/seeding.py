"""Many LimeTasks at once, for the scale test and benchmark (test infrastructure).

Finished tasks are made the quick way: create the object, then write the status an
operator would have written (SUCCESS, event confirmed) through the status subresource.
No Job or pod is made for them, so a thousand take seconds, not the minutes that
running them would. Queued tasks are plain creations (no status).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Iterable

from lime_task.constants import GROUP, PLURAL, VERSION

THREADS = 8


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def finished_status(name: str, uid: str) -> dict[str, Any]:
    """The status of a task that succeeded and whose event the broker confirmed."""
    now = _now()
    return {
        "state": "SUCCESS",
        "reason": "Completed",
        "result": {"sum": 5},
        "startedAt": now,
        "finishedAt": now,
        "duration": "<1s",
        "attempts": 1,
        "jobName": f"lt-{name}"[:63],
        "event": {"routingKey": "core.task.sample_tasks.tasks.add.success.v1",
                  "messageId": f"{uid}.success", "confirmedAt": now},
        "conditions": [
            {"type": "Succeeded", "status": "True", "reason": "Completed",
             "message": "the task returned a result", "lastTransitionTime": now},
            {"type": "EventPublished", "status": "True", "reason": "Published",
             "message": "event confirmed by the broker", "lastTransitionTime": now},
        ],
    }


def task_body(namespace: str, name: str, task: str, args: list, app: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LimeTask",
            "metadata": {"name": name, "namespace": namespace, "labels": {"limetask.dev/app": app}},
            "spec": {"task": task, "app": app, "args": args}}


def create_finished(api_client: Any, namespace: str, names: Iterable[str], app: str = "seed") -> int:
    """Create SUCCESS tasks with their event confirmed (no Job, no pod); returns how many."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api_client)

    def one(name: str) -> None:
        created = custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, task_body(namespace, name, "sample_tasks.tasks.add", [2, 3], app))
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name,
            {"status": finished_status(name, created["metadata"]["uid"])})

    names = list(names)
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, names))
    return len(names)


def create_queued(api_client: Any, namespace: str, names: Iterable[str], task: str, args: list,
                  app: str = "seed") -> list[str]:
    """Create tasks with no status (what `kubectl create` makes); returns their names."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api_client)
    names = list(names)
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda name: custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, task_body(namespace, name, task, args, app)), names))
    return names
