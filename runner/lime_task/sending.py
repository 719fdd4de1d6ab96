"""Pure logic of `send_task`: check the arguments and build the LimeTask object.

Nothing here talks to the API server, so every refusal is unit-tested; `api.py` only
adds the create call. Checks happen before anything is created, so a refused task leaves
no half-made object behind.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any, Mapping, Optional, Sequence

from pydantic import ValidationError

from . import run_options, values
from .constants import API_VERSION, KIND, LABEL_APP, MAX_ARGUMENTS_BYTES
from .errors import InvalidTaskError
from .models import TASK_PATH_MAX, LimeTaskSpec, describe_errors
from .tasks import TaskOptions, options_of, registered


def app_name_of(app: Any) -> str:
    """The application's name: `app` itself if it is a str, else its `.name`."""
    if isinstance(app, str):
        name = app
    else:
        name = getattr(app, "name", None)
        if not isinstance(name, str):
            raise InvalidTaskError(
                f"app must be an application object with a string .name or a name string, got {app!r}"
            )
    if not name:
        raise InvalidTaskError("app name is empty")
    return name


def task_name_and_options(task: Any) -> tuple[str, Optional[TaskOptions]]:
    """The dotted task name and the @task defaults for a task given by name or function.

    A name is looked up in this process's registry of decorated functions: defaults
    apply when the task's module has been imported here, and never cause an import.
    """
    if isinstance(task, str):
        function = registered(task)
        return task, (options_of(function) if function is not None else None)
    options = options_of(task)
    if options is None:
        raise InvalidTaskError(f"{task!r} is not decorated with @task; pass a @task function or its dotted name")
    if "<locals>" in options.name:
        raise InvalidTaskError(
            f"task {options.name!r} is defined inside a function; the runner can only import "
            "module-level functions"
        )
    return options.name, options


def check_json_arguments(task_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """InvalidTaskError naming the first argument value that cannot arrive exactly
    (lime_task.values: JSON types, int64, finite floats, valid Unicode, str keys,
    nesting), by its place, e.g. ``args[1]['rows'][0]``, and the rule."""
    try:
        values.check_arguments(args, kwargs)
    except values.ValueProblem as problem:
        raise InvalidTaskError(f"task {task_name!r} cannot be sent: {problem}") from None


def build_spec(
    task_name: str,
    app_name: str,
    args: Sequence[Any] = (),
    kwargs: Optional[Mapping[str, Any]] = None,
    *,
    defaults: Optional[TaskOptions] = None,
    **options: Any,
) -> LimeTaskSpec:
    """The validated spec of `task_name(app, *args, **kwargs)` for `app_name`.

    `options` are run options (run_options.OPTIONS) by keyword; those given (not None)
    win over the @task `defaults`. Raises TypeError for an unknown option keyword, and
    InvalidTaskError naming the field for anything LimeTaskSpec or lime_task.values
    refuses (the rules of the CRD and of exact values), before anything is created.
    """
    run_options.check_names("build_spec()", options)
    kwargs = dict(kwargs or {})
    if type(args) not in (list, tuple):
        raise InvalidTaskError(f"args of task {task_name!r} must be a list or tuple, got {type(args).__name__}")
    if len(task_name) > TASK_PATH_MAX:
        raise InvalidTaskError(
            f"task name {task_name[:40]!r}... is {len(task_name)} characters; at most {TASK_PATH_MAX}, so "
            "that the event routing key core.task.<name>.failure.v1 fits AMQP's 255 bytes"
        )
    check_json_arguments(task_name, args, kwargs)
    chosen: dict[str, Any] = {**(defaults.defaults() if defaults else {}), **run_options.given(options)}
    # A mapping (resources) as a dict of its own: pydantic takes no other Mapping.
    chosen = {key: dict(value) if isinstance(value, Mapping) else value for key, value in chosen.items()}
    try:
        # Copies, so that changing the caller's objects later does not change the task.
        spec = LimeTaskSpec(
            task=task_name, app=app_name, args=copy.deepcopy(list(args)), kwargs=copy.deepcopy(kwargs), **chosen
        )
    except ValidationError as error:
        raise InvalidTaskError(f"invalid task {task_name!r}: {describe_errors(error, 'spec')}") from None
    try:
        spec.check_arguments_size()
    except ValueError as error:
        raise InvalidTaskError(f"task {task_name!r}: {error}") from None
    return spec


run_options.with_option_keywords(build_spec)


def new_task_id() -> str:
    """A fresh task id: also the LimeTask's metadata.name, so a valid DNS subdomain."""
    return str(uuid.uuid4())


def build_task_object(spec: LimeTaskSpec, task_id: str, namespace: str) -> dict[str, Any]:
    """The LimeTask as sent to the API server; the app label makes `-l` selection work."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": task_id, "namespace": namespace, "labels": {LABEL_APP: spec.app}},
        "spec": spec.to_wire(),
    }


__all__ = [
    "MAX_ARGUMENTS_BYTES",
    "app_name_of",
    "build_spec",
    "build_task_object",
    "check_json_arguments",
    "new_task_id",
    "task_name_and_options",
]
