"""What the informers delivered: tasks by key, their Jobs and pods grouped by task.

Mutated only on the event loop (the informers deliver there), read by the reconciler's
workers on the same loop, so it needs no locks. A finished task whose status will not
change again (views.is_compact) keeps no Jobs or pods here: nothing decides on them any
more, and finished tasks are most of what exists (they stay a day by default).
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

from . import views
from .views import JobView, PodView, TaskView

Key = tuple[str, str]
JOBS = "jobs"
PODS = "pods"


class Cache:
    def __init__(self) -> None:
        self._tasks: dict[Key, TaskView] = {}
        self._children: dict[str, dict[Key, dict[Key, dict[str, Any]]]] = {JOBS: {}, PODS: {}}
        self._owner: dict[str, dict[Key, Key]] = {JOBS: {}, PODS: {}}

    # ------------------------------------------------------------ tasks

    def task(self, key: Key) -> Optional[TaskView]:
        return self._tasks.get(key)

    def task_keys(self) -> list[Key]:
        return list(self._tasks)

    def task_views(self) -> list[TaskView]:
        """A snapshot of every task view (list() of a dict runs under the GIL in one C
        call, so the metrics thread may take it while the event loop mutates the cache)."""
        return list(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)

    def put_task(self, key: Key, view: TaskView) -> bool:
        """Keep a task's view; False when it equals the one kept (the watch delivering our
        own write after the write-through put it here), so nobody decides on it again."""
        previous = self._tasks.get(key)
        self._tasks[key] = view
        if previous == view:
            return False
        if views.is_compact(view):
            for kind in (JOBS, PODS):
                for child in list(self._children[kind].get(key, {})):
                    self.drop_child(kind, child)
        return True

    def drop_task(self, key: Key) -> None:
        self._tasks.pop(key, None)

    # ------------------------------------------------------------ Jobs and pods

    def put_child(self, kind: str, key: Key, owner: Key, view: JobView | PodView) -> bool:
        """Keep a Job or pod under its task; False when nothing that decisions read changed
        (the same view but for its resourceVersion: most of a pod's updates), or nothing is
        kept because the task is finished for good."""
        previous = self._owner[kind].get(key)
        if previous is not None and previous != owner:
            self.drop_child(kind, key)
        task = self._tasks.get(owner)
        if task is not None and views.is_compact(task):
            self.drop_child(kind, key)
            return False
        self._owner[kind][key] = owner
        group = self._children[kind].setdefault(owner, {})
        before = group.get(key)
        group[key] = view
        return before is None or _decided_on(before) != _decided_on(view)

    def drop_child(self, kind: str, key: Key) -> Optional[Key]:
        owner = self._owner[kind].pop(key, None)
        if owner is not None:
            group = self._children[kind].get(owner)
            if group is not None:
                group.pop(key, None)
                if not group:
                    del self._children[kind][owner]
        return owner

    def job(self, task: Key) -> Optional[JobView]:
        for view in self._children[JOBS].get(task, {}).values():
            return view
        return None

    def has_job(self, task: Key) -> bool:
        return bool(self._children[JOBS].get(task))

    def pods(self, task: Key) -> list[PodView]:
        return list(self._children[PODS].get(task, {}).values())

    def prune(self) -> int:
        """Drop the Jobs and pods of finished tasks (children may be listed before their
        task); returns how many were dropped."""
        dropped = 0
        for kind in (JOBS, PODS):
            for owner in list(self._children[kind]):
                task = self._tasks.get(owner)
                if task is not None and views.is_compact(task):
                    for child in list(self._children[kind].get(owner, {})):
                        self.drop_child(kind, child)
                        dropped += 1
        return dropped

    def counts(self) -> dict[str, int]:
        return {"tasks": len(self._tasks), JOBS: len(self._owner[JOBS]), PODS: len(self._owner[PODS])}

    def __iter__(self) -> Iterator[Key]:
        return iter(list(self._tasks))


def _decided_on(view: dict[str, Any]) -> dict[str, Any]:
    """A child's view less what changes without calling for a decision: its
    resourceVersion, and a Job's startTime (set once, with the first pod; read only as
    a fallback start by the decision that the Job's end itself brings)."""
    metadata = {k: v for k, v in (view.get("metadata") or {}).items() if k != "resourceVersion"}
    status = view.get("status")
    if isinstance(status, dict) and "startTime" in status:
        status = {k: v for k, v in status.items() if k != "startTime"}
        return {**view, "metadata": metadata, "status": status}
    return {**view, "metadata": metadata}
