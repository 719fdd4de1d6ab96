"""The run options of a task: the one definition every way of sending a task derives from.

A run option is a field of the LimeTask spec that says how to run the task, not what to
run: its time limit, retries, image, resources and TTL. Every way of sending a task takes
them from `OPTIONS` instead of listing them:

- `send_task_with_options(...)` and `sending.build_spec(...)`: keywords named `name`;
- `@task(...)`: the keywords of the options marked `task_default`, as defaults;
- the HTTP API: members of the body's ``options`` named `wire` (docs/http-api.md);
- the CLI's ``send`` and ``schedule create``: the flag `cli_flag`, when it has one.

Adding an option is one entry here; the wire format then needs the field in
``crds/limetask.yaml`` and `models.LimeTaskSpec` (tests/unit/test_run_options.py checks
they agree), the operator's Job builder, and the docs. Values travel as keyword dicts
``{name: value}``; None always means "not given" (the @task default, else the
cluster's: the operator's settings).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional

from .models import MAX_RETRIES, MAX_TIMEOUT_SECONDS, MAX_TTL_SECONDS


@dataclass(frozen=True)
class RunOption:
    """One run option: its keyword `name`, the spec field `wire` it maps to (camelCase,
    also its HTTP body member), the JSON `kind` of its value (int, str or dict), a `doc`
    line saying what it does and what happens when it is not given, the inclusive bounds
    `low`..`high` of an int (None: unbounded; the CRD's minimum/maximum), the `unit` of an
    int ("seconds" or ""), the allowed `members` of a dict, whether `@task(...)` may give
    a default (`task_default`), and the CLI flag (`cli_flag`, None: not on the CLI)."""

    name: str
    wire: str
    kind: type
    doc: str
    low: Optional[int] = None
    high: Optional[int] = None
    unit: str = ""
    members: tuple[str, ...] = ()
    task_default: bool = False
    cli_flag: Optional[str] = None

    @property
    def cli_dest(self) -> Optional[str]:
        """The argparse attribute of `cli_flag` (``--ttl`` -> ``ttl``)."""
        return self.cli_flag.lstrip("-").replace("-", "_") if self.cli_flag else None

    def bounds_text(self) -> str:
        """``1..604800`` or ``>= 0``: the int bounds as @task's errors give them."""
        return f"{self.low}..{self.high}" if self.high is not None else f">= {self.low}"


# In the order the HTTP API's documents list them (docs/openapi.json).
OPTIONS: tuple[RunOption, ...] = (
    RunOption("timeout_seconds", "timeoutSeconds", int,
              "the task's time limit in seconds, over all attempts (the Job's activeDeadlineSeconds); "
              "not given: no limit", low=1, high=MAX_TIMEOUT_SECONDS, unit="seconds", task_default=True,
              cli_flag="--timeout"),
    RunOption("retries", "retries", int,
              f"how often a task that raised is run again (0-{MAX_RETRIES}); not given: 0",
              low=0, high=MAX_RETRIES, task_default=True, cli_flag="--retries"),
    RunOption("image", "image", str,
              "the task pod's image (the operator may refuse images it does not allow); "
              "not given: the operator's image for the app", cli_flag="--image"),
    RunOption("resources", "resources", dict,
              "the task container's resource limits and requests (Kubernetes quantities such as "
              "\"500m\", \"1Gi\"); not given: none set (a LimitRange of the namespace may add some)", members=("limits", "requests")),
    RunOption("ttl_seconds_after_finished", "ttlSecondsAfterFinished", int,
              "how long the finished task is kept, in seconds; not given: the operator's "
              "DEFAULT_TTL_SECONDS", low=0, high=MAX_TTL_SECONDS, unit="seconds", task_default=True, cli_flag="--ttl"),
)
NAMES: tuple[str, ...] = tuple(option.name for option in OPTIONS)
BY_NAME: dict[str, RunOption] = {option.name: option for option in OPTIONS}
BY_WIRE: dict[str, RunOption] = {option.wire: option for option in OPTIONS}
TASK_DEFAULTS: tuple[RunOption, ...] = tuple(option for option in OPTIONS if option.task_default)
CLI_OPTIONS: tuple[RunOption, ...] = tuple(option for option in OPTIONS if option.cli_flag)


def given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a keyword dict that were given (not None), in `OPTIONS` order."""
    return {name: options[name] for name in NAMES if options.get(name) is not None}


def check_names(owner: str, options: Iterable[str], allowed: Iterable[RunOption] = OPTIONS) -> None:
    """TypeError naming the first keyword of `options` that is not one of `allowed`, and
    the allowed ones: what Python says of an unknown keyword, plus the list."""
    names = [option.name for option in allowed]
    for name in options:
        if name not in names:
            raise TypeError(f"{owner} got an unexpected keyword argument {name!r}; the run options are "
                            f"{', '.join(names)}")


def keyword_parameters(allowed: Iterable[RunOption] = OPTIONS) -> list[inspect.Parameter]:
    """Keyword-only parameters (default None) for `allowed`, to show in signatures."""
    annotation = {int: Optional[int], str: Optional[str], dict: Optional[Mapping[str, Any]]}
    return [inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                              annotation=annotation[option.kind]) for option in allowed]


def with_option_keywords(
    function: Callable[..., Any], allowed: Iterable[RunOption] = OPTIONS
) -> Callable[..., Any]:
    """Give `function`, which takes the options as ``**options``, a signature listing them
    (before ``**options``' place, after its other keyword-only parameters), so that
    help(), inspect.signature and editors show every option by name."""
    signature = inspect.signature(function)
    kept = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    keyword_only = [p for p in kept if p.kind is inspect.Parameter.KEYWORD_ONLY]
    others = [p for p in kept if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    function.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*others, *keyword_parameters(allowed), *keyword_only])
    return function


def options_doc(allowed: Iterable[RunOption] = OPTIONS) -> str:
    """``- name: doc`` lines of `allowed`, for docstrings built from this table."""
    return "\n".join(f"    - ``{option.name}``: {option.doc}" for option in allowed)


__all__ = [
    "BY_NAME", "BY_WIRE", "CLI_OPTIONS", "NAMES", "OPTIONS", "RunOption", "TASK_DEFAULTS",
    "check_names", "given", "keyword_parameters", "options_doc", "with_option_keywords",
]
