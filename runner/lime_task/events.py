"""The task event contract: routing keys, message ids, the body and its parsed form.

When a task reaches SUCCESS or FAILURE the operator publishes one message to a durable
topic exchange (default ``lime_task``) with the routing key
``core.task.{task_name}.{success|failure}.v1``. This module is the single definition of
that contract, shared by the publisher (``lime_task_operator.publisher``) and by consumers;
all of it is pure: :func:`routing_key`, :func:`event_message_id`, :func:`build_event_body`,
:func:`pattern_for`, :class:`TaskEvent` (the parsed message a handler receives), and the
broker settings (:func:`resolve_broker_url`, :func:`resolve_exchange`, :func:`redact_url`).

The consumer (I/O, pika) is :mod:`lime_task.consumer`; its public names can also be
imported from here (``from lime_task.events import consume, pattern_for``).
The body format is documented in docs/events.md.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Optional

from . import timestamps, values
from .constants import DEFAULT_EXCHANGE, ENV_BROKER_URL, ENV_EXCHANGE, TERMINAL_STATES
from .models import TASK_PATH_PATTERN

ROUTING_KEY_PREFIX = "core.task"
EVENT_VERSION = "v1"
CONTENT_TYPE = "application/json"

# A routing-key pattern for one task name, or a set of names: dotted words, where a word
# may be the AMQP wildcards `*` (one word) or `#` (zero or more words).
_TASK_PATTERN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*|\*|#)(\.([A-Za-z_][A-Za-z0-9_]*|\*|#))*$")


# --------------------------------------------------------------------------------------
# Routing keys and message ids (pure)
# --------------------------------------------------------------------------------------


def _check_terminal(state: str) -> str:
    if state not in TERMINAL_STATES:
        raise ValueError(
            f"task state {state!r} has no event: only {' and '.join(TERMINAL_STATES)} "
            "tasks are published"
        )
    return state


def _check_task_name(task_name: str) -> str:
    if not isinstance(task_name, str) or not re.fullmatch(TASK_PATH_PATTERN, task_name):
        raise ValueError(
            f"task name {task_name!r} is not a dotted Python path such as "
            "'my_package.tasks.send_report'"
        )
    return task_name


def routing_key(task_name: str, state: str) -> str:
    """The routing key of the event for a task that ended in `state`.

    The task name keeps its dots, so its words are separate routing-key words and a
    consumer can bind to a whole package (``core.task.billing.#.failure.v1``).
    """
    _check_task_name(task_name)
    _check_terminal(state)
    return f"{ROUTING_KEY_PREFIX}.{task_name}.{state.lower()}.{EVENT_VERSION}"


def event_message_id(task_uid: str, state: str) -> str:
    """A message id that is the same every time the same outcome is published.

    The uid (not the name) is used because a task name can be reused after the task was
    deleted; the state is included so that a distinct outcome is never mistaken for a
    duplicate. Consumers drop messages whose id they have already handled.
    """
    if not isinstance(task_uid, str) or not task_uid.strip():
        raise ValueError("task uid is empty: the event message id is derived from metadata.uid")
    _check_terminal(state)
    return f"{task_uid}.{state.lower()}"


def pattern_for(
    failures: bool = False, successes: bool = False, task: Optional[str] = None
) -> list[str]:
    """Binding patterns for the events a consumer asks for.

    Neither `failures` nor `successes` means both. `task` narrows to one task name (or a
    pattern of names using the AMQP wildcards, e.g. ``billing.#``).
    """
    if task is None:
        name = "#"
    elif isinstance(task, str) and _TASK_PATTERN.fullmatch(task):
        name = task
    else:
        raise ValueError(
            f"task {task!r} is not a dotted task name (words may be '*' or '#' wildcards)"
        )
    states = []
    if successes or not failures:
        states.append("success")
    if failures or not successes:
        states.append("failure")
    return [f"{ROUTING_KEY_PREFIX}.{name}.{state}.{EVENT_VERSION}" for state in states]


def redact_url(url: str) -> str:
    """`url` with its password replaced by ``***``: safe for logs and status messages."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def resolve_broker_url(url: Optional[str] = None) -> str:
    """The explicit URL, else ``$LIME_TASK_BROKER_URL``; an error names both when neither is set."""
    value = url or os.environ.get(ENV_BROKER_URL, "")
    if not value.strip():
        raise ValueError(f"no broker URL: pass url=... or set {ENV_BROKER_URL} (amqp://user:pass@host:5672/vhost)")
    return value.strip()


def resolve_exchange(exchange: Optional[str] = None) -> str:
    """The explicit exchange, else ``$LIME_TASK_EXCHANGE``, else ``lime_task``."""
    return exchange or os.environ.get(ENV_EXCHANGE, "").strip() or DEFAULT_EXCHANGE


# --------------------------------------------------------------------------------------
# The event body (pure)
# --------------------------------------------------------------------------------------


def _rfc3339(value: Any) -> Optional[str]:
    """Timestamps come as strings from the API but as datetimes from kopf/pydantic users;
    either way the body has them as Kubernetes writes them (lime_task.timestamps)."""
    if value is None or value == "":
        return None
    return timestamps.format_time(timestamps.parse_time(value))


def _required(obj: Mapping[str, Any], section: str, key: str) -> Any:
    part = obj.get(section) or {}
    value = part.get(key) if isinstance(part, Mapping) else None
    if value is None or value == "":
        raise ValueError(f"LimeTask has no {section}.{key}: cannot build its event")
    return value


def build_event_body(task_obj: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of the event for a finished LimeTask (the API's camelCase dict).

    Both `result` and `error` are always present (one of them null) so that consumers
    see one fixed shape. The body carries the task's uid so a consumer can tell two
    tasks apart that had the same name at different times.
    """
    if not isinstance(task_obj, Mapping):
        raise ValueError(f"expected the LimeTask as a dict, got {type(task_obj).__name__}")
    state = _check_terminal(_required(task_obj, "status", "state"))
    metadata = task_obj.get("metadata") or {}
    status = task_obj.get("status") or {}
    return {
        "id": _required(task_obj, "metadata", "name"),
        "uid": _required(task_obj, "metadata", "uid"),
        "task": _check_task_name(_required(task_obj, "spec", "task")),
        "app": _required(task_obj, "spec", "app"),
        "namespace": metadata.get("namespace"),
        "state": state,
        "reason": status.get("reason"),
        # As the task returned it: integral floats restored (lime_task.values).
        "result": values.status_result(status) if state == "SUCCESS" else None,
        "error": status.get("error") if state == "FAILURE" else None,
        "createdAt": _rfc3339(metadata.get("creationTimestamp")),
        "startedAt": _rfc3339(status.get("startedAt")),
        "finishedAt": _rfc3339(status.get("finishedAt")),
        "attempts": status.get("attempts"),
    }


# --------------------------------------------------------------------------------------
# The parsed event a handler receives (pure)
# --------------------------------------------------------------------------------------


def _parse_time(value: Any) -> Optional[datetime]:
    if value in (None, ""):
        return None
    try:
        return timestamps.parse_time(value)
    except ValueError as error:
        raise ValueError(f"event {error}") from None


@dataclass(frozen=True)
class TaskEvent:
    """One task event as handed to a consumer's handler."""

    task_id: str
    task_name: str
    app: str
    state: str
    namespace: Optional[str] = None
    uid: Optional[str] = None
    reason: Optional[str] = None
    result: Any = None
    error: Optional[dict[str, Any]] = None
    created_at: Optional[datetime] = None
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    attempts: Optional[int] = None
    routing_key: str = ""
    message_id: Optional[str] = None
    timestamp: Optional[datetime] = None
    redelivered: bool = False
    body: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def succeeded(self) -> bool:
        return self.state == "SUCCESS"

    @classmethod
    def from_message(
        cls,
        body: bytes | str,
        routing_key: str = "",
        message_id: Optional[str] = None,
        timestamp: Optional[int] = None,
        redelivered: bool = False,
    ) -> "TaskEvent":
        """Parse a delivered message; ValueError names what is wrong with a bad one."""
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"event body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"event body is a JSON {type(data).__name__}, expected an object")
        missing = [key for key in ("id", "task", "app", "state") if not data.get(key)]
        if missing:
            raise ValueError(f"event body lacks {', '.join(missing)}")
        attempts = data.get("attempts")
        return cls(
            task_id=str(data["id"]),
            task_name=str(data["task"]),
            app=str(data["app"]),
            state=str(data["state"]),
            namespace=data.get("namespace"),
            uid=data.get("uid"),
            reason=data.get("reason"),
            result=data.get("result"),
            error=data.get("error"),
            created_at=_parse_time(data.get("createdAt")),
            started_at=_parse_time(data.get("startedAt")),
            finished_at=_parse_time(data.get("finishedAt")),
            attempts=int(attempts) if isinstance(attempts, int) else None,
            routing_key=routing_key,
            message_id=message_id,
            timestamp=(
                timestamps.from_epoch_seconds(timestamp) if timestamp is not None else None
            ),
            redelivered=redelivered,
            body=data,
        )


# --------------------------------------------------------------------------------------
# The consumer, importable from here too
# --------------------------------------------------------------------------------------

# `from lime_task.events import consume, pattern_for` is the documented import (README,
# examples). The consumer lives in lime_task.consumer, which imports this module; loading
# it only when one of its names is asked for keeps that import one-way at load time and
# keeps pika's consumer code out of the operator and the runner.
_CONSUMER_NAMES = frozenset({"ConsumerError", "EventConsumer", "Handler", "consume", "dead_letter_names"})


def __getattr__(name: str) -> Any:
    if name in _CONSUMER_NAMES:
        from . import consumer

        return getattr(consumer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
