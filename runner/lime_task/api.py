"""The public Python API: send a task, read its status, wait for it.

    from lime_task import task, send_task, get_status, NotFoundError

    status = send_task("my_package.tasks.add", my_app, 1, 2)    # PENDING
    status = get_status(status.id, "my-app")                    # any time later
    status.wait(timeout=60)                                     # watch until done

Kubernetes configuration: KUBECONFIG if set, else the in-cluster service account when
running in a pod, else ~/.kube/config (see lime_task.kube).

Namespace: the `namespace=` argument, else env LIME_TASK_NAMESPACE, else the current
kubeconfig context's namespace, else the pod's service-account namespace, else
"default" (see lime_task.config).

Client mode: when env LIME_TASK_API_URL is set, the same functions go through the Lime
Task HTTP API instead (lime_task.http_client), with the same results and errors.

Run options (timeout, retries, image, resources, TTL) cannot be keyword arguments of
`send_task`, because its **kwargs go to the task function, as in the original API. Use
`send_task_with_options(...)`, or give defaults in `@task(retries=..., ...)`.
"""

from __future__ import annotations

import math
import os
import re
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from . import http_client, kube, run_options, values
from .config import choose_namespace
from .constants import ENV_NAMESPACE, TERMINAL_STATES
from .errors import NotFoundError
from .sending import app_name_of, build_spec, build_task_object, new_task_id, task_name_and_options

# Object names are DNS subdomains; anything else cannot be a task id.
_TASK_ID = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# Length of one watch request when waiting without a timeout: watches are re-opened
# regularly so a silently dropped connection cannot hang a waiter forever.
_WATCH_WINDOW_SECONDS = 300


def resolve_namespace(explicit: Optional[str], connection: kube.Connection) -> str:
    """The namespace to work in (see lime_task.config for the order)."""
    return choose_namespace(
        explicit,
        os.environ.get(ENV_NAMESPACE),
        connection.context_namespace,
        connection.service_account_namespace,
    )


class TaskStatus:
    """A task's id, state (PENDING, STARTED, SUCCESS, FAILURE), result and error.

    A task the operator has not looked at yet has no status: that reads as PENDING.
    """

    def __init__(
        self,
        id: str,
        status: str = "PENDING",
        result: Any = None,
        error: Optional[dict[str, Any]] = None,
        *,
        app: Optional[str] = None,
        namespace: Optional[str] = None,
    ) -> None:
        self.id = id
        self.status = status
        self.result = result
        self.error = error
        self.app = app
        self.namespace = namespace

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> "TaskStatus":
        """Read a LimeTask as returned by the API server (kube.get_task).

        Raises kube.LimeTaskApiError if its result was too deep to decode (only a status
        written by something other than the operator can be): a result is never
        returned altered."""
        status = obj.get("status") or {}
        state = status.get("state") or "PENDING"
        result = values.status_result(status) if state == "SUCCESS" else None
        cut = values.cut_place(result, "result")
        if cut:
            raise kube.LimeTaskApiError(
                f"task {obj['metadata']['name']}: {cut} is nested deeper than {values.DECODE_MAX_DEPTH} "
                "levels and cannot be read"
            )
        return cls(
            id=obj["metadata"]["name"],
            status=state,
            result=result,
            error=status.get("error") if state == "FAILURE" else None,
            app=(obj.get("spec") or {}).get("app"),
            namespace=obj["metadata"].get("namespace"),
        )

    def is_completed(self) -> bool:
        """True once the task reached SUCCESS or FAILURE (a state that never changes again)."""
        return self.status in TERMINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        """The original API's shape: exactly id, status and result."""
        return {"id": self.id, "status": self.status, "result": self.result}

    def _update(self, other: "TaskStatus", on_change: Optional[Callable[["TaskStatus"], Any]] = None) -> None:
        changed = other.status != self.status
        self.status, self.result, self.error = other.status, other.result, other.error
        if changed and on_change is not None:
            on_change(self)

    def wait(
        self,
        timeout: Optional[float] = None,
        on_change: Optional[Callable[["TaskStatus"], Any]] = None,
    ) -> "TaskStatus":
        """Block until the task completes; update this object and return it.

        Uses a Kubernetes watch on this one task (no polling). `timeout` in seconds,
        None waits for ever. Raises TimeoutError naming the task and its last state,
        NotFoundError if the task is deleted (or cancelled) while waiting.
        `on_change`, if given, is called with this object whenever the state changes
        while waiting (the CLI reports progress with it).
        """
        if self.is_completed():
            return self
        if self.app is None:
            raise ValueError("this TaskStatus does not know its app; get it with get_status() first")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout}")
        if http_client.api_url():  # client mode: long polls of the HTTP API
            return http_client.wait(self, timeout, on_change)
        deadline = None if timeout is None else time.monotonic() + timeout
        connection = kube.connect()
        namespace = self.namespace or resolve_namespace(None, connection)
        while True:
            # A fresh read gives the state and the resourceVersion to watch from, so no
            # change between the read and the watch is missed.
            obj = _read_own(connection, namespace, self.id, self.app)
            self._update(TaskStatus.from_object(obj), on_change)
            if self.is_completed():
                return self
            try:
                self._watch(connection, namespace, obj["metadata"]["resourceVersion"], deadline, on_change)
                return self
            except kube.WatchExpired:
                continue
            except TimeoutError:
                raise TimeoutError(
                    f"task {self.id} ({self.app}) did not complete within {timeout}s; "
                    f"last state {self.status}"
                ) from None

    def _watch(
        self,
        connection: kube.Connection,
        namespace: str,
        version: str,
        deadline: Optional[float],
        on_change: Optional[Callable[["TaskStatus"], Any]] = None,
    ) -> None:
        while True:
            if deadline is None:
                window = _WATCH_WINDOW_SECONDS
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                window = max(1, math.ceil(remaining))
            for kind, obj in kube.watch_task(connection, namespace, self.id, version, window):
                if kind == "DELETED":
                    # The event carries the task's last state: one deleted as soon as it
                    # finished (a TTL after finishing of 0) ends the wait with its outcome.
                    if (obj.get("spec") or {}).get("app") == self.app:
                        final = TaskStatus.from_object(obj)
                        if final.is_completed():
                            self._update(final, on_change)
                            return
                    raise NotFoundError(
                        f"task {self.id} ({self.app}) was deleted before it completed; last state {self.status}"
                    )
                if kind == "BOOKMARK":
                    continue
                version = obj["metadata"]["resourceVersion"]
                self._update(TaskStatus.from_object(obj), on_change)
                if self.is_completed():
                    return

    def __repr__(self) -> str:
        return f"TaskStatus(id={self.id!r}, status={self.status!r}, result={self.result!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskStatus):
            return NotImplemented
        return (self.id, self.status, self.result, self.error) == (other.id, other.status, other.result, other.error)


def _not_found(task_id: Any, app_name: str, namespace: str) -> NotFoundError:
    return NotFoundError(f"no task {task_id!r} for app {app_name!r} in namespace {namespace!r}")


def _read_own(connection: kube.Connection, namespace: str, task_id: str, app_name: str) -> dict[str, Any]:
    """The task if it exists AND belongs to app_name; else NotFoundError, same message."""
    if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
        raise _not_found(task_id, app_name, namespace)
    obj = kube.get_task(connection, namespace, task_id)
    # spec.app (immutable, schema-checked) decides ownership, not the label, which
    # anyone allowed to update the object could change.
    if obj is None or (obj.get("spec") or {}).get("app") != app_name:
        raise _not_found(task_id, app_name, namespace)
    return obj


def send_task_with_options(
    task_name: Any,
    app: Any,
    args: Sequence[Any] = (),
    kwargs: Optional[Mapping[str, Any]] = None,
    *,
    namespace: Optional[str] = None,
    **options: Any,
) -> TaskStatus:
    """Send a task with run options; returns its PENDING TaskStatus.

    `task_name` is the dotted path of a @task function (or the function itself); the
    run options (keywords, lime_task.run_options) left as None fall back to its @task
    defaults when the sending process imported it, else to the cluster's defaults.
    Raises TypeError for an unknown keyword, and InvalidTaskError (a ValueError) naming
    the problem, before creating anything, for arguments that are not JSON, too large
    (lime_task.constants.MAX_ARGUMENTS_BYTES) or otherwise invalid.

    Run options:
{options}
    """
    run_options.check_names("send_task_with_options()", options)
    name, defaults = task_name_and_options(task_name)
    app_name = app_name_of(app)
    spec = build_spec(name, app_name, args, kwargs, defaults=defaults, **options)
    if http_client.api_url():  # client mode: the HTTP API creates it (checked above, the same way)
        return http_client.send(spec, args, kwargs or {}, namespace)
    connection = kube.connect()
    target = resolve_namespace(namespace, connection)
    created = kube.create_task(connection, target, build_task_object(spec, new_task_id(), target))
    return TaskStatus.from_object(created)


run_options.with_option_keywords(send_task_with_options)
send_task_with_options.__doc__ = (send_task_with_options.__doc__ or "").replace("{options}", run_options.options_doc())


def send_task(task_name: Any, app: Any, *args: Any, **kwargs: Any) -> TaskStatus:
    """Send `task_name(app, *args, **kwargs)` to run asynchronously; returns PENDING.

    The original signature: every keyword argument goes to the task. For run options
    or another namespace use `send_task_with_options`.
    """
    return send_task_with_options(task_name, app, args, kwargs)


def get_status(task_id: str, app_name: Any, namespace: Optional[str] = None) -> TaskStatus:
    """The task's current status. NotFoundError if there is no such task for this app.

    A task of another application gets the same NotFoundError as a missing id.
    """
    if http_client.api_url():  # client mode
        return http_client.get_status(task_id, app_name_of(app_name), namespace)
    return TaskStatus.from_object(read_task(task_id, app_name, namespace))


def read_task(task_id: str, app_name: Any, namespace: Optional[str] = None) -> dict[str, Any]:
    """The task's LimeTask object as the API server returns it (the CLI shows more than
    TaskStatus holds); NotFoundError exactly as `get_status`."""
    app_name = app_name_of(app_name)
    if http_client.api_url():  # client mode: a LimeTask-shaped dict of the API's view
        return http_client.read_task(task_id, app_name, namespace)
    connection = kube.connect()
    return _read_own(connection, resolve_namespace(namespace, connection), task_id, app_name)
