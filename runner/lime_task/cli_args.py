"""Pure parsing for the `lime-task` command line: values, keyword arguments, exit codes.

Kept apart from `cli.py` (which talks to the cluster) so that every rule about what a
user may type is unit-tested without a cluster.
"""

from __future__ import annotations

import argparse
import enum
import json
import re
from typing import Any, Callable, Iterable

from . import run_options, values
from .constants import STATES


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


# A JSON argument that names a key twice: it is JSON, not text, and is refused (the HTTP
# API refuses such a body too).
DuplicateKey = values.DuplicateKey


def parse_value(text: str) -> Any:
    """A command-line value: its JSON meaning when it is valid JSON, else the text itself.

    So `1` is the number 1, `true` a boolean, `[1, 2]` a list and `'"1"'` the string
    "1", while `hello` (not JSON) stays the string "hello". This is what a shell user
    means in nearly every case; quote a JSON string to force a string. DuplicateKey (a
    ValueError) for JSON whose object names a key twice: it is JSON, not text.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=values.unique_members)
    except DuplicateKey as error:
        raise DuplicateKey(error.key, f"argument {text[:80]!r}") from None
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
        if not _IDENTIFIER.fullmatch(key):
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


def option_value(option: run_options.RunOption) -> Callable[[str], Any]:
    """The argparse type of a run option's flag: for an int option a whole number
    within its bounds (the CRD's), refused naming the flag and unit, e.g.
    ``--timeout (seconds) must be between 1 and 604800``; else the text as typed."""
    if option.kind is not int:
        return str
    what = f"{option.cli_flag} ({option.unit})" if option.unit else str(option.cli_flag)
    low = option.low if option.low is not None else -(2**63)
    return lambda text: _bounded_int(text, what, low, option.high)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The flags of the run options that have one (run_options.CLI_OPTIONS), for `send`
    and `schedule create`; read them back with :func:`run_options_of`."""
    for option in run_options.CLI_OPTIONS:
        parser.add_argument(option.cli_flag, type=option_value(option), metavar=option.unit.upper() or None,
                            help=option.doc)


def run_options_of(parsed: argparse.Namespace) -> dict[str, Any]:
    """The run options a command line gave, as keywords of send_task_with_options
    (None for a flag not given)."""
    return {option.name: getattr(parsed, str(option.cli_dest)) for option in run_options.CLI_OPTIONS}


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
