"""The task pod's entry point: `python -m lime_task.runner` (also `lime-task run`).

It reads the task from env LIME_TASK (JSON: id, task, app, args, kwargs, namespace),
imports the function, refuses anything not decorated with @task, builds the application
object (see lime_task.apps), calls the function (coroutine functions under asyncio.run)
and reports the outcome in the termination message (see lime_task.termination) at
LIME_TASK_TERMINATION_PATH (default /dev/termination-log). The pod therefore needs no
Kubernetes API rights at all.

Exit codes: `lime_task.termination.ExitCode` (the one definition, shared with the
operator; docs/architecture.md "Runner"). Whatever happens while loading or calling the
task - any BaseException, SystemExit and KeyboardInterrupt included, or an error while
encoding the report - ends with a report in the termination message: an import that
fails, however it fails, is CouldNotLoad (exit 3, never retried); anything raised by the
task or the factory's call is exit 1.

SIGTERM - Kubernetes stopping the pod: the task's deadline, a cancelled task, an
eviction, a node drain - interrupts the task (``Terminated`` is raised where it runs, so
its ``finally`` blocks and context managers run) and the runner exits 143 (128 +
SIGTERM) at once, without a report: the operator tells from the Job and the pod why it
was stopped. Without a handler the runner, PID 1 in its container, would ignore SIGTERM
(the kernel's rule for a PID namespace's init) and run on until SIGKILL at the end of
the grace period (30 s by default).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import os
import signal
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
from .termination import (
    COULD_NOT_LOAD,
    ExitCode,
    InvalidResult,
    failure_message,
    success_message,
)

log = logging.getLogger("lime_task.runner")


class CouldNotLoad(Exception):
    """The task cannot be started as specified; the error type reported for exit code 3."""


class Terminated(BaseException):
    """SIGTERM arrived: Kubernetes is stopping the pod. A BaseException, like
    KeyboardInterrupt, so that ``except Exception`` in a task does not swallow it."""


# What a shell reports for a process ended by SIGTERM; kubelet shows it as the exit code.
TERMINATED_EXIT_CODE = 128 + signal.SIGTERM


def _on_sigterm(signum: int, frame: Any) -> None:
    # One is enough: a second SIGTERM during the task's cleanup must not cut it short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated("the pod is being stopped (SIGTERM)")


class _Failure(Exception):
    """Internal: carries the exit code and the termination message out of `_run`."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _format_traceback(error: BaseException) -> str:
    """The traceback from the first frame outside this module: the user's code matters.

    Never raises: an exception whose __str__ raises still gets its frames reported.
    """
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    try:
        return "".join(traceback.format_exception(type(error), error, tb))
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the report
        return "".join(traceback.format_list(traceback.extract_tb(tb))) + f"{type(error).__name__}: <unprintable>\n"


def describe(error: BaseException) -> str:
    """A message for any exception, never raising.

    SystemExit and KeyboardInterrupt usually carry no useful text (str(SystemExit(2)) is
    "2"), so they say what happened; an exception whose __str__ raises says that.
    """
    if isinstance(error, SystemExit):
        return f"sys.exit({error.code!r}) was called"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt, e.g. SIGINT)"
    try:
        return str(error)
    except Exception as broken:  # noqa: BLE001 - see docstring
        return f"<{type(error).__name__} whose message cannot be printed: {type(broken).__name__}>"


def _fail(code: ExitCode, error: BaseException, error_type: Optional[str] = None) -> _Failure:
    """A failure report. For the runner's own verdicts (error_type given) the traceback is
    that of the underlying cause, e.g. the ImportError inside the user's module, if any."""
    if error_type is None:
        tb = _format_traceback(error)
    else:
        tb = _format_traceback(error.__cause__) if error.__cause__ is not None else ""
    return _Failure(code, failure_message(error_type or type(error).__name__, describe(error), tb))


class _LoadFailed(Exception):
    """Internal: importing the task raised something that is not an Exception."""


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
        try:
            function = load_task(spec.task)
            factory = factory_from_env(environ)
        except (TaskLoadError, FactoryLoadError, Terminated):
            raise
        except BaseException as error:
            # tasks.load_task turns Exceptions into TaskLoadError; a module that calls
            # sys.exit() (venv.__main__) or runs code that raises KeyboardInterrupt on
            # import lands here. Retrying cannot help: the same import fails the same way.
            raise _LoadFailed(
                f"importing {spec.task!r} failed: {type(error).__name__}: {describe(error)}"
            ) from error
    except (CouldNotLoad, TaskLoadError, FactoryLoadError, _LoadFailed) as error:
        raise _fail(ExitCode.COULD_NOT_LOAD, error, COULD_NOT_LOAD) from error

    log.info("running %s for app %s (task %s)", spec.task, spec.app, spec.id)
    try:
        app = factory(spec.app)
    except Terminated:
        raise
    except BaseException as error:
        log.error("the application factory raised for app %s: %s: %s", spec.app, type(error).__name__,
                  describe(error))
        raise _fail(ExitCode.TASK_RAISED, error) from error

    try:
        check_signature(function, spec.task, app, spec.args, spec.kwargs)
    except CouldNotLoad as error:
        raise _fail(ExitCode.COULD_NOT_LOAD, error, COULD_NOT_LOAD) from error

    started = time.monotonic()
    try:
        result = _call(function, app, spec.args, spec.kwargs)
    except Terminated:
        log.warning("task %s stopped after %.3fs: the pod is being stopped (SIGTERM)", spec.task,
                    time.monotonic() - started)
        raise
    except BaseException as error:  # SystemExit, KeyboardInterrupt, CancelledError too
        log.error(
            "task %s raised %s after %.3fs: %s", spec.task, type(error).__name__, time.monotonic() - started,
            describe(error),
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


def run(environ: Mapping[str, str], termination_path: Path) -> int:
    """Run the task described by `environ`, write the termination message, return the
    exit code (an ExitCode; TERMINATED_EXIT_CODE, with no message, after SIGTERM)."""
    try:
        message = _run(environ)
        code = ExitCode.SUCCESS
    except Terminated:
        log.info("exit code %d (SIGTERM)", TERMINATED_EXIT_CODE)
        return TERMINATED_EXIT_CODE
    except _Failure as failure:
        message, code = failure.message, failure.code
    except BaseException as error:  # noqa: BLE001 - a report even when the runner itself fails
        # Every phase of _run reports its own failures; reaching this means an error
        # while building the report (or a bug here). Say so rather than exit silently.
        message = failure_message(
            type(error).__name__, f"the runner failed while reporting: {describe(error)}",
            _format_traceback(error),
        )
        code = ExitCode.TASK_RAISED
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
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = int(run(os.environ, Path(path)))
    except Terminated:  # between the task's end and the report: the report is not needed
        code = TERMINATED_EXIT_CODE
    if code == TERMINATED_EXIT_CODE:
        # At once, even if the task left non-daemon threads running: the pod is stopping.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
