"""The CLI commands that differ in client mode (LIME_TASK_API_URL set): `list`,
`cancel` and `logs` through the Lime Task HTTP API, and `lime-task api`.

`send`, `status` and `wait` need nothing here: they call lime_task.api, which dispatches
to lime_task.http_client. Output and exit codes are those of the direct commands
(cli_output formats both).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from datetime import datetime, timezone
from typing import Any, Sequence

from . import cli_output, http_client


def list_tasks(options: Any, io: Any) -> int:
    """`lime-task list` through the API: the caller's tasks (optionally one app's)."""
    from .cli import select_tasks
    from .cli_args import ExitCode

    views = http_client.list_views(options.app, options.state, options.namespace)
    objects = [http_client.as_object(view) for view in views]
    views = select_tasks(objects, options.app, options.state)
    if options.output == "json":
        io.print(cli_output.dumps([view.to_json_detailed() for view in views]))
    else:
        io.print(cli_output.format_table(views, datetime.now(timezone.utc)))
    return ExitCode.OK


def cancel(options: Any, io: Any) -> int:
    """`lime-task cancel` through the API (DELETE /v1/tasks/{id})."""
    from .cli_args import ExitCode
    from .constants import TERMINAL_STATES

    view = http_client.cancel(options.id, options.app, options.namespace)
    finished = view.get("status") in TERMINAL_STATES
    if options.output == "json":
        io.print(cli_output.dumps({"id": view["id"], "status": view["status"], "deleted": True}))
    else:
        io.print(f"deleted task {view['id']}" + (f" (it had already finished: {view['status']})" if finished else ""))
    return ExitCode.OK


def logs_unavailable(options: Any) -> Exception:
    """`lime-task logs` in client mode: the HTTP API does not serve pod logs."""
    from .cli import CliError
    from .cli_args import ExitCode

    return CliError(
        f"logs are not served by the Lime Task HTTP API ({http_client.ENV_API_URL} is set); read them with "
        "kubectl logs -l limetask.dev/task-id=" + str(options.id) + " where you have the rights, or unset "
        + http_client.ENV_API_URL,
        ExitCode.UNAVAILABLE,
    )


def exec_api(argv: Sequence[str]) -> int:
    """`lime-task api ...`: replace this process with `python -m lime_task_api ...`.

    Exec, not import: the library never imports the server package (it would need the
    `api` extra's web stack). Returns (exit 5) only when the package is missing."""
    from .cli import CliError
    from .cli_args import ExitCode

    missing = [name for name in ("lime_task_api", "starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise CliError(f"the HTTP API is not installed ({', '.join(missing)} missing): pip install 'lime-task[api]'",
                       ExitCode.UNAVAILABLE)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "lime_task_api", *argv])
    return ExitCode.FAILED  # not reached
