"""The application factory: `LIME_TASK_APP_FACTORY=factory_demo.app:create_app`.

The runner calls `create_app(name)` in the task pod, once per run, with the task's
`spec.app`, and passes the result to the task as its first argument. This is where a
real application would open its database session or build its API clients; here the
application is its name and a settings dict read from the pod's environment.

If `create_app` raises (a bad setting, a database that is down), the task fails with
reason TaskRaised and is retried up to its `retries`: building an application often
touches services that come back a moment later. A factory that cannot be *imported*
fails the task as CouldNotLoad, never retried.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

SETTINGS_ENV = "FACTORY_DEMO_SETTINGS"
DEFAULT_SETTINGS = {"currency": "SEK", "environment": "development"}


class SettingsError(ValueError):
    """FACTORY_DEMO_SETTINGS is not a JSON object."""


@dataclass(frozen=True)
class CompanyApp:
    """What tasks receive instead of the default `lime_task.Application(name)`."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)

    def price(self, amount: float) -> str:
        return f"{amount:.2f} {self.settings['currency']}"


def load_settings(raw: str | None) -> dict[str, Any]:
    """The defaults, overridden by FACTORY_DEMO_SETTINGS (a JSON object) when set."""
    if not raw:
        return dict(DEFAULT_SETTINGS)
    try:
        given = json.loads(raw)
    except json.JSONDecodeError as error:
        raise SettingsError(f"{SETTINGS_ENV} is not valid JSON: {error}") from None
    if not isinstance(given, dict):
        raise SettingsError(f"{SETTINGS_ENV} must be a JSON object, got {type(given).__name__}")
    return {**DEFAULT_SETTINGS, **given}


def create_app(name: str) -> CompanyApp:
    return CompanyApp(name=name, settings=load_settings(os.environ.get(SETTINGS_ENV)))
