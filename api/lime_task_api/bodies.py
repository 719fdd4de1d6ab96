"""Request and response bodies of the HTTP API: pure functions, no I/O.

Why a module of its own: every refusal of a request body (400 not JSON, 413 too large,
422 a rule broken, each naming the field) is decided here and unit-tested without a
server. The rules a task must follow are NOT restated here: after the checks only the
HTTP layer can make (the body is one JSON object, each member has a JSON type the
library would accept from Python), the task goes through `lime_task.sending.build_spec`,
the one implementation `send_task` uses, and its refusal is reported with the field it
names.

Shapes (docs/http-api.md, docs/openapi.json):
- request  ``{"task": str, "args": [...], "kwargs": {...}, "options": {...}, "app": str}``
  (only ``task`` required; ``app`` only chooses among the caller's own applications);
- error    ``{"error": {"code": str, "message": str, "field": str | null}}``;
- task     ``{"id", "status", "result", "error", "app", "task", "namespace", "reason",
  "message", "attempts", "createdAt", "startedAt", "finishedAt", "duration"}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from pydantic import ValidationError

from lime_task import run_options, values
from lime_task.errors import InvalidTaskError
from lime_task.models import LimeTaskSpec
from lime_task.sending import build_spec

# A request body holds at most MAX_ARGUMENTS_BYTES (32 KiB) of arguments; JSON escapes
# (\u0000 is 6 bytes for 1) and the other members can make it larger, so 256 KiB leaves
# room for every task the library accepts while bounding what one request may hold.
DEFAULT_MAX_BODY_BYTES = 256 * 1024

# The request members and the run options, by their JSON names (the CRD's spec names):
# wire name -> build_spec keyword, from the one definition (lime_task.run_options).
REQUEST_MEMBERS = ("task", "app", "args", "kwargs", "options")
OPTION_NAMES = {option.wire: option.name for option in run_options.OPTIONS}
# Python field name (pydantic loc) -> request field, for refusals build_spec reports.
_SPEC_FIELDS = {
    "task": "task",
    "app": "app",
    "args": "args",
    "kwargs": "kwargs",
    **{python: f"options.{wire}" for wire, python in OPTION_NAMES.items()},
}


class RequestProblem(Exception):
    """A request the API refuses: `status` (400, 413, 415, 422), an error `code`, the
    `field` it concerns (a dotted request path such as ``options.retries``, or None)."""

    def __init__(self, status: int, code: str, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def error_body(code: str, message: str, field: Optional[str] = None) -> dict[str, Any]:
    """The one error shape of every non-2xx answer."""
    return {"error": {"code": code, "message": message, "field": field}}


def _refuse_constant(name: str) -> Any:
    raise RequestProblem(400, "BadRequest", f"the body is not JSON: {name} is not a JSON value")


def decode_json(raw: bytes, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Any:
    """The JSON value of a request body, exactly as sent, or RequestProblem.

    413 beyond `max_bytes`; 400 for a body that is not UTF-8, not JSON (NaN/Infinity
    included), has a key twice in one object, or nests deeper than
    lime_task.values.DECODE_MAX_DEPTH (Python's decoder would crash near 1000 levels;
    the value rules allow MAX_DEPTH)."""
    if len(raw) > max_bytes:
        raise RequestProblem(413, "PayloadTooLarge", f"the body is {len(raw)} bytes; at most {max_bytes} are accepted")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestProblem(400, "BadRequest", f"the body is not UTF-8: byte {error.start} cannot be decoded") from None
    if not text.strip():
        raise RequestProblem(400, "BadRequest", "the body is empty; send a JSON object")
    try:
        _, cut = values.decode_bounded(text)
    except (json.JSONDecodeError, ValueError) as error:
        raise RequestProblem(400, "BadRequest", f"the body is not JSON: {error}") from None
    if cut:
        raise RequestProblem(
            400, "BadRequest",
            f"the body nests deeper than {values.DECODE_MAX_DEPTH} levels; a task argument may nest "
            f"at most {values.MAX_DEPTH}",
        )
    try:
        return json.loads(text, object_pairs_hook=values.unique_members, parse_constant=_refuse_constant)
    except values.DuplicateKey as error:
        raise RequestProblem(
            400, "BadRequest", f"the body is not valid: the key {error.key!r} appears twice in one object") from None
    except json.JSONDecodeError as error:
        raise RequestProblem(400, "BadRequest", f"the body is not JSON: {error}") from None


@dataclass(frozen=True)
class NewTask:
    """A checked POST /v1/tasks body: the task name, the app it asks for (None: the
    caller's only app), the arguments and the run options as `build_spec` keywords."""

    task: str
    app: Optional[str]
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)


def _invalid(message: str, field_name: Optional[str]) -> RequestProblem:
    return RequestProblem(422, "InvalidTask", message, field_name)


def _is_int(value: Any) -> bool:
    return type(value) is int  # bool is an int subclass; 5.0 and "5" are not ints here


def _check_quantities(option: run_options.RunOption, value: Any) -> None:
    """An object option (resources): its members (limits, requests) map names to
    Kubernetes quantities, a string or an integer each; 422 naming the member."""
    if not isinstance(value, dict):
        raise _invalid(f"options.{option.wire} must be an object, got {_json_type(value)}", f"options.{option.wire}")
    for part, quantities in value.items():
        where = f"options.{option.wire}.{part}"
        if part not in option.members:
            raise _invalid(f"{where}: unknown member; only {' and '.join(option.members)}", where)
        if not isinstance(quantities, dict):
            raise _invalid(f"{where} must be an object, got {_json_type(quantities)}", where)
        for name, quantity in quantities.items():
            if not (isinstance(quantity, str) or _is_int(quantity)):
                raise _invalid(
                    f"{where}.{name} must be a quantity string (\"500m\", \"1Gi\") or an integer, "
                    f"got {_json_type(quantity)}",
                    f"{where}.{name}",
                )


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def parse_new_task(body: Any) -> NewTask:
    """The checked members of a POST /v1/tasks body, or RequestProblem 422 naming the
    member (unknown members are refused: a misspelt option must not be dropped)."""
    if not isinstance(body, dict):
        raise _invalid(f"the body must be a JSON object, got {_json_type(body)}", None)
    unknown = [name for name in body if name not in REQUEST_MEMBERS]
    if unknown:
        raise _invalid(f"unknown member {unknown[0]!r}; the members are {', '.join(REQUEST_MEMBERS)}", unknown[0])
    if "task" not in body:
        raise _invalid("task is required: the dotted path of a @task function", "task")
    task, app = body["task"], body.get("app")
    if not isinstance(task, str):
        raise _invalid(f"task must be a string, got {_json_type(task)}", "task")
    if app is not None and not isinstance(app, str):
        raise _invalid(f"app must be a string, got {_json_type(app)}", "app")
    args, kwargs, options = body.get("args", []), body.get("kwargs", {}), body.get("options", {})
    if not isinstance(args, list):
        raise _invalid(f"args must be an array, got {_json_type(args)}", "args")
    if not isinstance(kwargs, dict):
        raise _invalid(f"kwargs must be an object, got {_json_type(kwargs)}", "kwargs")
    if not isinstance(options, dict):
        raise _invalid(f"options must be an object, got {_json_type(options)}", "options")
    chosen: dict[str, Any] = {}
    for name, value in options.items():
        where = f"options.{name}"
        if name not in OPTION_NAMES:
            raise _invalid(f"unknown option {name!r}; the options are {', '.join(OPTION_NAMES)}", where)
        if value is None:
            continue  # null: the default, as None is for send_task_with_options
        option = run_options.BY_WIRE[name]
        if option.kind is int and not _is_int(value):
            raise _invalid(f"{where} must be an integer, got {_json_type(value)}", where)
        if option.kind is str and not isinstance(value, str):
            raise _invalid(f"{where} must be a string, got {_json_type(value)}", where)
        if option.kind is dict:
            _check_quantities(option, value)
        chosen[OPTION_NAMES[name]] = value
    return NewTask(task=task, app=app, args=args, kwargs=kwargs, options=chosen)


def _field_of(error: InvalidTaskError) -> Optional[str]:
    """The request field an InvalidTaskError from build_spec is about, from the error it
    was raised for (build_spec raises `from None`, which keeps it as __context__)."""
    context = error.__context__
    if isinstance(context, values.ValueProblem):
        return context.place
    if isinstance(context, ValidationError):
        errors = context.errors()
        loc = errors[0]["loc"] if errors else ()
        if loc:
            head = _SPEC_FIELDS.get(str(loc[0]), str(loc[0]))
            rest = "".join(f"[{part!r}]" if isinstance(part, str) else f"[{part}]" for part in loc[1:])
            return head + rest if head in ("args", "kwargs") else ".".join([head, *map(str, loc[1:])])
        return None
    text = str(error)
    if text.startswith("task name") or text.startswith("args of task"):
        return "task" if text.startswith("task name") else "args"
    if "task arguments are" in text:
        return "args"
    return None


def build(new: NewTask, app: str) -> LimeTaskSpec:
    """The validated LimeTaskSpec of a checked request for `app` (decided by the caller's
    credential, never by the body alone): `lime_task.sending.build_spec`, the rules of
    `send_task`. RequestProblem 422 naming the field, with build_spec's message."""
    try:
        return build_spec(new.task, app, new.args, new.kwargs, **new.options)
    except InvalidTaskError as error:
        raise _invalid(str(error), _field_of(error)) from None


def task_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The API's view of a LimeTask object (as lime_task.kube.get_task returns it).

    `result` is the task's value with its integral floats restored (as `get_status`
    gives it); `error` only for FAILURE. A part nested deeper than the decoder reads
    (only an object written by something else than the operator can hold one) is
    refused by `TaskStatus.from_object` with lime_task.kube.LimeTaskApiError."""
    from lime_task.api import TaskStatus

    status = TaskStatus.from_object(obj)
    metadata, observed = obj.get("metadata") or {}, obj.get("status") or {}
    return {
        "id": status.id,
        "status": status.status,
        "result": status.result,
        "error": status.error,
        "app": status.app,
        "task": (obj.get("spec") or {}).get("task"),
        "namespace": metadata.get("namespace"),
        "reason": observed.get("reason"),
        "message": observed.get("message"),
        "attempts": observed.get("attempts"),
        "createdAt": metadata.get("creationTimestamp"),
        "startedAt": observed.get("startedAt"),
        "finishedAt": observed.get("finishedAt"),
        "duration": observed.get("duration"),
    }


def parse_positive_int(raw: Optional[str], name: str, maximum: int) -> Optional[int]:
    """A query parameter that must be an integer 1..maximum (None when absent);
    RequestProblem 422 naming it otherwise."""
    if raw is None:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise _invalid(f"{name} must be an integer from 1 to {maximum}, got {raw!r}", name)
    return int(raw)


# The largest `wait` accepted; the service waits at most its maxWaitSeconds of it (a
# client cannot know that setting, so a longer wait is shortened, not refused).
MAX_WAIT_PARAMETER = 86400


def parse_wait(raw: Optional[str], maximum: int = MAX_WAIT_PARAMETER) -> Optional[float]:
    """`?wait=SECONDS` of GET /v1/tasks/{id}: a number 0..maximum (seconds; fractions
    allowed), None when absent. RequestProblem 422 naming `wait` otherwise."""
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds <= maximum:  # also refuses NaN
        raise _invalid(f"wait must be a number of seconds from 0 to {maximum}, got {raw!r}", "wait")
    return seconds
