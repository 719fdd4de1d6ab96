"""`lime-task generate tasks`: scaffold a tasks module in a Python package.

Like the original `lime-project generate tasks`, it writes ``<package>/tasks/__init__.py``
and ``<package>/tasks/lime.py`` with one example ``@task``. Planning (which files, what
text) is pure; `write` refuses to overwrite anything, checking every file before it
writes the first one, so a refused run leaves the package untouched.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


class ScaffoldError(Exception):
    """The scaffold cannot be written; the message says what to do instead."""


TASKS_INIT = '''"""Lime Task tasks of {package}.

Each module here holds functions decorated with @task; send one by its dotted path,
e.g. "{package}.tasks.lime.get_lime_company".
"""
'''

# A raw docstring: the curl example's line continuations must stay backslashes.
TASKS_EXAMPLE = '''r"""Example Lime Task tasks: each runs in its own pod, started by send_task.

Send one from Python:

    from lime_task import send_task
    status = send_task("{package}.tasks.lime.get_lime_company", app, 1001, ["name"])

or from a shell:

    lime-task send {package}.tasks.lime.get_lime_company --app my-app 1001 '["name"]' --wait

or with an HTTP POST to the Lime Task HTTP API (docs/http-api.md), as this pod's
ServiceAccount; the API decides which app the token acts for:

    curl -X POST "$LIME_TASK_API_URL/v1/tasks" \\
      -H "Authorization: Bearer $(cat /var/run/secrets/lime-task/token)" \\
      -H "Content-Type: application/json" \\
      -d '{{"task": "{package}.tasks.lime.get_lime_company", "args": [1001, ["name"]]}}'
"""

from lime_task import task


@task
def get_lime_company(app, id, props):
    """Describe a company.

    The first argument is always the application object the runner builds for the
    task's app. The arguments arrive as JSON values; the return value must be JSON too
    and small (at most a few kilobytes): a summary of what was done, not the data.
    """
    name = getattr(app, "name", app)
    return dict(description=f"company {{id}} of {{name}}: {{', '.join(props)}}")
'''


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    text: str


def dotted_package_name(directory: Path) -> str:
    """The import name of a package directory: its name, prefixed by every parent package.

    ``src/my_app/billing`` (each with an ``__init__.py`` up to ``my_app``) is
    ``my_app.billing``, the prefix the task names need.
    """
    directory = directory.resolve()
    parts = [directory.name]
    parent = directory.parent
    while (parent / "__init__.py").is_file() and parent != parent.parent:
        parts.append(parent.name)
        parent = parent.parent
    return ".".join(reversed(parts))


def find_package(start: Path) -> Path:
    """The package to scaffold into when --package is not given.

    `start` itself when it is a package, else its only sub-directory that is one (tests
    directories aside); anything else is ambiguous and the user must say.
    """
    if (start / "__init__.py").is_file():
        return start
    candidates = sorted(
        child
        for child in start.iterdir()
        if child.is_dir() and (child / "__init__.py").is_file() and child.name not in ("tests", "test")
    )
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(c.name for c in candidates) or "none"
    raise ScaffoldError(
        f"cannot tell which package to add tasks to in {start} (packages found: {found}); "
        "pass --package DIR"
    )


def plan(package_dir: Path, package: Optional[str] = None) -> list[PlannedFile]:
    """The files to write for the package at `package_dir`."""
    package = package or dotted_package_name(package_dir)
    for part in package.split("."):
        if not part.isidentifier() or keyword.iskeyword(part):
            raise ScaffoldError(
                f"{package_dir} is not importable as a Python package ({part!r} is not an "
                "identifier): task names are dotted import paths"
            )
    tasks = package_dir / "tasks"
    return [
        PlannedFile(tasks / "__init__.py", TASKS_INIT.format(package=package)),
        PlannedFile(tasks / "lime.py", TASKS_EXAMPLE.format(package=package)),
    ]


def write(files: list[PlannedFile]) -> list[Path]:
    """Write the planned files; ScaffoldError, writing nothing, if any of them exists."""
    existing = [str(f.path) for f in files if f.path.exists()]
    if existing:
        raise ScaffoldError(f"refusing to overwrite {', '.join(existing)}; remove or rename it first")
    for planned in files:
        planned.path.parent.mkdir(parents=True, exist_ok=True)
        with open(planned.path, "x", encoding="utf-8") as handle:  # "x": never clobber
            handle.write(planned.text)
    return [f.path for f in files]
