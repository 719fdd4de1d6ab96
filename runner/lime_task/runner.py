"""The task pod's entry point: `python -m lime_task.runner` (also `lime-task run`).

It reads the task from env LIME_TASK (JSON: id, task, app, args, kwargs, namespace),
imports the function, refuses anything not decorated with @task, builds the application
object (see lime_task.apps), calls the function (coroutine functions under asyncio.run)
and reports the outcome in the termination message (see lime_task.termination) at
LIME_TASK_TERMINATION_PATH (default /dev/termination-log). The pod therefore needs no
Kubernetes API rights at all.

Exit codes (`ExitCode`, the operator maps them to reasons, docs/architecture.md):

- 0 SUCCESS: the function returned a JSON result that fits the message.
- 1 TASK_RAISED: the function (or the app factory when called) raised; retried.
- 3 COULD_NOT_LOAD: no or malformed LIME_TASK, import error, not a @task, a factory that
  cannot be loaded, or arguments that do not fit the function's signature (checked with
  inspect.signature before the call, so a TypeError raised *inside* the task still
  counts as the task raising). Never retried: the same spec fails the same way.
- 4 INVALID_RESULT: the result is not JSON or larger than the message can hold.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import inspect
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from pydantic import ValidationError

from .apps import FactoryLoadError, factory_from_env
from .constants import ENV_TASK, ENV_TERMINATION_PATH, TERMINATION_MESSAGE_PATH
from .models import RunnerTask, describe_errors
from .tasks import TaskLoadError, load_task
from .termination import InvalidResult, failure_message, success_message

log = logging.getLogger("lime_task.runner")


class ExitCode(enum.IntEnum):
    SUCCESS = 0
    TASK_RAISED = 1
    COULD_NOT_LOAD = 3
    INVALID_RESULT = 4


class CouldNotLoad(Exception):
    """The task cannot be started as specified; the error type reported for exit code 3."""


class _Failure(Exception):
    """Internal: carries the exit code and the termination message out of `_run`."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _format_traceback(error: BaseException) -> str:
    """The traceback from the first frame outside this module: the user's code matters."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


def _fail(code: ExitCode, error: BaseException, error_type: Optional[str] = None) -> _Failure:
    """A failure report. For the runner's own verdicts (error_type given) the traceback is
    that of the underlying cause, e.g. the ImportError inside the user's module, if any."""
    if error_type is None:
        tb = _format_traceback(error)
    else:
        tb = _format_traceback(error.__cause__) if error.__cause__ is not None else ""
    return _Failure(code, failure_message(error_type or type(error).__name__, str(error), tb))


def parse_task(raw: Optional[str]) -> RunnerTask:
    """The runner's input from the LIME_TASK value; CouldNotLoad naming what is wrong."""
    if raw is None or not raw.strip():
        raise CouldNotLoad(f"environment variable {ENV_TASK} is not set: nothing to run")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise CouldNotLoad(f"{ENV_TASK} is not valid JSON: {error}") from None
    try:
        return RunnerTask.model_validate(data)
    except ValidationError as error:
        raise CouldNotLoad(f"{ENV_TASK} is not a valid task: {describe_errors(error, '(root)')}") from None


def check_signature(function: Callable[..., Any], path: str, app: Any, args: list, kwargs: dict) -> None:
    """CouldNotLoad when (app, *args, **kwargs) cannot bind to the function's parameters."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return  # no introspectable signature (some builtins): let the call decide
    try:
        signature.bind(app, *args, **kwargs)
    except TypeError as error:
        raise CouldNotLoad(f"arguments do not fit {path}{signature}: {error}") from None


def _call(function: Callable[..., Any], app: Any, args: list, kwargs: dict) -> Any:
    if inspect.iscoroutinefunction(function):
        return asyncio.run(function(app, *args, **kwargs))
    result = function(app, *args, **kwargs)
    if inspect.iscoroutine(result):  # e.g. a sync wrapper around an async function
        result = asyncio.run(result)
    return result


def _run(environ: Mapping[str, str]) -> str:
    """Run the task; return the success message or raise _Failure."""
    try:
        spec = parse_task(environ.get(ENV_TASK))
        function = load_task(spec.task)
        factory = factory_from_env(environ)
    except (CouldNotLoad, TaskLoadError, FactoryLoadError) as error:
        raise _fail(ExitCode.COULD_NOT_LOAD, error, "CouldNotLoad") from error

    log.info("running %s for app %s (task %s)", spec.task, spec.app, spec.id)
    try:
        app = factory(spec.app)
    except Exception as error:
        log.error("the application factory raised for app %s: %r", spec.app, error)
        raise _fail(ExitCode.TASK_RAISED, error) from error

    try:
        check_signature(function, spec.task, app, spec.args, spec.kwargs)
    except CouldNotLoad as error:
        raise _fail(ExitCode.COULD_NOT_LOAD, error, "CouldNotLoad") from error

    started = time.monotonic()
    try:
        result = _call(function, app, spec.args, spec.kwargs)
    except (Exception, SystemExit) as error:
        log.error(
            "task %s raised %s after %.3fs: %s", spec.task, type(error).__name__, time.monotonic() - started, error
        )
        raise _fail(ExitCode.TASK_RAISED, error) from error
    elapsed = time.monotonic() - started

    try:
        message = success_message(result)
    except InvalidResult as error:
        log.error("task %s returned an invalid result after %.3fs: %s", spec.task, elapsed, error)
        raise _fail(ExitCode.INVALID_RESULT, error, "InvalidResult") from error
    log.info("task %s succeeded in %.3fs", spec.task, elapsed)
    return message


def _write(path: Path, message: str) -> None:
    try:
        path.write_text(message, encoding="utf-8")
    except OSError as error:
        # The exit code still tells the operator success from failure; say why the
        # details are missing instead of crashing with a second error.
        print(f"lime_task.runner: cannot write the termination message to {path}: {error}", file=sys.stderr)


def run(environ: Mapping[str, str], termination_path: Path) -> ExitCode:
    """Run the task described by `environ`, write the termination message, return the code."""
    try:
        message = _run(environ)
        code = ExitCode.SUCCESS
    except _Failure as failure:
        message, code = failure.message, failure.code
    _write(termination_path, message)
    if code is ExitCode.COULD_NOT_LOAD:
        log.error("could not load the task: %s", json.loads(message)["error"]["message"])
    log.info("exit code %d (%s)", code, code.name)
    return code


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    log.setLevel(logging.INFO)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lime_task.runner",
        description=f"Run the Lime Task given in env {ENV_TASK} and report it in the termination message.",
    )
    parser.add_argument(
        "--termination-path",
        default=None,
        help=f"where to write the outcome (default: env {ENV_TERMINATION_PATH}, else {TERMINATION_MESSAGE_PATH})",
    )
    options = parser.parse_args(argv)
    _configure_logging()
    path = options.termination_path or os.environ.get(ENV_TERMINATION_PATH) or TERMINATION_MESSAGE_PATH
    return int(run(os.environ, Path(path)))


if __name__ == "__main__":
    sys.exit(main())
