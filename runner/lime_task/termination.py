"""The termination message: how a task pod reports its outcome without any API rights.

This module is the whole contract between the runner (which writes) and the operator
(which reads): the report's shape, its size rules and the runner's exit codes. Both
sides import it, so the two can never drift apart (docs/architecture.md "Runner").

The runner writes one compact JSON object to the container's termination-message file;
kubelet copies it (at most 4096 bytes) into the pod status, where the operator reads it:

- success: `{"ok": true, "result": <json>}`
- failure: `{"ok": false, "error": {"type": ..., "message": ..., "traceback": ...}}`

Pure functions only, so every size rule is unit-tested without a pod.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from . import models, values
from .constants import TERMINATION_MESSAGE_LIMIT


class ExitCode(enum.IntEnum):
    """The runner's exit codes; the operator maps them to the task's reason.

    - SUCCESS 0: the function returned a JSON result that fits the message (Completed).
    - TASK_RAISED 1: the function (or the app factory when called) raised anything,
      SystemExit and KeyboardInterrupt included (TaskRaised); retried up to `retries`.
    - COULD_NOT_LOAD 3: the task cannot be started as specified: bad input, an import
      that fails however it fails (an exception, SystemExit, ...), not a @task, a bad
      factory, arguments that do not fit (CouldNotLoad); never retried.
    - INVALID_RESULT 4: the result cannot be encoded, or is too large (InvalidResult);
      never retried.
    """

    SUCCESS = 0
    TASK_RAISED = 1
    COULD_NOT_LOAD = 3
    INVALID_RESULT = 4


# Exit codes for which running the same spec again cannot help: the Job's
# podFailurePolicy fails the Job at once on them (jobs.py).
NON_RETRIABLE_EXIT_CODES = (ExitCode.COULD_NOT_LOAD, ExitCode.INVALID_RESULT)

# Error types the runner itself reports (rather than the task's own exception type).
COULD_NOT_LOAD = "CouldNotLoad"
INVALID_RESULT = "InvalidResult"


@dataclass(frozen=True)
class Report:
    """A parsed termination message: `ok` with `result`, or not `ok` with `error`.

    `error` is `{"type", "message", "traceback"}` with string values (missing ones are
    empty strings) when `ok` is False, else empty.
    """

    ok: bool
    result: Any = None
    error: dict[str, str] = field(default_factory=dict)


def parse_report(text: Optional[str]) -> Optional[Report]:
    """The runner's report in a termination message, or None if there is none.

    None for an empty message, text that is not JSON (e.g. kubelet's log tail under
    FallbackToLogsOnError, or a message cut by kubelet) and JSON without a boolean `ok`:
    the caller then judges the pod by its exit code alone.
    """
    if not text:
        return None
    try:
        # Not json.loads: a pod may write any 4096 bytes, e.g. 2,000 nested lists, which
        # would raise RecursionError in the operator (lime_task.values.decode_bounded).
        data = values.decode_bounded(text)[0]
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        return None
    if data["ok"]:
        # The runner never reports such a result; a task that wrote the message itself
        # can. It is refused as the runner would refuse it, never stored changed.
        problems = values.problems(data.get("result"), "result", limit=1)
        if problems:
            message = f"the task's result cannot be reported exactly: {problems[0]}"
            return Report(ok=False, error={"type": INVALID_RESULT, "message": message, "traceback": ""})
        return Report(ok=True, result=data.get("result"))
    raw = data.get("error")
    raw = raw if isinstance(raw, dict) else {}
    error = {key: raw[key] if isinstance(raw.get(key), str) else "" for key in ("type", "message", "traceback")}
    return Report(ok=False, error=error)

# What '{"ok":true,"result":' + '}' costs around the result itself.
_SUCCESS_OVERHEAD = len('{"ok":true,"result":}')
_TRUNCATED = "...\n"


class InvalidResult(Exception):
    """The task's return value cannot travel in the termination message."""


def _dumps(value: Any) -> str:
    # allow_nan=False: NaN/Infinity are not JSON; the API server would refuse them later,
    # far from the task that produced them.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def success_message(result: Any, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """The success message for `result`; InvalidResult if it would not arrive exactly
    (lime_task.values: the message names the place, e.g. ``result['rows'][0]``, and the
    rule) or is too large."""
    try:
        values.check(result, "result")
    except values.ValueProblem as problem:
        raise InvalidResult(f"the task's result cannot be reported exactly: {problem}") from None
    try:
        encoded = _dumps(result)
    except RecursionError:
        raise InvalidResult(
            "the task's result is nested too deeply to encode as JSON; return a flatter summary"
        ) from None
    except Exception as error:  # TypeError/ValueError, or whatever a custom type raises
        raise InvalidResult(
            f"the task's result is not JSON-serialisable ({type(error).__name__}: {error}); "
            "return plain JSON data (dict, list, str, int, float, bool, None)"
        ) from None
    try:
        encoded.encode("utf-8")
    except UnicodeEncodeError as error:
        # Lone surrogates (e.g. bytes decoded with surrogateescape) have no UTF-8 form.
        raise InvalidResult(
            f"the task's result contains text that is not valid Unicode ({error.reason} at "
            f"position {error.start} of its JSON); return str values that are real text"
        ) from None
    message = '{"ok":true,"result":' + encoded + "}"
    size = _size(message)
    if size > limit:
        raise InvalidResult(
            f"the task's result is {_size(encoded)} bytes as JSON; the termination message "
            f"holds at most {limit} bytes ({limit - _SUCCESS_OVERHEAD} for the result). "
            "Return a small summary and store large data elsewhere"
        )
    _check_float_paths(result)
    return message


def _check_float_paths(result: Any) -> None:
    """InvalidResult if the pointers to the result's integral floats (the status's
    resultFloatPaths, lime_task.values.float_paths) would not fit the CRD: one longer
    than RESULT_FLOAT_PATH_MAX_LENGTH, more than TERMINATION_FLOAT_PATHS_MAX of them, or
    more than RESULT_FLOAT_PATHS_MAX_BYTES together. The status write would be refused
    after the task's work was done; refused here, the place is named instead."""
    paths = values.float_paths(result)
    if len(paths) > models.TERMINATION_FLOAT_PATHS_MAX:
        raise InvalidResult(
            f"the task's result holds {len(paths)} floats with an integral value (such as 2.0); the status "
            f"records the place of at most {models.TERMINATION_FLOAT_PATHS_MAX}. Return fewer, or ints")
    for pointer in paths:
        length = len(pointer)
        if length > models.RESULT_FLOAT_PATH_MAX_LENGTH:
            raise InvalidResult(
                f"the place of the float at {values.render_place('result', values.parse_pointer(pointer.removeprefix(values.NEGATIVE_ZERO_MARK)))} is a JSON pointer of "
                f"{length} characters ('~' and '/' in keys count twice); the status holds pointers of at most "
                f"{models.RESULT_FLOAT_PATH_MAX_LENGTH}. Use shorter keys above that float")
    total = _size(json.dumps(paths, ensure_ascii=False, separators=(",", ":")))
    if total > models.RESULT_FLOAT_PATHS_MAX_BYTES:
        raise InvalidResult(
            f"the places of the result's floats with an integral value (resultFloatPaths) are {total} bytes "
            f"as JSON; the status holds at most {models.RESULT_FLOAT_PATHS_MAX_BYTES}. Return fewer such "
            "floats, shorter keys or flatter data")


def _clean(text: Any) -> str:
    """`text` as a str that UTF-8 can carry: lone surrogates become "?", so writing
    the report can never fail on the error it describes."""
    if not isinstance(text, str):
        text = str(text)
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _cut_front(text: str, budget: int) -> str:
    """The last `budget` bytes of text (UTF-8 safe), marked as cut when shortened."""
    if _size(text) <= budget:
        return text
    if budget <= len(_TRUNCATED):
        return ""
    tail = text.encode("utf-8")[-(budget - len(_TRUNCATED)):].decode("utf-8", errors="ignore")
    return _TRUNCATED + tail


def _cut_back(text: str, budget: int) -> str:
    """The first `budget` bytes of text (UTF-8 safe), marked as cut when shortened."""
    if _size(text) <= budget:
        return text
    if budget <= len(_TRUNCATED):
        return ""
    head = text.encode("utf-8")[: budget - len(_TRUNCATED)].decode("utf-8", errors="ignore")
    return head + _TRUNCATED.rstrip("\n")


def failure_message(
    error_type: str, message: str, traceback: str = "", limit: int = TERMINATION_MESSAGE_LIMIT
) -> str:
    """The failure message, at most `limit` bytes.

    The traceback is cut from the front (its end names the failing line, which matters
    most); only if the type and message alone are too long is the message cut too.
    """
    error_type, message, traceback = (_clean(text) for text in (error_type, message, traceback))
    error_type = _cut_back(error_type, 256)

    def build(msg: str, tb: str) -> str:
        return _dumps({"ok": False, "error": {"type": error_type, "message": msg, "traceback": tb}})

    bare = build(message, "")
    if _size(bare) > limit:
        # JSON escaping can grow text up to 6x; shrink until it fits.
        budget = limit - _size(build("", ""))
        while budget > 0 and _size(build(_cut_back(message, budget), "")) > limit:
            budget -= max(1, (_size(build(_cut_back(message, budget), "")) - limit))
        return build(_cut_back(message, max(budget, 0)), "")
    budget = limit - _size(bare)
    while True:
        candidate = build(message, _cut_front(traceback, budget))
        excess = _size(candidate) - limit
        if excess <= 0:
            return candidate
        budget -= excess
