"""Client mode: the library talks to the Lime Task HTTP API instead of the API server.

When env LIME_TASK_API_URL is set (e.g. ``http://lime-task-api.lime-tasks.svc:8080``),
`send_task`, `send_task_with_options`, `get_status`, `TaskStatus.wait` and the CLI go
through the API (lime_task.api dispatches here): same results, same errors
(`InvalidTaskError` before anything is sent, `NotFoundError` for a missing or another
application's task, `TimeoutError`), same CLI exit codes. The caller then needs no RBAC
on LimeTasks; the API decides which applications its credential may act for
(docs/http-api.md).

The bearer token: env LIME_TASK_API_TOKEN, else the file named by
LIME_TASK_API_TOKEN_FILE, else DEFAULT_TOKEN_FILE if it exists (the projected
ServiceAccount token the chart documents, refreshed by the kubelet: read on every
request, never cached). The namespace is the API's own: LIME_TASK_NAMESPACE does not
apply, and an explicit `namespace=` (`-n`) is sent along and refused by the API (422,
so InvalidTaskError) unless it is the one the API serves.

Only the standard library (urllib): an application that installs lime-task gets no HTTP
client dependency for this.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from . import run_options
from .constants import STATES
from .errors import InvalidTaskError, NotFoundError

ENV_API_URL = "LIME_TASK_API_URL"
ENV_API_TOKEN = "LIME_TASK_API_TOKEN"
ENV_API_TOKEN_FILE = "LIME_TASK_API_TOKEN_FILE"
# Where the chart's example mounts a projected ServiceAccount token with the API's
# audience (docs/http-api.md); a pod without it sends no token and gets a clear 401.
DEFAULT_TOKEN_FILE = Path("/var/run/secrets/lime-task/token")
# One long poll asks for at most this long (the API's maxWaitSeconds default is 60);
# the HTTP timeout adds REQUEST_SLACK_SECONDS so a dead connection cannot hang a waiter.
WAIT_ROUND_SECONDS = 30
REQUEST_SLACK_SECONDS = 15
REQUEST_TIMEOUT_SECONDS = 30
# Object names are DNS subdomains; anything else cannot be a task id (as lime_task.api).
_TASK_ID = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def api_url() -> Optional[str]:
    """The API's base URL (no trailing slash), or None: client mode is off."""
    url = os.environ.get(ENV_API_URL, "").strip()
    return url.rstrip("/") or None


def token() -> Optional[str]:
    """The bearer token (see the module docstring for where it comes from), or None."""
    explicit = os.environ.get(ENV_API_TOKEN, "").strip()
    if explicit:
        return explicit
    path = os.environ.get(ENV_API_TOKEN_FILE, "").strip()
    candidate = Path(path) if path else DEFAULT_TOKEN_FILE
    try:
        return candidate.read_text(encoding="utf-8").strip() or None
    except OSError as error:
        if path:  # a file named explicitly must be there
            raise _api_error(f"cannot read the API token file {path} ({ENV_API_TOKEN_FILE}): "
                             f"{error.strerror or error}") from None
        return None


def _api_error(message: str) -> Exception:
    """lime_task.kube.LimeTaskApiError: what callers (and the CLI's exit code 5) already
    handle for an API server that cannot do what was asked."""
    from .kube import LimeTaskApiError

    return LimeTaskApiError(message)


def request(method: str, path: str, body: Any = None, query: Optional[Mapping[str, Any]] = None,
            timeout: float = REQUEST_TIMEOUT_SECONDS) -> tuple[int, Any]:
    """(status, decoded JSON body) of one API call. 404 -> NotFoundError, 400/413/415/422
    -> InvalidTaskError with the API's message (and field), any other failure ->
    LimeTaskApiError naming the URL and what the API said."""
    base = api_url()
    if base is None:
        raise _api_error(f"{ENV_API_URL} is not set")
    url = base + path
    if query:
        url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    headers = {"Accept": "application/json"}
    bearer = token()
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    data = None
    if body is not None:
        data = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
        headers["Content-Type"] = "application/json"
    prepared = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(prepared, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        status, payload = error.code, error.read()
        error.close()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise _api_error(f"cannot reach the Lime Task API at {base}: {reason}") from None
    try:
        problem = (json.loads(payload) or {}).get("error") or {}
    except (ValueError, AttributeError):
        problem = {}
    message = problem.get("message") or f"HTTP {status}"
    if status == 404:
        raise NotFoundError(message)
    if status in (400, 413, 415, 422):
        field = problem.get("field")
        raise InvalidTaskError(f"the Lime Task API refused the task: {message}" + (f" (field {field})" if field else ""))
    raise _api_error(f"the Lime Task API at {base} answered {status}: {message}")


def _status(view: Mapping[str, Any]) -> Any:
    from .api import TaskStatus

    return TaskStatus(view["id"], view.get("status") or "PENDING", view.get("result"),
                      view.get("error") if view.get("status") == "FAILURE" else None,
                      app=view.get("app"), namespace=view.get("namespace"))


def send(spec: Any, args: Sequence[Any], kwargs: Mapping[str, Any], namespace: Optional[str]) -> Any:
    """POST /v1/tasks for a spec `lime_task.sending.build_spec` already accepted (so a
    refusal happens before any request, as in direct mode): a PENDING TaskStatus."""
    wire = spec.to_wire()  # the run options by their spec names, which the body's options use
    body = {"task": spec.task, "app": spec.app, "args": list(args), "kwargs": dict(kwargs),
            "options": {option.wire: wire[option.wire] for option in run_options.OPTIONS if option.wire in wire}}
    _, view = request("POST", "/v1/tasks", body, query={"namespace": namespace})
    return _status(view)


def _not_found(task_id: Any, app: str) -> NotFoundError:
    return NotFoundError(f"no task {task_id!r} for app {app!r}")


def get_view(task_id: Any, app: str, namespace: Optional[str] = None, **query: Any) -> dict[str, Any]:
    """The API's view of the task (GET /v1/tasks/{id}?app=); NotFoundError as get_status."""
    if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
        raise _not_found(task_id, app)
    timeout = REQUEST_TIMEOUT_SECONDS + (query.get("wait") or 0)
    try:
        _, view = request("GET", f"/v1/tasks/{urllib.parse.quote(task_id, safe='')}",
                          query={"app": app, "namespace": namespace, **query}, timeout=timeout)
    except NotFoundError:
        raise _not_found(task_id, app) from None
    return view


def get_status(task_id: Any, app: str, namespace: Optional[str] = None) -> Any:
    return _status(get_view(task_id, app, namespace))


def read_task(task_id: Any, app: str, namespace: Optional[str] = None) -> dict[str, Any]:
    """The task as a LimeTask-shaped dict built from the API's view (what the CLI's
    `status` reads through lime_task.cli_output.view_of)."""
    return as_object(get_view(task_id, app, namespace))


def as_object(view: Mapping[str, Any]) -> dict[str, Any]:
    """A LimeTask-shaped dict of an API view. The result is already the task's value
    (floats restored by the API), so no resultFloatPaths go with it."""
    status = {key: view.get(key) for key in ("result", "error", "reason", "message", "attempts", "startedAt",
                                             "finishedAt", "duration") if view.get(key) is not None}
    status["state"] = view.get("status") or "PENDING"
    return {
        "metadata": {"name": view["id"], "namespace": view.get("namespace") or "",
                     "creationTimestamp": view.get("createdAt")},
        "spec": {"task": view.get("task") or "", "app": view.get("app") or ""},
        "status": status,
    }


def wait(status: Any, timeout: Optional[float], on_change: Optional[Callable[[Any], Any]]) -> Any:
    """TaskStatus.wait through the API: long polls (GET ?wait=&changedFrom=) until the
    task is terminal; each change of state updates `status` (and calls on_change).
    TimeoutError and NotFoundError exactly as the direct wait."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not status.is_completed():
        remaining = WAIT_ROUND_SECONDS if deadline is None else min(WAIT_ROUND_SECONDS, deadline - time.monotonic())
        if remaining <= 0:
            raise TimeoutError(f"task {status.id} ({status.app}) did not complete within {timeout}s; "
                               f"last state {status.status}")
        try:
            view = get_view(status.id, status.app, wait=math.ceil(remaining * 1000) / 1000,
                            changedFrom=status.status if status.status in STATES else None)
        except NotFoundError:
            raise NotFoundError(f"task {status.id} ({status.app}) was deleted before it completed; "
                                f"last state {status.status}") from None
        status._update(_status(view), on_change)
    return status


def list_views(app: Optional[str], state: Optional[str], namespace: Optional[str] = None) -> list[dict[str, Any]]:
    """Every view the caller may see (following `continue`), filtered by app and state."""
    views: list[dict[str, Any]] = []
    token_: Optional[str] = None
    while True:
        _, page = request("GET", "/v1/tasks", query={"app": app, "state": state, "namespace": namespace,
                                                             "limit": 500, "continue": token_})
        views.extend(page.get("items") or [])
        token_ = page.get("continue")
        if not token_:
            return views


def cancel(task_id: Any, app: str, namespace: Optional[str] = None) -> dict[str, Any]:
    """DELETE /v1/tasks/{id}: the deleted task's last view; NotFoundError as get_status."""
    if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
        raise _not_found(task_id, app)
    try:
        _, view = request("DELETE", f"/v1/tasks/{urllib.parse.quote(task_id, safe='')}",
                          query={"app": app, "namespace": namespace})
    except NotFoundError:
        raise _not_found(task_id, app) from None
    return view


__all__ = ["api_url", "cancel", "get_status", "list_views", "read_task", "send", "token", "wait"]
