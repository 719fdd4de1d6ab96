"""The ASGI application (Starlette): routes, authentication, HTTP status codes.

Starlette rather than FastAPI: the API has six routes whose request rules must be the
library's own (lime_task.sending, reached through lime_task_api.bodies), not a second
set derived from type hints, and whose errors must have one shape; FastAPI's automatic
validation and error bodies would be worked around rather than used. Starlette (with
uvicorn, both maintained by the Encode/Kludex maintainers, released monthly, 1.x API)
gives routing, streaming responses and exception handlers with few dependencies.

Status codes: 201 created, 200 otherwise; 400 a body that is not JSON, 401 no or a bad
credential (with ``WWW-Authenticate: Bearer``), 403 a credential that may act for no
(or not this) application, 404 no such task for the caller (one body for every
reason), 405, 410 an expired continue token, 413 a body over the limit, 415 a body
that is not application/json, 422 a rule broken (the field named), 503 the Kubernetes
API server is unreachable or refused the API itself (with Retry-After).
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Optional

import anyio.to_thread
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import bodies
from .auth import Authenticator, Unauthenticated, bearer_token
from .openapi import document
from .service import Caller, Forbidden, ListExpired, TaskNotFound, TaskService, check_namespace
from .settings import Settings

log = logging.getLogger("lime_task_api")

# Worker threads for the blocking Kubernetes calls; a long poll holds one for up to
# maxWaitSeconds, so this bounds the concurrent waiters (anyio's default is 40).
WORKER_THREADS = 128
# An SSE stream re-polls at most this long per round and sends a comment line between
# rounds, so proxies see traffic and a closed connection is noticed.
SSE_ROUND_SECONDS = 25


def _error(status: int, code: str, message: str, field: Optional[str] = None,
           headers: Optional[dict[str, str]] = None) -> JSONResponse:
    return JSONResponse(bodies.error_body(code, message, field), status_code=status, headers=headers)


def error_response(error: BaseException) -> JSONResponse:
    """The response for an exception an operation raised (see the module docstring)."""
    from lime_task.errors import InvalidTaskError

    from .kube import unavailable_reason

    if isinstance(error, bodies.RequestProblem):
        return _error(error.status, error.code, error.message, error.field)
    if isinstance(error, Unauthenticated):
        return _error(401, "Unauthorized", str(error), headers={"WWW-Authenticate": 'Bearer realm="lime-task"'})
    if isinstance(error, Forbidden):
        return _error(403, "Forbidden", str(error))
    if isinstance(error, TaskNotFound):
        return _error(404, "NotFound", str(error))
    if isinstance(error, ListExpired):
        return _error(410, "Gone", str(error), "continue")
    if isinstance(error, InvalidTaskError):  # the API server's own schema refused it
        return _error(422, "InvalidTask", str(error))
    reason = unavailable_reason(error)
    if reason is not None:
        log.warning("%s", reason)
        return _error(503, "Unavailable", reason, headers={"Retry-After": "1"})
    raise error


def _charset(parameters: str) -> "str | None":
    """The charset parameter of a Content-Type's parameters (lowercase, unquoted), if any."""
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it passes `limit` bytes (only `limit` bytes are kept;
    the rest is read and thrown away up to DRAIN_BYTES, so that the client reads the 413
    instead of a connection reset), and with 415 unless it is declared application/json."""
    declared_type = request.headers.get("content-type", "")
    media_type, _, parameters = declared_type.partition(";")
    media_type = media_type.strip().lower()
    if media_type != "application/json":
        raise bodies.RequestProblem(415, "UnsupportedMediaType",
                                    f"the body must be application/json, got {media_type or 'no Content-Type'}")
    # JSON is UTF-8 (RFC 8259 section 8.1), and the body is decoded as such: a body
    # declared in another charset would be read as something it does not say.
    charset = _charset(parameters)
    if charset not in (None, "utf-8", "utf8"):
        raise bodies.RequestProblem(415, "UnsupportedMediaType",
                                    f"the body must be UTF-8 JSON, got charset={charset}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        if int(declared) <= DRAIN_BYTES:
            await _drain(request)
        raise bodies.RequestProblem(413, "PayloadTooLarge", f"the body is {declared} bytes; at most {limit} are accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_BYTES:
            break
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise bodies.RequestProblem(413, "PayloadTooLarge", f"the body is over {limit} bytes; at most {limit} "
                                    "are accepted")
    return b"".join(chunks)


# An oversize body up to this size is read and thrown away before the 413 goes out: a
# client still sending when the server answers and closes gets a connection reset
# instead of the 413 (nginx's "lingering close" for the same reason). Beyond it the
# connection is cut, which bounds what one request can make the server read.
DRAIN_BYTES = 1024 * 1024


async def _drain(request: Request) -> None:
    # Straight from the ASGI channel: Starlette's stream() cannot be resumed once left.
    read = 0
    while read <= DRAIN_BYTES:
        message = await request.receive()
        if message.get("type") != "http.request":
            return
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def create_app(settings: Settings, service: TaskService, authenticator: Authenticator,
               ready: Callable[[], None]) -> Starlette:
    """The ASGI app. `ready()` raises when the API cannot serve (readiness probe)."""

    async def caller_of(request: Request) -> Caller:
        token = bearer_token(request.headers.get("authorization"))
        identity = await run_in_threadpool(authenticator.identify, token)
        apps = settings.apps_of(identity)
        if not apps:
            raise Forbidden(f"{identity!r} is authenticated but may act for no application: map it to one in "
                            "the API's identities configuration")
        return Caller(identity, apps)

    def query(request: Request, name: str) -> Optional[str]:
        values = request.query_params.getlist(name)
        if len(values) > 1:
            raise bodies.RequestProblem(422, "InvalidTask", f"{name} is given {len(values)} times; give it once", name)
        return values[0] if values else None

    def served_namespace(request: Request) -> None:
        check_namespace(query(request, "namespace"), service.namespace)

    def endpoint(operation: Callable[[Request, Caller], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """A route of the tasks API: authenticates the caller and checks the namespace
        asked for, then runs `operation(request, caller)`; any error is answered in the
        one error shape (error_response)."""
        async def route(request: Request) -> Response:
            try:
                caller = await caller_of(request)
                served_namespace(request)
                return await operation(request, caller)
            except Exception as error:  # noqa: BLE001 - mapped or re-raised by error_response
                return error_response(error)
        return route

    @endpoint
    async def post_task(request: Request, caller: Caller) -> Response:
        raw = await _read_body(request, settings.max_body_bytes)
        view = await run_in_threadpool(service.create, caller, raw)
        return JSONResponse(view, status_code=201, headers={"Location": f"/v1/tasks/{view['id']}"})

    @endpoint
    async def get_task(request: Request, caller: Caller) -> Response:
        wait = bodies.parse_wait(query(request, "wait"))
        view = await run_in_threadpool(service.get, caller, request.path_params["id"], query(request, "app"),
                                       wait, query(request, "changedFrom"))
        return JSONResponse(view)

    @endpoint
    async def list_tasks(request: Request, caller: Caller) -> Response:
        limit = bodies.parse_positive_int(query(request, "limit"), "limit", 500)
        page = await run_in_threadpool(service.list, caller, query(request, "app"), query(request, "state"),
                                       query(request, "task"), limit, query(request, "continue"))
        return JSONResponse(page)

    @endpoint
    async def delete_task(request: Request, caller: Caller) -> Response:
        view = await run_in_threadpool(service.cancel, caller, request.path_params["id"], query(request, "app"))
        return JSONResponse(view)

    @endpoint
    async def task_events(request: Request, caller: Caller) -> Response:
        task_id, app = request.path_params["id"], query(request, "app")
        # The first read happens before the stream starts, so 401/403/404 are status codes.
        first = await run_in_threadpool(service.get, caller, task_id, app)
        return StreamingResponse(_events(service, caller, task_id, app, first), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def openapi(request: Request) -> Response:
        return JSONResponse(document())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await run_in_threadpool(ready)
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            return _error(503, "Unavailable", f"not ready: {error}")
        return JSONResponse({"status": "ready"})

    async def not_found_or_method(request: Request, error: HTTPException) -> Response:
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(error.status_code, "Error")
        return _error(error.status_code, code, f"{request.method} {request.url.path}: {error.detail}",
                      headers=error.headers)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        yield

    routes = [
        Route("/v1/tasks", post_task, methods=["POST"]),
        Route("/v1/tasks", list_tasks, methods=["GET"]),
        Route("/v1/tasks/{id}", get_task, methods=["GET"]),
        Route("/v1/tasks/{id}", delete_task, methods=["DELETE"]),
        Route("/v1/tasks/{id}/events", task_events, methods=["GET"]),
        Route("/v1/openapi.json", openapi, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: not_found_or_method})


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _events(service: TaskService, caller: Caller, task_id: str, app: Optional[str],
                  view: dict[str, Any]) -> AsyncIterator[str]:
    """The SSE stream: a `status` event with the task's view now and at each change of
    state, ending after the terminal one; an `error` event (the error body) if the task
    is deleted meanwhile or the API server cannot be reached."""
    yield _sse("status", view)
    while view["status"] not in ("SUCCESS", "FAILURE"):
        try:
            latest = await run_in_threadpool(service.get, caller, task_id, app,
                                             min(SSE_ROUND_SECONDS, service.max_wait_seconds), view["status"])
        except Exception as error:  # noqa: BLE001 - told to the client, then the stream ends
            response = error_response(error)
            yield _sse("error", json.loads(response.body))
            return
        if latest["status"] != view["status"]:
            yield _sse("status", latest)
        else:
            yield ": still " + latest["status"] + "\n\n"
        view = latest
