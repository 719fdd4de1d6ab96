"""Pure parsing for the `lime-task` command line: values, keyword arguments, exit codes.

Kept apart from `cli.py` (which talks to the cluster) so that every rule about what a
user may type is unit-tested without a cluster.
"""

from __future__ import annotations

import argparse
import enum
import json
import re
from typing import Any, Iterable

from .constants import STATES
from .models import MAX_RETRIES, MAX_TIMEOUT_SECONDS


class ExitCode(enum.IntEnum):
    """The process exit codes, documented in `lime-task --help`; scripts rely on them."""

    OK = 0
    FAILED = 1  # the task ended in FAILURE, or the command could not do what was asked
    USAGE = 2  # bad command line or bad input (argparse uses 2 as well)
    NOT_FOUND = 3  # no such task for this app (or nothing to show, e.g. no logs)
    TIMEOUT = 4  # waiting ended before the task finished
    UNAVAILABLE = 5  # the cluster, the broker or an installed component is missing
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


EXIT_CODES_HELP = """\
exit codes:
  0  success (for wait and send --wait: the task ended in SUCCESS)
  1  the task ended in FAILURE, or the command failed
  2  bad command line or bad input
  3  no such task for this app, or nothing to show (no logs yet)
  4  timed out waiting for the task
  5  cannot reach the cluster or the broker, or a component is not installed
"""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON the API server accepts; treat such words as text."""
    raise ValueError(name)


def parse_value(text: str) -> Any:
    """A command-line value: its JSON meaning when it is valid JSON, else the text itself.

    So `1` is the number 1, `true` a boolean, `[1, 2]` a list and `'"1"'` the string
    "1", while `hello` (not JSON) stays the string "hello". This is what a shell user
    means in nearly every case; quote a JSON string to force a string.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError:
        return text


def parse_kwargs(items: Iterable[str]) -> dict[str, Any]:
    """`--kwarg k=v` items as a dict; values follow :func:`parse_value`.

    ValueError names the item when it has no '=', the name is not a Python identifier
    (it becomes a keyword argument of the task function) or a name is repeated.
    """
    result: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--kwarg {item!r} is not NAME=VALUE")
        key = key.strip()
        if not _IDENTIFIER.match(key):
            raise ValueError(f"--kwarg {item!r}: {key!r} is not a Python identifier")
        if key in result:
            raise ValueError(f"--kwarg {key!r} is given twice")
        result[key] = parse_value(value)
    return result


def _bounded_int(text: str, what: str, low: int, high: int | None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be a whole number, got {text!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise argparse.ArgumentTypeError(f"{what} must be {bounds}, got {value}")
    return value


def task_timeout(text: str) -> int:
    """--timeout of `send`: the task's spec.timeoutSeconds, bounded like the CRD."""
    return _bounded_int(text, "--timeout (seconds)", 1, MAX_TIMEOUT_SECONDS)


def ttl_seconds(text: str) -> int:
    """--ttl of `send`: the task's spec.ttlSecondsAfterFinished (>= 0, like the CRD)."""
    return _bounded_int(text, "--ttl (seconds)", 0, None)


def retries(text: str) -> int:
    return _bounded_int(text, "--retries", 0, MAX_RETRIES)


def wait_seconds(text: str) -> float:
    """How long `wait` waits: positive seconds, fractions allowed."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"timeout must be a number of seconds, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"timeout must be a positive number of seconds, got {text!r}")
    return value


def positive_count(text: str) -> int:
    return _bounded_int(text, "--max", 1, None)


def state(text: str) -> str:
    """A task state, case-insensitive (`--state failure` is FAILURE)."""
    value = text.strip().upper()
    if value not in STATES:
        raise argparse.ArgumentTypeError(f"state must be one of {', '.join(STATES)}, got {text!r}")
    return value
