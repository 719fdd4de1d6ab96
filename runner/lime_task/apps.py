"""The application object a task receives as its first argument.

In the original Lime Task the task got the live application of the web process. A task
pod has no such process, so the runner builds one from the app name with a factory:

- `LIME_TASK_APP_FACTORY=module:callable` names a callable that takes the app name and
  returns the application object (e.g. `my_package.app:create_app`). It is imported and
  called in the task pod before the task runs.
- Without it the task gets `Application(name)`: a small object with `.name`, enough for
  tasks that only need to know which application they work for.

Errors are split by what a retry could change: a factory that cannot be *loaded* (bad
spec, import error, not callable) is a `FactoryLoadError` and fails the task for good
(exit 3, CouldNotLoad); a factory that *raises when called* is treated like the task
raising (exit 1, retried), because building an application usually means connecting to
databases or services that may be back a moment later.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from .constants import ENV_APP_FACTORY

_FACTORY_SPEC = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Application:
    """The default application object: just the application's name."""

    name: str


class FactoryLoadError(Exception):
    """LIME_TASK_APP_FACTORY does not name an importable callable."""


def load_factory(spec: Optional[str]) -> Callable[[str], Any]:
    """The factory named by `module:callable`, or the default `Application` when empty."""
    if not spec:
        return Application
    if not _FACTORY_SPEC.fullmatch(spec):
        raise FactoryLoadError(
            f"{ENV_APP_FACTORY}={spec!r} is not of the form 'module:callable' "
            "(e.g. 'my_package.app:create_app')"
        )
    module_name, attribute_path = spec.split(":", 1)
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:
        raise FactoryLoadError(
            f"{ENV_APP_FACTORY}={spec!r}: importing {module_name!r} failed: {type(error).__name__}: {error}"
        ) from error
    for attribute in attribute_path.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            raise FactoryLoadError(
                f"{ENV_APP_FACTORY}={spec!r}: module {module_name!r} has no attribute {attribute_path!r}"
            ) from None
    if not callable(target):
        raise FactoryLoadError(f"{ENV_APP_FACTORY}={spec!r} is not callable")
    return target


def factory_from_env(environ: Mapping[str, str] = os.environ) -> Callable[[str], Any]:
    """The factory configured in the environment (see the module docstring)."""
    return load_factory(environ.get(ENV_APP_FACTORY, "").strip())
