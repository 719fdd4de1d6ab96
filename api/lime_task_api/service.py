"""The API's operations and the rule they keep: a caller sees and touches only the
tasks of the applications its credential may act for.

Why apart from the HTTP layer: the ownership rule (spec.app, never a label or a
client-supplied name alone) and the waiting logic are plain blocking functions over an
injected backend (lime_task_api.kube in production, a fake in unit tests); `app.py`
only turns HTTP into calls and exceptions into status codes.

Every "no" about a task is `TaskNotFound` with one message that depends only on the id
asked for, whether the task does not exist, belongs to another application, or the id
cannot even be an object name: a caller cannot probe for other applications' ids.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Protocol

from lime_task.constants import STATES, TERMINAL_STATES

from . import bodies

# Object names are DNS subdomains (as lime_task.api checks).
_TASK_ID = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
MAX_LIST_LIMIT = 500
DEFAULT_LIST_LIMIT = 100


class TaskNotFound(Exception):
    """HTTP 404: no such task for this caller (same message for every reason)."""


class Forbidden(Exception):
    """HTTP 403: a valid credential that may not act for the application asked for."""


class ListExpired(Exception):
    """HTTP 410: the continue token expired; list again from the start."""


class Backend(Protocol):
    """The Kubernetes calls the service needs (lime_task_api.kube + lime_task.kube)."""

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...
    def get(self, namespace: str, name: str) -> Optional[dict[str, Any]]: ...
    def list_page(self, namespace: str, apps: tuple[str, ...], limit: int,
                  continue_token: Optional[str]) -> tuple[list[dict[str, Any]], Optional[str]]: ...
    def delete(self, namespace: str, name: str, uid: str) -> bool: ...
    def watch(self, namespace: str, name: str, version: str, seconds: int) -> Iterator[tuple[str, dict[str, Any]]]: ...


class WatchExpired(Exception):
    """Raised by a backend's watch for 410 Gone: read again and re-watch."""


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: its identity and the applications it may act for
    (never empty: a credential for no application is refused with 403 before)."""

    identity: str
    apps: tuple[str, ...]

    def choose_app(self, requested: Optional[str]) -> str:
        """The application a new task is for: `requested` if the caller may act for
        it (else Forbidden), or the caller's only application (else 422 naming app)."""
        if requested is not None:
            if requested not in self.apps:
                raise Forbidden(f"this credential may not act for application {requested!r}")
            return requested
        if len(self.apps) == 1:
            return self.apps[0]
        raise bodies.RequestProblem(
            422, "InvalidTask",
            f"this credential may act for several applications ({', '.join(self.apps)}); name one in app",
            "app",
        )

    def readable_apps(self, requested: Optional[str]) -> tuple[str, ...]:
        """The applications whose tasks a read may return: `requested` alone (if the
        caller may act for it, else Forbidden), else all of the caller's."""
        if requested is None:
            return self.apps
        if requested not in self.apps:
            raise Forbidden(f"this credential may not act for application {requested!r}")
        return (requested,)


def check_namespace(requested: Optional[str], served: str) -> None:
    """A request may name the namespace it expects (the library sends an explicit
    `namespace=` / `-n`); one the API does not serve is refused (422 naming it), never
    silently replaced."""
    if requested is not None and requested != served:
        raise bodies.RequestProblem(422, "InvalidTask", f"this API serves namespace {served!r}, not {requested!r}",
                                    "namespace")


def not_found(task_id: str) -> TaskNotFound:
    return TaskNotFound(f"no task {task_id!r}")


class TaskService:
    """Create, read, wait for, list and cancel the caller's tasks in one namespace.

    Blocking (Kubernetes client calls); the HTTP layer runs each call in a worker
    thread. `clock` is time.monotonic unless a test gives another.
    """

    def __init__(self, backend: Backend, namespace: str, max_body_bytes: int, max_wait_seconds: int,
                 new_id: Callable[[], str], clock: Callable[[], float] = time.monotonic) -> None:
        self.backend, self.namespace = backend, namespace
        self.max_body_bytes, self.max_wait_seconds = max_body_bytes, max_wait_seconds
        self._new_id, self._clock = new_id, clock

    # -- create -------------------------------------------------------------------------

    def create(self, caller: Caller, raw_body: bytes) -> dict[str, Any]:
        """POST /v1/tasks: the new task's view (PENDING). RequestProblem for a bad
        body (nothing is created), Forbidden for an app the caller may not use."""
        from lime_task.sending import build_task_object

        new = bodies.parse_new_task(bodies.decode_json(raw_body, self.max_body_bytes))
        app = caller.choose_app(new.app)
        spec = bodies.build(new, app)
        created = self.backend.create(self.namespace, build_task_object(spec, self._new_id(), self.namespace))
        return bodies.task_view(created)

    # -- read and wait ------------------------------------------------------------------

    def _read_own(self, caller_apps: tuple[str, ...], task_id: str) -> dict[str, Any]:
        if not _TASK_ID.fullmatch(task_id):
            raise not_found(task_id)
        obj = self.backend.get(self.namespace, task_id)
        # spec.app (immutable, schema-checked) decides ownership, not the label.
        if obj is None or (obj.get("spec") or {}).get("app") not in caller_apps:
            raise not_found(task_id)
        return obj

    def get(self, caller: Caller, task_id: str, app: Optional[str] = None, wait: Optional[float] = None,
            changed_from: Optional[str] = None) -> dict[str, Any]:
        """GET /v1/tasks/{id}: the task's view. With `wait` (seconds, at most
        max_wait_seconds), answer once the task is terminal, or, with `changed_from`,
        once its state is another one, or when `wait` has passed (with the state then).
        TaskNotFound if it is not the caller's, or is deleted while waiting."""
        if changed_from is not None and changed_from not in STATES:
            raise bodies.RequestProblem(422, "InvalidTask", f"changedFrom must be one of {', '.join(STATES)}, "
                                        f"got {changed_from!r}", "changedFrom")
        apps = caller.readable_apps(app)
        obj = self._read_own(apps, task_id)
        view = bodies.task_view(obj)
        if not wait:
            return view
        deadline = self._clock() + min(wait, self.max_wait_seconds)
        while not self._done(view, changed_from):
            remaining = deadline - self._clock()
            if remaining <= 0:
                return view
            try:
                view = self._watch_until(task_id, obj["metadata"]["resourceVersion"], view, deadline, changed_from)
                if self._done(view, changed_from):
                    return view
            except WatchExpired:
                pass
            # The watch ended (its window or a 410): read again, then watch from there.
            obj = self._read_own(apps, task_id)
            view = bodies.task_view(obj)
        return view

    @staticmethod
    def _done(view: dict[str, Any], changed_from: Optional[str]) -> bool:
        return view["status"] in TERMINAL_STATES or (changed_from is not None and view["status"] != changed_from)

    def _watch_until(self, task_id: str, version: str, view: dict[str, Any], deadline: float,
                     changed_from: Optional[str]) -> dict[str, Any]:
        seconds = max(1, math.ceil(deadline - self._clock()))
        for kind, obj in self.backend.watch(self.namespace, task_id, version, seconds):
            if kind == "DELETED":
                # The event carries the task's last state: one deleted as soon as it
                # finished (a TTL after finishing of 0) ends the wait with its outcome.
                final = bodies.task_view(obj) if (obj.get("spec") or {}).get("app") == view.get("app") else None
                if final is not None and final["status"] in TERMINAL_STATES:
                    return final
                raise not_found(task_id)
            if kind == "BOOKMARK":
                continue
            view = bodies.task_view(obj)
            if self._done(view, changed_from) or self._clock() >= deadline:
                return view
        return view

    # -- list ---------------------------------------------------------------------------

    def list(self, caller: Caller, app: Optional[str] = None, state: Optional[str] = None,
             task: Optional[str] = None, limit: Optional[int] = None,
             continue_token: Optional[str] = None) -> dict[str, Any]:
        """GET /v1/tasks: ``{"items": [views], "continue": token or null}``.

        One page of the API server's list (at most `limit` objects, in its order), of
        which the caller's tasks matching `state` and `task` are returned: a page may
        hold fewer than `limit` items, even none, while `continue` is set. Follow
        `continue` until it is null to see every task."""
        if state is not None and state not in STATES:
            raise bodies.RequestProblem(422, "InvalidTask", f"state must be one of {', '.join(STATES)}, got {state!r}",
                                        "state")
        apps = caller.readable_apps(app)
        items, token = self.backend.list_page(self.namespace, apps, limit or DEFAULT_LIST_LIMIT, continue_token)
        views = []
        for obj in items:
            if (obj.get("spec") or {}).get("app") not in apps:
                continue  # a label that says otherwise does not make it the caller's
            if task is not None and (obj.get("spec") or {}).get("task") != task:
                continue
            view = bodies.task_view(obj)
            if state is None or view["status"] == state:
                views.append(view)
        return {"items": views, "continue": token}

    # -- cancel -------------------------------------------------------------------------

    def cancel(self, caller: Caller, task_id: str, app: Optional[str] = None) -> dict[str, Any]:
        """DELETE /v1/tasks/{id}: delete the task (its Job and pod go with it, by owner
        references) and return its last view with ``"deleted": true``. TaskNotFound
        if it is not the caller's or already gone."""
        obj = self._read_own(caller.readable_apps(app), task_id)
        if not self.backend.delete(self.namespace, task_id, obj["metadata"]["uid"]):
            raise not_found(task_id)
        return {**bodies.task_view(obj), "deleted": True}
