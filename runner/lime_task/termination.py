"""The termination message: how a task pod reports its outcome without any API rights.

The runner writes one compact JSON object to the container's termination-message file;
kubelet copies it (at most 4096 bytes) into the pod status, where the operator reads it:

- success: `{"ok": true, "result": <json>}`
- failure: `{"ok": false, "error": {"type": ..., "message": ..., "traceback": ...}}`

Pure functions only, so every size rule is unit-tested without a pod.
"""

from __future__ import annotations

import json
from typing import Any

from .constants import TERMINATION_MESSAGE_LIMIT

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
    """The success message for `result`; InvalidResult if it is not JSON or too large."""
    try:
        encoded = _dumps(result)
    except (TypeError, ValueError) as error:
        raise InvalidResult(
            f"the task's result is not JSON-serialisable ({type(error).__name__}: {error}); "
            "return plain JSON data (dict, list, str, int, float, bool, None)"
        ) from None
    message = '{"ok":true,"result":' + encoded + "}"
    size = _size(message)
    if size > limit:
        raise InvalidResult(
            f"the task's result is {_size(encoded)} bytes as JSON; the termination message "
            f"holds at most {limit} bytes ({limit - _SUCCESS_OVERHEAD} for the result). "
            "Return a small summary and store large data elsewhere"
        )
    return message


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
