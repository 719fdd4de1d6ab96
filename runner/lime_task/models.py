"""Pydantic models of the LimeTask spec and status, shared by the library and the operator.

Field names are snake_case in Python and camelCase on the wire (the CRD), through
aliases; `model_dump(by_alias=True, exclude_none=True)` gives what the API server stores.
A test checks these models against `crds/limetask.yaml` so the two cannot drift.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from . import values
from .constants import MAX_ARGUMENTS_BYTES, TERMINATION_MESSAGE_LIMIT

TASK_PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"
APP_NAME_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
APP_NAME_MAX = 63
# A task's events go out with routing key `core.task.{task}.{success|failure}.v1`
# (lime_task.events.routing_key), an AMQP shortstr of at most 255 bytes (AMQP 0-9-1,
# section 4.2.5.3). Task names are ASCII (TASK_PATH_PATTERN), so characters are bytes.
AMQP_SHORTSTR_MAX = 255
ROUTING_KEY_OVERHEAD = len("core.task.") + len(".failure.v1")  # ".success.v1" is as long
TASK_PATH_MAX = AMQP_SHORTSTR_MAX - ROUTING_KEY_OVERHEAD  # 234
# A result is at most TERMINATION_MESSAGE_LIMIT bytes of JSON: at most one float per 4.
TERMINATION_FLOAT_PATHS_MAX = TERMINATION_MESSAGE_LIMIT // 4
# status.resultFloatPaths items (the CRD's maxLength). A pointer escapes '~' and '/' in
# keys as two characters and repeats every key above its float, so a result that fits
# the termination message can still make pointers the API server refuses: the runner
# checks them too (termination.success_message), each and together, the total with the
# same bound as the arguments' floatPaths.
RESULT_FLOAT_PATH_MAX_LENGTH = 4096
RESULT_FLOAT_PATHS_MAX_BYTES = MAX_ARGUMENTS_BYTES
# JSON pointers of integral floats (lime_task.values.float_paths): at most one per
# 4 bytes of arguments (`1.0,`), each no longer than the arguments themselves.
MAX_FLOAT_PATHS = MAX_ARGUMENTS_BYTES // 4
MAX_ARGS_ITEMS = 256
MAX_KWARGS_PROPERTIES = 256
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
# The largest int32, as the Job API's own ttlSecondsAfterFinished (68 years): without a
# maximum, 2**63 passed every check here and the API server refused it with a number
# parse error that names no field.
MAX_TTL_SECONDS = 2**31 - 1
MAX_RETRIES = 20
# Kubernetes API conventions for conditions (the same patterns as metav1.Condition).
REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
KWARG_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

State = Literal["PENDING", "STARTED", "SUCCESS", "FAILURE"]


def describe_errors(error: ValidationError, root: str) -> str:
    """`field.path: problem; ...` for a pydantic error, `root` naming the object itself,
    so a refusal names the field a user has to fix."""
    # pydantic prefixes a validator's ValueError with "Value error, "; our messages
    # (lime_task.values) already name the place and the rule.
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or root}: {item['msg'].removeprefix('Value error, ')}"
        for item in error.errors()
    )


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
    )

    def to_wire(self) -> dict[str, Any]:
        """The camelCase dict the API server stores (None fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Resources(_Model):
    limits: dict[str, str | int] = Field(default_factory=dict)
    requests: dict[str, str | int] = Field(default_factory=dict)


class LimeTaskSpec(_Model):
    task: str = Field(pattern=TASK_PATH_PATTERN, max_length=TASK_PATH_MAX)
    app: str = Field(pattern=APP_NAME_PATTERN, max_length=APP_NAME_MAX)
    args: list[Any] = Field(default_factory=list, max_length=MAX_ARGS_ITEMS)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: Optional[int] = Field(default=None, ge=1, le=MAX_TIMEOUT_SECONDS)
    retries: int = Field(default=0, ge=0, le=MAX_RETRIES)
    image: Optional[str] = Field(default=None, min_length=1, max_length=512)
    resources: Optional[Resources] = None
    ttl_seconds_after_finished: Optional[int] = Field(default=None, ge=0, le=MAX_TTL_SECONDS)
    # Where args/kwargs hold floats with an integral value, which the API server stores
    # as integers (lime_task.values). Computed from the values; on the wire only.
    float_paths: Optional[list[str]] = Field(default=None, max_length=MAX_FLOAT_PATHS)

    @field_validator("kwargs")
    @classmethod
    def _kwargs_bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > MAX_KWARGS_PROPERTIES:
            raise ValueError(f"at most {MAX_KWARGS_PROPERTIES} keyword arguments, got {len(value)}")
        for key in value:
            if not re.fullmatch(KWARG_NAME_PATTERN, key):
                raise ValueError(f"keyword argument name {key!r} is not a Python identifier")
        return value

    @model_validator(mode="after")
    def _values_exact(self) -> "LimeTaskSpec":
        """Turn the numbers `floatPaths` names back into floats, refuse values that
        cannot arrive exactly (lime_task.values, naming the place), and recompute
        floatPaths from the values: the sender (floats given) and the operator (reading
        what the API server stored) both end with the exact values and the same
        floatPaths. Restoring comes first: the API server writes an integral float of
        2**63 or more (1e20) as an integer beyond int64, which is fine when listed."""
        arguments = values.restore(
            {"args": self.args, "kwargs": self.kwargs}, self.float_paths, root="floatPaths"
        )
        values.check_arguments(arguments["args"], arguments["kwargs"])
        self.args, self.kwargs = arguments["args"], arguments["kwargs"]
        self.float_paths = values.float_paths(arguments) or None
        return self

    def arguments_size(self) -> int:
        """Bytes of args + kwargs as compact JSON: what MAX_ARGUMENTS_BYTES bounds."""
        import json

        return len(json.dumps([self.args, self.kwargs], separators=(",", ":")).encode())

    def check_arguments_size(self) -> None:
        """ValueError when args+kwargs, or the floatPaths that go with them, exceed
        MAX_ARGUMENTS_BYTES as compact JSON. floatPaths has its own bound because a
        pointer repeats every key above its float: 4,000 floats under 50 long keys make
        megabytes of pointers from a few KiB of arguments."""
        size = self.arguments_size()
        if size > MAX_ARGUMENTS_BYTES:
            raise ValueError(
                f"task arguments are {size} bytes as JSON; the limit is {MAX_ARGUMENTS_BYTES}. "
                "Pass a reference (an id, a URL) to large data instead of the data."
            )
        import json

        paths = len(json.dumps(self.float_paths or [], separators=(",", ":")).encode())
        if paths > MAX_ARGUMENTS_BYTES:
            raise ValueError(
                f"the places of the arguments' floats with an integral value (floatPaths) are {paths} bytes "
                f"as JSON; the limit is {MAX_ARGUMENTS_BYTES}. Send fewer such floats, shorter keys or "
                "flatter data."
            )


class TaskError(_Model):
    type: str = Field(max_length=256)
    message: str = Field(default="", max_length=4096)
    traceback: str = Field(default="", max_length=4096)


class Condition(_Model):
    type: str = Field(pattern=CONDITION_TYPE_PATTERN, max_length=316)
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=REASON_PATTERN, min_length=1, max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: datetime
    observed_generation: Optional[int] = Field(default=None, ge=0)


class EventRecord(_Model):
    routing_key: str = Field(max_length=255)
    message_id: str = Field(max_length=255)
    confirmed_at: Optional[datetime] = None


class LastAttempt(_Model):
    """status.lastAttempt: the last failed attempt, kept after its pod is gone (#11)."""

    pod: str = Field(max_length=253)
    reason: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9]*$", max_length=64)
    message: str = Field(default="", max_length=1024)
    exit_code: Optional[int] = None
    started_at: Optional[datetime] = None
    error: Optional[TaskError] = None
    log_tail: Optional[str] = Field(default=None, max_length=2048)


class LimeTaskStatus(_Model):
    state: Optional[State] = None
    result: Any = None
    # lime_task.values.float_paths of the result (pointers from the result itself).
    result_float_paths: Optional[list[str]] = Field(default=None, max_length=TERMINATION_FLOAT_PATHS_MAX)
    error: Optional[TaskError] = None
    reason: Optional[str] = Field(default=None, pattern=REASON_PATTERN, max_length=1024)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    duration: Optional[str] = Field(default=None, max_length=64)
    attempts: Optional[int] = Field(default=None, ge=0)
    job_name: Optional[str] = Field(default=None, max_length=63)
    message: Optional[str] = Field(default=None, max_length=1024)
    last_attempt: Optional[LastAttempt] = None
    event: Optional[EventRecord] = None
    conditions: list[Condition] = Field(default_factory=list, max_length=8)
    observed_generation: Optional[int] = Field(default=None, ge=0)


class RunnerTask(BaseModel):
    """The runner's input: env LIME_TASK, built by the operator from the LimeTask.

    Plain field names (no camelCase aliases): this is our own wire format, see
    docs/architecture.md ("Runner").
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=253)
    task: str = Field(pattern=TASK_PATH_PATTERN, max_length=TASK_PATH_MAX)
    app: str = Field(pattern=APP_NAME_PATTERN, max_length=APP_NAME_MAX)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    namespace: Optional[str] = None
