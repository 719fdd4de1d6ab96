"""`lime-task schedule create|list|get|suspend|resume|delete|run-now`: LimeTaskSchedules.

    lime-task schedule create nightly --cron '30 2 * * *' --time-zone Europe/Stockholm \\
        --task reports.tasks.nightly --app reports --arg 2026 --kwarg dry_run=false
    lime-task schedule run-now nightly          # one task now, as kubectl create job --from=cronjob/...
    lime-task schedule get nightly -o json

cli.py registers these (`add_commands`, `run`); the library (lime_task.schedules) does
the work and `summary` / `format_*` here (pure, unit-tested) shape what is shown. Errors
are the library's (NotFoundError -> exit 3, InvalidTaskError -> exit 2), mapped by cli.py.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Optional, Sequence

from . import cli_args, cli_output, timestamps
from .cli_args import ExitCode

ACTIONS = ("create", "list", "get", "suspend", "resume", "delete", "run-now")


def _count(what: str, low: int, high: Optional[int]) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high] (the CRD's bounds)."""
    def parse(text: str) -> int:
        return cli_args._bounded_int(text, what, low, high)
    return parse


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `schedule` and its actions to cli.py's subcommands; `common` gives -n and -o."""
    parser = commands.add_parser("schedule", help="manage LimeTaskSchedules: tasks started on a cron schedule",
                                 description="Manage LimeTaskSchedules (docs/schedules.md).")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    def action(name: str, help: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help, description=help, parents=[common])
        if name != "list":
            sub.add_argument("name", metavar="NAME", help="the schedule's name")
        return sub

    create = action("create", "create a schedule")
    create.add_argument("--cron", required=True, metavar="EXPR",
                        help="five cron fields ('30 2 * * *') or @hourly, @daily, @weekly, @monthly, @yearly")
    create.add_argument("--task", required=True, help="dotted path of a @task function")
    create.add_argument("--app", required=True, help="the application the tasks run for")
    # An option, not trailing positionals as `send` has: the task's arguments are then
    # never mistaken for the schedule's own (a cron field, a number after --timeout).
    create.add_argument("--arg", dest="args", action="append", default=[], metavar="VALUE",
                        help="a positional argument of the task (repeatable, in order): JSON when valid JSON, else text")
    create.add_argument("--kwarg", action="append", default=[], metavar="NAME=VALUE", help="a keyword argument")
    create.add_argument("--time-zone", metavar="ZONE", help="IANA time zone of the schedule (default UTC)")
    create.add_argument("--concurrency-policy", choices=("Allow", "Forbid", "Replace"),
                        help="when a run is due while an earlier one is unfinished (default Allow)")
    create.add_argument("--starting-deadline", type=_count("--starting-deadline", 1, None), metavar="SECONDS",
                        help="skip a run that could not start within this many seconds of its time")
    create.add_argument("--suspend", action="store_true", help="create it suspended")
    create.add_argument("--successful-history", type=_count("--successful-history", 0, 100), metavar="N",
                        help="finished SUCCESS tasks to keep (default 3)")
    create.add_argument("--failed-history", type=_count("--failed-history", 0, 100), metavar="N",
                        help="finished FAILURE tasks to keep (default 1)")
    cli_args.add_run_options(create)  # the run options of each task the schedule creates
    action("list", "list the schedules")
    action("get", "show a schedule")
    action("suspend", "stop starting new runs (running tasks go on)")
    action("resume", "start runs again")
    action("delete", "delete a schedule and its tasks (unfinished ones are cancelled)")
    run_now = action("run-now", "start one task of the schedule now")
    run_now.add_argument("--task-name", metavar="ID", help="the task's id (default NAME-manual-<random>)")


# ------------------------------------------------------------------ shaping output (pure)


def summary(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON a schedule is shown as: name, namespace, spec fields and status."""
    metadata, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    template = spec.get("taskTemplate") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "schedule": spec.get("schedule"),
        "timeZone": spec.get("timeZone") or "UTC",
        "suspend": bool(spec.get("suspend")),
        "concurrencyPolicy": spec.get("concurrencyPolicy", "Allow"),
        "startingDeadlineSeconds": spec.get("startingDeadlineSeconds"),
        "task": template.get("task"),
        "app": template.get("app"),
        "active": list(status.get("active") or []),
        "activeCount": status.get("activeCount", len(status.get("active") or [])),
        "lastScheduleTime": status.get("lastScheduleTime"),
        "nextScheduleTime": status.get("nextScheduleTime"),
        "lastSuccessfulTime": status.get("lastSuccessfulTime"),
        "ready": ready.get("status"),
        "reason": ready.get("reason"),
        "message": ready.get("message"),
    }


def format_table(objects: Sequence[Mapping[str, Any]], now: datetime) -> str:
    """kubectl-style columns: NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST NEXT READY."""
    rows = [("NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "NEXT", "READY")]
    for obj in objects:
        item = summary(obj)
        last = _parse(item["lastScheduleTime"])
        rows.append((item["name"] or "", item["schedule"] or "", item["timeZone"], str(item["suspend"]).lower(),
                     str(item["activeCount"]), cli_output.age(last, now) if last else "<none>",
                     item["nextScheduleTime"] or "<none>", item["reason"] or "<unknown>"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def format_details(obj: Mapping[str, Any]) -> str:
    """`get` as text: one 'Field: value' line each."""
    item = summary(obj)
    lines = [
        f"Name:               {item['name']}",
        f"Namespace:          {item['namespace']}",
        f"Schedule:           {item['schedule']} ({item['timeZone']})",
        f"Task:               {item['task']} (app {item['app']})",
        f"Concurrency policy: {item['concurrencyPolicy']}",
        f"Starting deadline:  {item['startingDeadlineSeconds'] if item['startingDeadlineSeconds'] else 'none'}",
        f"Suspend:            {str(item['suspend']).lower()}",
        f"Last schedule:      {item['lastScheduleTime'] or '<none>'}",
        f"Next schedule:      {item['nextScheduleTime'] or '<none>'}",
        f"Last successful:    {item['lastSuccessfulTime'] or '<none>'}",
        f"Active ({item['activeCount']}):         {', '.join(item['active']) or '<none>'}",
        f"Ready:              {item['ready'] or 'Unknown'} {item['reason'] or ''}: {item['message'] or ''}".rstrip(": "),
    ]
    return "\n".join(lines)


def _parse(text: Optional[str]) -> Optional[datetime]:
    return timestamps.parse_time_or_none(text)


# ------------------------------------------------------------------ running (I/O)


def run(options: argparse.Namespace, io: Any) -> int:
    """Carry out `lime-task schedule ACTION`; `io` is cli.Io (print/note)."""
    from . import schedules

    namespace = options.namespace
    as_json = options.output == "json"
    if options.action == "create":
        from .errors import InvalidTaskError

        try:
            kwargs = cli_args.parse_kwargs(options.kwarg)
            args = [cli_args.parse_value(item) for item in options.args]
        except ValueError as error:
            raise InvalidTaskError(str(error)) from None
        body = schedules.build_schedule(
            options.name, options.cron, options.task, options.app,
            args, kwargs,
            time_zone=options.time_zone, concurrency_policy=options.concurrency_policy,
            starting_deadline_seconds=options.starting_deadline, suspend=options.suspend,
            successful_history=options.successful_history, failed_history=options.failed_history,
            **cli_args.run_options_of(options))
        created = schedules.create_schedule(body, namespace)
        io.print(cli_output.dumps(summary(created)) if as_json else f"created schedule {created['metadata']['name']}")
    elif options.action == "list":
        items = schedules.list_schedules(namespace)
        io.print(cli_output.dumps([summary(item) for item in items]) if as_json
                 else format_table(items, datetime.now(timezone.utc)))
    elif options.action == "get":
        found = schedules.get_schedule(options.name, namespace)
        io.print(cli_output.dumps(summary(found)) if as_json else format_details(found))
    elif options.action in ("suspend", "resume"):
        patched = schedules.set_suspend(options.name, options.action == "suspend", namespace)
        io.print(cli_output.dumps(summary(patched)) if as_json
                 else f"{'suspended' if options.action == 'suspend' else 'resumed'} schedule {options.name}")
    elif options.action == "delete":
        schedules.delete_schedule(options.name, namespace)
        io.print(cli_output.dumps({"name": options.name, "deleted": True}) if as_json
                 else f"deleted schedule {options.name} (its tasks go with it)")
    elif options.action == "run-now":
        task = schedules.run_now(options.name, namespace, options.task_name)
        task_id = task["metadata"]["name"]
        io.print(cli_output.dumps({"id": task_id, "schedule": options.name, "status": "PENDING"}) if as_json
                 else task_id)
    return ExitCode.OK
