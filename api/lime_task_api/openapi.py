"""The OpenAPI 3.1 document of the HTTP API: served at /v1/openapi.json and checked
into docs/openapi.json (a unit test keeps the two equal: regenerate with
``python -m lime_task_api openapi > docs/openapi.json``).

Written out rather than derived from type hints, because the request rules are the
library's (lime_task_api.bodies); the limits quoted here come from the same constants,
and the run options' schemas from their one definition (lime_task.run_options).
"""

from __future__ import annotations

import json
from typing import Any

from lime_task import run_options
from lime_task.constants import MAX_ARGUMENTS_BYTES, STATES
from lime_task.models import APP_NAME_MAX, APP_NAME_PATTERN, TASK_PATH_MAX

from .bodies import DEFAULT_MAX_BODY_BYTES, MAX_WAIT_PARAMETER, OPTION_NAMES
from .settings import DEFAULT_MAX_WAIT_SECONDS

VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(schema)}}


def _option_schema(option: run_options.RunOption) -> dict[str, Any]:
    """The JSON Schema of one run option in a request body (null: the default)."""
    if option.kind is dict:
        return {"type": ["object", "null"], "properties": {member: {"type": "object"} for member in option.members},
                "additionalProperties": False}
    schema: dict[str, Any] = {"type": [{int: "integer", str: "string"}[option.kind], "null"]}
    if option.low is not None:
        schema["minimum"] = option.low
    if option.high is not None:
        schema["maximum"] = option.high
    return schema


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json("Error")}


_ERRORS = {
    "401": _error("No credential, or one that is not valid (WWW-Authenticate: Bearer)."),
    "403": _error("A valid credential that may act for no application, or not for the one asked."),
    "503": _error("The Kubernetes API server cannot be reached (Retry-After)."),
}
_NOT_FOUND = _error("No such task for the caller: the same body whether it does not exist or is another "
                    "application's.")
_APP = {
    "name": "app", "in": "query", "required": False, "schema": {"type": "string"},
    "description": "Only this application's tasks (one the credential may act for). Default: all of them.",
}
_NAMESPACE = {
    "name": "namespace", "in": "query", "required": False, "schema": {"type": "string"},
    "description": "The namespace the caller expects; 422 if the API serves another one.",
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}, "description": "The task id."}


def document() -> dict[str, Any]:
    """The OpenAPI document as a dict (keys in a stable order)."""
    states = list(STATES)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Lime Task HTTP API",
            "version": VERSION,
            "description": (
                "Start, read, list, cancel and wait for Lime Tasks. Authenticate with "
                "`Authorization: Bearer <token>`: a ServiceAccount token with the configured audience, "
                "or an API key. Each caller sees only the tasks of the applications its identity is "
                "mapped to. See docs/http-api.md."
            ),
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/tasks": {
                "post": {
                    "operationId": "createTask",
                    "summary": "Start a task",
                    "parameters": [_NAMESPACE],
                    "requestBody": {"required": True, "content": _json("NewTask")},
                    "responses": {
                        "201": {
                            "description": "Created (PENDING). Location: /v1/tasks/{id}.",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": _json("Task"),
                        },
                        "400": _error("The body is not JSON (or not UTF-8, a key twice, NaN, nested too deeply)."),
                        "413": _error(f"The body is over the limit (default {DEFAULT_MAX_BODY_BYTES} bytes)."),
                        "415": _error("The body is not application/json."),
                        "422": _error("A rule of send_task is broken, or the namespace is not the API's; `field` names it."),
                        **_ERRORS,
                    },
                },
                "get": {
                    "operationId": "listTasks",
                    "summary": "List the caller's tasks, a page at a time",
                    "parameters": [
                        _APP,
                        _NAMESPACE,
                        {"name": "state", "in": "query", "schema": {"enum": states}},
                        {"name": "task", "in": "query", "schema": {"type": "string"},
                         "description": "Only tasks of this dotted task name."},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                         "description": "Objects read from the API server for this page (default 100). A page "
                                        "may hold fewer items, even none, while `continue` is set."},
                        {"name": "continue", "in": "query", "schema": {"type": "string"},
                         "description": "The `continue` of the previous page (the API server's token)."},
                    ],
                    "responses": {
                        "200": {"description": "A page.", "content": _json("TaskList")},
                        "400": _error("The continue token is not valid."),
                        "410": _error("The continue token has expired: list again from the start."),
                        "422": _error("A query parameter is not valid; `field` names it."),
                        **_ERRORS,
                    },
                },
            },
            "/v1/tasks/{id}": {
                "get": {
                    "operationId": "getTask",
                    "summary": "A task's status; with wait, a long poll",
                    "parameters": [
                        _ID,
                        _APP,
                        _NAMESPACE,
                        {"name": "wait", "in": "query",
                         "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_PARAMETER},
                         "description": "Seconds to wait for the task to reach SUCCESS or FAILURE (at most the "
                                        f"configured maxWaitSeconds, default {DEFAULT_MAX_WAIT_SECONDS}, of them); "
                                        "the answer is the state then."},
                        {"name": "changedFrom", "in": "query", "schema": {"enum": states},
                         "description": "With wait: answer as soon as the state is not this one."},
                    ],
                    "responses": {
                        "200": {"description": "The task.", "content": _json("Task")},
                        "404": _NOT_FOUND,
                        "422": _error("wait, changedFrom or namespace is not valid."),
                        **_ERRORS,
                    },
                },
                "delete": {
                    "operationId": "cancelTask",
                    "summary": "Cancel a task: it is deleted, which stops its pod",
                    "parameters": [_ID, _APP, _NAMESPACE],
                    "responses": {
                        "200": {"description": "Deleted; its last status.", "content": _json("DeletedTask")},
                        "404": _NOT_FOUND,
                        **_ERRORS,
                    },
                },
            },
            "/v1/tasks/{id}/events": {
                "get": {
                    "operationId": "taskEvents",
                    "summary": "Server-Sent Events: the task's status now and at each change, to the end",
                    "parameters": [_ID, _APP, _NAMESPACE],
                    "responses": {
                        "200": {
                            "description": "`event: status` with a Task at each change of state, ending after "
                                           "SUCCESS or FAILURE; `event: error` with an Error if the task is "
                                           "deleted meanwhile; comment lines between rounds.",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "404": _NOT_FOUND,
                        **_ERRORS,
                    },
                },
            },
            "/v1/openapi.json": {
                "get": {"operationId": "openapi", "summary": "This document", "security": [],
                        "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}}},
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "NewTask": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["task"],
                    "properties": {
                        "task": {"type": "string", "maxLength": TASK_PATH_MAX,
                                 "description": "Dotted path of a @task function."},
                        "app": {"type": "string", "maxLength": APP_NAME_MAX, "pattern": APP_NAME_PATTERN,
                                "description": "Which of the credential's applications; needed only when it "
                                               "has several."},
                        "args": {"type": "array", "description": "Positional arguments after the app."},
                        "kwargs": {"type": "object", "description": "Keyword arguments."},
                        "options": _ref("Options"),
                    },
                    "description": (
                        f"args and kwargs together at most {MAX_ARGUMENTS_BYTES} bytes as compact JSON; "
                        "every value must arrive exactly (lime_task.values: int64 integers, no NaN, "
                        "nesting at most 100)."
                    ),
                },
                "Options": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {option.wire: _option_schema(option) for option in run_options.OPTIONS},
                    "description": "Run options (" + ", ".join(OPTION_NAMES) + "); null means the default.",
                },
                "Task": {
                    "type": "object",
                    "required": ["id", "status", "result"],
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"enum": states},
                        "result": {"description": "The task's return value once SUCCESS, else null."},
                        "error": {"type": ["object", "null"], "description": "type, message, traceback (FAILURE)."},
                        "app": {"type": "string"},
                        "task": {"type": "string"},
                        "namespace": {"type": "string"},
                        "reason": {"type": ["string", "null"]},
                        "message": {"type": ["string", "null"]},
                        "attempts": {"type": ["integer", "null"]},
                        "createdAt": {"type": ["string", "null"], "format": "date-time"},
                        "startedAt": {"type": ["string", "null"], "format": "date-time"},
                        "finishedAt": {"type": ["string", "null"], "format": "date-time"},
                        "duration": {"type": ["string", "null"]},
                    },
                },
                "DeletedTask": {"allOf": [_ref("Task"), {"type": "object", "properties": {"deleted": {"const": True}}}]},
                "TaskList": {
                    "type": "object",
                    "required": ["items", "continue"],
                    "properties": {"items": {"type": "array", "items": _ref("Task")},
                                   "continue": {"type": ["string", "null"]}},
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["code", "message", "field"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                       "field": {"type": ["string", "null"],
                                                 "description": "The request member or parameter concerned."}},
                    }},
                },
            },
        },
    }


def dumps() -> str:
    """The document as docs/openapi.json holds it (2-space indent, final newline)."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"
