"""The `@task` decorator and the lookup of task functions by dotted path.

A task is a plain function whose first argument is the application object. `@task`
leaves the function exactly as it was (it can still be called directly, e.g. in unit
tests) and only attaches a `TaskOptions` under the attribute `__lime_task__`. That marker
is what the runner checks before it calls anything: a LimeTask naming `os.system` or any
other importable callable is refused, so the CRD's `spec.task` cannot be turned into
"run an arbitrary function".

Options given to `@task(...)` are defaults for `send_task`: when the sending process has
imported the task's module (usual when an application sends its own tasks), `send_task`
finds them in the in-process registry by task name, with no import of its own (importing
user modules on send would run their import-time side effects in the web process).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar, overload

from . import run_options
from .models import TASK_PATH_MAX, TASK_PATH_PATTERN

MARKER = "__lime_task__"

F = TypeVar("F", bound=Callable[..., Any])

# name -> function, filled by @task at import time of the task modules.
_registry: dict[str, Callable[..., Any]] = {}


@dataclass(frozen=True)
class TaskOptions:
    """What `@task(...)` recorded about a function: its task name and the run options it
    gave as defaults, as ``(name, value)`` pairs of `run_options.TASK_DEFAULTS` (a tuple,
    so that the record stays immutable)."""

    name: str
    given: tuple[tuple[str, Any], ...] = ()

    def defaults(self) -> dict[str, Any]:
        """The run options `send_task` takes from the decorator when not given explicitly."""
        return dict(self.given)


class TaskLoadError(Exception):
    """The dotted path does not lead to a function decorated with @task.

    The runner maps it to exit code 3 (CouldNotLoad): loading will fail the same way
    on every retry, so the task is never retried.
    """


def _check_default(owner: str, option: run_options.RunOption, value: Any) -> None:
    """TypeError/ValueError naming the option and the function when a @task default
    breaks the option's type or bounds (run_options.OPTIONS)."""
    if option.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"@task option {option.name} of {owner} must be an integer, got {value!r}")
        if (option.low is not None and value < option.low) or (option.high is not None and value > option.high):
            raise ValueError(f"@task option {option.name} of {owner} must be {option.bounds_text()}, got {value}")
    elif not isinstance(value, option.kind):
        raise TypeError(f"@task option {option.name} of {owner} must be a {option.kind.__name__}, got {value!r}")


def default_name(function: Callable[..., Any]) -> str:
    """`module.qualname`: the path the runner imports the function from."""
    return f"{function.__module__}.{function.__qualname__}"


@overload
def task(function: F) -> F: ...


@overload
def task(function: None = None, *, name: Optional[str] = None, **options: Any) -> Callable[[F], F]: ...


def task(function: Optional[F] = None, *, name: Optional[str] = None, **options: Any) -> Any:
    """Mark a function as a Lime Task; usable bare (`@task`) or with options.

    `name` is the dotted path the task is sent under; the default is the function's
    `module.qualname`. Give it when the function is re-exported from a shorter public
    module: the runner imports that path, so it must lead to this same function.
    The keyword options (run_options.TASK_DEFAULTS) are defaults that `send_task` uses
    when the caller gives none. TypeError for an unknown keyword or a value of the wrong
    type, ValueError for one out of bounds, each naming the function.
    """
    run_options.check_names("@task", options, run_options.TASK_DEFAULTS)
    options = run_options.given(options)

    def decorate(fn: F) -> F:
        if not callable(fn) or isinstance(fn, type):
            raise TypeError(f"@task decorates functions, not {fn!r}")
        owner = default_name(fn)
        if name is not None and (not isinstance(name, str) or not re.fullmatch(TASK_PATH_PATTERN, name)):
            raise ValueError(
                f"@task name of {owner} must be a dotted import path like "
                f"'my_package.tasks.my_task', got {name!r}"
            )
        task_name = name or owner
        if len(task_name) > TASK_PATH_MAX:
            # The same bound as the CRD's spec.task: longer names make event routing keys
            # longer than AMQP allows, so such a task could never be sent.
            raise ValueError(
                f"@task name of {owner} is {len(task_name)} characters; at most {TASK_PATH_MAX} "
                "(the event routing key core.task.<name>.failure.v1 must fit AMQP's 255 bytes): "
                "give a shorter name=..."
            )
        for option_name, value in options.items():
            _check_default(owner, run_options.BY_NAME[option_name], value)
        recorded = TaskOptions(name=task_name, given=tuple(options.items()))
        setattr(fn, MARKER, recorded)
        _registry[recorded.name] = fn
        return fn

    if function is not None:
        if name is not None or options:
            raise TypeError("use @task or @task(name=..., ...), not both")
        return decorate(function)
    return decorate


run_options.with_option_keywords(task, run_options.TASK_DEFAULTS)


def options_of(function: Any) -> Optional[TaskOptions]:
    """The TaskOptions of a decorated function, None for anything else.

    The isinstance check (rather than "has the attribute") keeps objects that answer
    every attribute, such as mocks or proxies, from passing as tasks.
    """
    options = getattr(function, MARKER, None)
    return options if isinstance(options, TaskOptions) else None


def registered(name: str) -> Optional[Callable[..., Any]]:
    """The function registered under `name` in this process, if its module was imported."""
    return _registry.get(name)


def _import_attribute(path: str) -> Any:
    """Import `pkg.module.attr[.attr...]`, trying the longest importable module prefix.

    A ModuleNotFoundError for the prefix itself means "try a shorter prefix"; any other
    error raised while importing (a bug or a missing dependency inside the user's module)
    is the real reason and is reported as such.
    """
    parts = path.split(".")
    missing: Optional[ModuleNotFoundError] = None
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and (module_name == error.name or module_name.startswith(error.name + ".")):
                missing = missing or error
                continue
            raise TaskLoadError(f"importing module {module_name!r} failed: {type(error).__name__}: {error}") from error
        except Exception as error:  # the module itself raised while being imported
            raise TaskLoadError(f"importing module {module_name!r} failed: {type(error).__name__}: {error}") from error
        target: Any = module
        for attribute in parts[split:]:
            try:
                target = getattr(target, attribute)
            except AttributeError:
                raise TaskLoadError(
                    f"module {module_name!r} has no attribute {'.'.join(parts[split:])!r}"
                ) from None
        return target
    raise TaskLoadError(f"cannot import task {path!r}: {missing}")


def load_task(path: str) -> Callable[..., Any]:
    """Import the function a LimeTask names and make sure it is a @task.

    Raises TaskLoadError naming the path and the reason.
    """
    if not isinstance(path, str) or not re.fullmatch(TASK_PATH_PATTERN, path):
        raise TaskLoadError(f"task {path!r} is not a dotted import path like 'my_package.tasks.my_task'")
    function = _import_attribute(path)
    if options_of(function) is None:
        raise TaskLoadError(
            f"{path!r} is not a Lime Task: only functions decorated with @task can be run"
        )
    if not callable(function):
        raise TaskLoadError(f"{path!r} is not callable")
    return function
