"""`lime-task`: send, inspect and follow tasks from a shell; run the runner or the operator.

    lime-task send my_package.tasks.add --app my-app 1 2 --wait
    lime-task status 2f1c... --app my-app -o json

The commands are thin: the library (lime_task.api, lime_task.kube, lime_task.events)
does the work, `cli_args` parses what was typed and `cli_output` formats what is shown,
both pure and unit-tested. This module only wires them together and maps errors to the
exit codes of `cli_args.ExitCode` (listed in `lime-task --help`).

Human output goes to stdout, progress and errors to stderr, so `id=$(lime-task send ...)`
and `lime-task wait ... -o json | jq` work.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TextIO

from . import cli_args, cli_output, cli_schedule
from .cli_args import EXIT_CODES_HELP, ExitCode

PROG = "lime-task"


class CliError(Exception):
    """A failure to report on stderr with its exit code, without a traceback."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------------------
# The command line (pure)
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Asynchronous Python tasks on Kubernetes: send tasks and follow them.",
        epilog=EXIT_CODES_HELP
        + "\nThe cluster comes from KUBECONFIG (else in-cluster, else ~/.kube/config); the\n"
        "namespace from -n, else LIME_TASK_NAMESPACE, else the kubeconfig context's.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    # Options every task command takes, after the command name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", help="namespace of the tasks (default: env LIME_TASK_NAMESPACE, else the kubeconfig context's, else default)")
    common.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="text for people (default), json for scripts"
    )

    def command(name: str, help: str, parents=(common,)) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help, description=help, parents=list(parents), epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    send = command("send", "send a task; prints its id")
    send.add_argument("task", metavar="TASK", help="dotted path of a @task function, e.g. my_package.tasks.add")
    send.add_argument(
        "args", metavar="ARGS", nargs="*", help="positional arguments: JSON when valid JSON (1, true, [1,2]), else text"
    )
    _app(send)
    send.add_argument(
        "--kwarg", action="append", default=[], metavar="NAME=VALUE", help="a keyword argument (repeatable); VALUE as for ARGS"
    )
    cli_args.add_run_options(send)
    send.add_argument("--wait", action="store_true", help="wait for the task to finish and show its status")
    send.add_argument(
        "--wait-timeout", type=cli_args.wait_seconds, metavar="SECONDS", help="with --wait: give up after this long"
    )

    def task_command(name: str, help: str) -> argparse.ArgumentParser:
        """A command on one task: its ID and --app."""
        parser = command(name, help)
        parser.add_argument("id", metavar="ID")
        _app(parser)
        return parser

    task_command("status", "show a task's status")

    wait = task_command("wait", "wait for a task to finish (progress on stderr), then show its status")
    wait.add_argument("--timeout", type=cli_args.wait_seconds, metavar="SECONDS", help="give up after this long")

    listing = command("list", "list tasks, oldest first")
    listing.add_argument("--app", help="only this application's tasks")
    listing.add_argument("--state", type=cli_args.state, help="only tasks in this state")

    task_command("cancel", "cancel a task: deletes it, which stops its pod")

    task_command("logs", "show the output of a task's pod (every attempt)")

    events = command(
        "events",
        "print task events from the broker as they happen",
        parents=(_output_only(),),
    )
    events.add_argument("--failures", action="store_true", help="only failures")
    events.add_argument("--successes", action="store_true", help="only successes")
    events.add_argument("--task", metavar="NAME", help="only this task name (AMQP wildcards * and # allowed)")
    events.add_argument("--max", type=cli_args.positive_count, metavar="N", help="stop after N events")
    events.add_argument("--timeout", type=cli_args.wait_seconds, metavar="SECONDS", help="stop after this long")
    events.add_argument("--broker-url", help="amqp:// URL (default: env LIME_TASK_BROKER_URL)")
    events.add_argument("--exchange", help="exchange name (default: env LIME_TASK_EXCHANGE, else lime_task)")

    cli_schedule.add_commands(commands, common)  # LimeTaskSchedules (#15)

    generate = command("generate", "generate code", parents=())
    what = generate.add_subparsers(dest="what", metavar="WHAT")
    what.required = True
    tasks = what.add_parser("tasks", help="scaffold a tasks module with an example @task in a package")
    tasks.add_argument("--package", type=Path, metavar="DIR", help="the package directory (default: the one here)")

    # Both hand their arguments over untouched (see main()); declared for --help.
    commands.add_parser("run", help="run the task in env LIME_TASK (the task pod's command)", add_help=False)
    commands.add_parser("operator", help="run the operator (needs the operator extra)", add_help=False)
    commands.add_parser("api", help="run the HTTP API (needs the api extra; same as lime-task-api)", add_help=False)
    return parser


def _app(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app", required=True, help="the application the task belongs to")


def _output_only() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-o", "--output", choices=("text", "json"), default="text", help="text or json (one object per line)")
    return parent


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the command line; exits with 2 and a message naming the problem when bad.

    `send` accepts its task arguments anywhere after TASK (`send t --app a 1 2` as well
    as `send t 1 2 --app a`): argparse stops filling a positional list at the first
    option, so the leftovers are appended here, in order. After `--` every word is a
    task argument, even one that starts with '-' (`send t --app a -- -x`), as in any
    POSIX command.
    """
    parser = build_parser()
    options, extras = parser.parse_known_args(argv)
    verbatim: list[str] = []
    if "--" in extras:
        cut = extras.index("--")
        extras, verbatim = extras[:cut], extras[cut + 1:]
    if extras or verbatim:
        unknown = [item for item in extras if item.startswith("-") and not _looks_like_number(item)]
        if options.command != "send" or unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown or extras + verbatim)}")
        options.args = list(options.args) + list(extras) + verbatim
    if options.command == "send":
        if options.wait_timeout is not None and not options.wait:
            parser.error("--wait-timeout needs --wait")
        try:
            options.kwargs = cli_args.parse_kwargs(options.kwarg)
            options.values = [cli_args.parse_value(item) for item in options.args]
        except ValueError as error:
            parser.error(str(error))
    if options.command == "events" and options.failures and options.successes:
        parser.error("--failures and --successes together are the default (all events): give one or neither")
    return options


def _looks_like_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------------------
# The commands (I/O)
# --------------------------------------------------------------------------------------


class Io:
    """Where a command writes; tests hand in StringIO objects."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err

    def print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)


def _view(status: Any) -> cli_output.TaskView:
    """A TaskView of a lime_task.api.TaskStatus."""
    return cli_output.TaskView(
        id=status.id,
        status=status.status,
        result=status.result,
        error=status.error,
        app=status.app or "",
        namespace=status.namespace or "",
    )


def _show(options: argparse.Namespace, io: Io, view: cli_output.TaskView) -> None:
    if options.output == "json":
        io.print(cli_output.dumps(view.to_json()))
    else:
        io.print(cli_output.format_status(view))


def _outcome(view: cli_output.TaskView) -> int:
    return ExitCode.FAILED if view.failed else ExitCode.OK


def _read(options: argparse.Namespace) -> dict[str, Any]:
    """The task's LimeTask object, if it belongs to --app (else NotFoundError)."""
    from .api import read_task

    return read_task(options.id, options.app, namespace=options.namespace)


def _wait(status: Any, timeout: Optional[float], io: Io) -> cli_output.TaskView:
    io.note(cli_output.format_progress(_view(status)))
    status.wait(timeout=timeout, on_change=lambda s: io.note(cli_output.format_progress(_view(s))))
    return _view(status)


def cmd_send(options: argparse.Namespace, io: Io) -> int:
    from .api import send_task_with_options

    status = send_task_with_options(
        options.task,
        options.app,
        options.values,
        options.kwargs,
        namespace=options.namespace,
        **cli_args.run_options_of(options),
    )
    if not options.wait:
        if options.output == "json":
            io.print(cli_output.dumps(_view(status).to_json()))
        else:
            io.print(status.id)
        return ExitCode.OK
    view = _wait(status, options.wait_timeout, io)
    _show(options, io, view)
    return _outcome(view)


def cmd_status(options: argparse.Namespace, io: Io) -> int:
    view = cli_output.view_of(_read(options))
    _show(options, io, view)
    return ExitCode.OK


def cmd_wait(options: argparse.Namespace, io: Io) -> int:
    from .api import get_status

    status = get_status(options.id, options.app, namespace=options.namespace)
    view = _wait(status, options.timeout, io)
    _show(options, io, view)
    return _outcome(view)


def select_tasks(items: Sequence[dict[str, Any]], app: Optional[str], state: Optional[str]) -> list[cli_output.TaskView]:
    """The tasks to list, oldest first. Ownership is spec.app (the label only narrows
    the server-side query: anyone allowed to edit labels could change it)."""
    views = [cli_output.view_of(item) for item in items if app is None or (item.get("spec") or {}).get("app") == app]
    if state:
        views = [view for view in views if view.status == state]
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(views, key=lambda view: (view.created or epoch, view.id))


def cmd_list(options: argparse.Namespace, io: Io) -> int:
    if _client_mode():
        from . import cli_http

        return cli_http.list_tasks(options, io)
    from . import kube
    from .api import resolve_namespace
    from .constants import LABEL_APP

    connection = kube.connect()
    namespace = resolve_namespace(options.namespace, connection)
    selector = f"{LABEL_APP}={options.app}" if options.app else None
    # kube.list_tasks, not the client's own list: it survives poison objects.
    views = select_tasks(kube.list_tasks(connection, namespace, selector), options.app, options.state)
    if options.output == "json":
        io.print(cli_output.dumps([view.to_json_detailed() for view in views]))
    else:
        io.print(cli_output.format_table(views, datetime.now(timezone.utc)))
    return ExitCode.OK


def cmd_cancel(options: argparse.Namespace, io: Io) -> int:
    from . import kube
    from .constants import TERMINAL_STATES

    if _client_mode():
        from . import cli_http

        return cli_http.cancel(options, io)
    obj = _read(options)
    view = cli_output.view_of(obj)
    metadata = obj["metadata"]
    # The uid precondition makes sure it is the very task just checked that goes.
    if not kube.delete_task(kube.connect(), metadata["namespace"], metadata["name"], metadata["uid"]):
        raise CliError(f"task {view.id} is gone already (deleted meanwhile)", ExitCode.NOT_FOUND)
    finished = view.status in TERMINAL_STATES
    if options.output == "json":
        io.print(cli_output.dumps({"id": view.id, "status": view.status, "deleted": True}))
    else:
        io.print(f"deleted task {view.id}" + (f" (it had already finished: {view.status})" if finished else ""))
    return ExitCode.OK


def cmd_logs(options: argparse.Namespace, io: Io) -> int:
    from . import kube

    if _client_mode():
        from . import cli_http

        raise cli_http.logs_unavailable(options)
    obj = _read(options)
    view = cli_output.view_of(obj)
    pods = kube.read_task_pod_logs(kube.connect(), view.namespace, view.id, container="task")
    kept = kept_log(obj)
    if not pods and kept is not None:
        return _print_kept_log(view, kept, "its pods are gone", options, io)
    if not pods:
        why = (
            "it has not started yet"
            if view.status in ("PENDING", "STARTED")
            else "its pods are gone (removed with its Job)"
        )
        raise CliError(f"task {view.id} ({view.status}) has no pod, so no logs: {why}", ExitCode.NOT_FOUND)
    chunks = []
    for number, log in enumerate(pods, start=1):  # oldest first
        if log.error is not None:
            io.note(f"attempt {number} ({log.pod}): no logs: {log.error}")
        chunks.append((number, log.pod, log.text))
    if all(text is None for _, _, text in chunks):
        if kept is not None:
            return _print_kept_log(view, kept, "no pod log could be read", options, io)
        raise CliError(f"no logs could be read for task {view.id}", ExitCode.NOT_FOUND)
    if options.output == "json":
        io.print(
            cli_output.dumps(
                {"id": view.id, "status": view.status, "attempts": [{"pod": name, "log": text} for _, name, text in chunks]}
            )
        )
        return ExitCode.OK
    for number, name, text in chunks:
        if len(chunks) > 1:
            io.print(f"==> attempt {number} ({name}) <==")
        if text is not None:
            io.out.write(text if text.endswith("\n") or not text else text + "\n")
    io.out.flush()
    return ExitCode.OK


def kept_log(obj: dict[str, Any]) -> Optional[tuple[str, str]]:
    """(pod name, log tail) the operator kept in status.lastAttempt for the last failed
    attempt (at most 2 KiB, cut at a line boundary), or None if there is none."""
    last = (obj.get("status") or {}).get("lastAttempt") or {}
    tail = last.get("logTail")
    if not isinstance(tail, str):
        return None
    return str(last.get("pod") or "?"), tail


def _print_kept_log(view: cli_output.TaskView, kept: tuple[str, str], why: str, options: argparse.Namespace,
                    io: Io) -> int:
    pod, tail = kept
    if options.output == "json":
        io.print(cli_output.dumps({"id": view.id, "status": view.status,
                                   "attempts": [{"pod": pod, "log": tail, "kept": True}]}))
        return ExitCode.OK
    io.note(f"task {view.id} ({view.status}): {why}; the end of the last failed attempt's log "
            f"(pod {pod}), as kept in the task's status:")
    io.out.write(tail if tail.endswith("\n") or not tail else tail + "\n")
    io.out.flush()
    return ExitCode.OK


def cmd_events(options: argparse.Namespace, io: Io) -> int:
    from .consumer import EventConsumer
    from .events import pattern_for

    try:
        patterns = pattern_for(failures=options.failures, successes=options.successes, task=options.task)
    except ValueError as error:
        raise CliError(str(error), ExitCode.USAGE) from None

    def show(event: Any) -> None:
        if options.output == "json":
            io.print(cli_output.dumps(cli_output.event_json(event)))
        else:
            io.print(cli_output.format_event(event))

    try:
        consumer = EventConsumer(patterns, url=options.broker_url, exchange=options.exchange)
    except ValueError as error:  # no URL, bad arguments
        raise CliError(str(error), ExitCode.USAGE) from None
    with consumer:
        # Said once the queue is bound: events published from now on are shown.
        io.note(f"listening for {', '.join(patterns)} on exchange {consumer.exchange!r}")
        consumer.run(show, max_messages=options.max, timeout=options.timeout)
    return ExitCode.OK


def cmd_generate(options: argparse.Namespace, io: Io) -> int:
    from . import scaffold

    try:
        if options.package is not None:
            package_dir = options.package
            if not package_dir.is_dir():
                raise scaffold.ScaffoldError(f"--package {package_dir} is not a directory")
        else:
            package_dir = scaffold.find_package(Path.cwd())
        written = scaffold.write(scaffold.plan(package_dir))
    except scaffold.ScaffoldError as error:
        raise CliError(str(error), ExitCode.USAGE) from None
    for path in written:
        io.print(f"created {path}")
    return ExitCode.OK


def _client_mode() -> bool:
    """True when LIME_TASK_API_URL sends the commands through the HTTP API (cli_http)."""
    from .http_client import api_url

    return api_url() is not None


def cmd_run(argv: Sequence[str]) -> int:
    from . import runner

    return int(runner.main(list(argv)))


def cmd_operator(argv: Sequence[str]) -> int:
    """`lime-task operator ...`: replace this process with `python -m lime_task_operator ...`
    (the same as the `lime-task-operator` command).

    Exec, not import: the library never imports the operator (a layer above it,
    .importlinter). Returns (exit 5) only when the operator or kopf is missing."""
    import importlib.util
    import os

    missing = [name for name in ("lime_task_operator", "kopf") if importlib.util.find_spec(name) is None]
    if missing:
        raise CliError(
            f"the operator is not installed ({', '.join(missing)} missing): pip install 'lime-task[operator]'",
            ExitCode.UNAVAILABLE,
        )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "lime_task_operator", *argv])
    return ExitCode.FAILED  # not reached


COMMANDS: dict[str, Callable[[argparse.Namespace, Io], int]] = {
    "send": cmd_send,
    "status": cmd_status,
    "wait": cmd_wait,
    "list": cmd_list,
    "cancel": cmd_cancel,
    "logs": cmd_logs,
    "events": cmd_events,
    "generate": cmd_generate,
    "schedule": cli_schedule.run,
}


# --------------------------------------------------------------------------------------
# Entry point: dispatch and error mapping
# --------------------------------------------------------------------------------------


def _error_code(error: BaseException) -> tuple[ExitCode, str]:
    """The exit code and message for an exception a command let through."""
    from .consumer import ConsumerError
    from .errors import InvalidTaskError, NotFoundError
    from .kube import LimeTaskApiError, api_failure

    if isinstance(error, CliError):
        return error.code, str(error)
    if isinstance(error, NotFoundError):
        return ExitCode.NOT_FOUND, str(error)
    if isinstance(error, InvalidTaskError):
        return ExitCode.USAGE, str(error)
    if isinstance(error, TimeoutError):
        return ExitCode.TIMEOUT, str(error) or "timed out"
    if isinstance(error, (LimeTaskApiError, ConsumerError)):
        return ExitCode.UNAVAILABLE, str(error)
    failure = api_failure(error)
    if failure is not None:
        status, message = failure
        if status is None:
            return ExitCode.UNAVAILABLE, f"cannot reach the Kubernetes API server: {message}"
        return ExitCode.NOT_FOUND if status == 404 else ExitCode.FAILED, f"the API server refused: {message}"
    raise error


def main(argv: Optional[Sequence[str]] = None, out: TextIO = None, err: TextIO = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    io = Io(out or sys.stdout, err or sys.stderr)
    try:
        # `run` and `operator` own their command lines (their --help too).
        if argv and argv[0] == "run":
            return cmd_run(argv[1:])
        if argv and argv[0] == "operator":
            return cmd_operator(argv[1:])
        if argv and argv[0] == "api":
            from . import cli_http

            return cli_http.exec_api(argv[1:])
        options = parse(argv)
        return int(COMMANDS[options.command](options, io))
    except KeyboardInterrupt:
        io.note(f"{PROG}: interrupted")
        return ExitCode.INTERRUPTED
    except SystemExit as exit:  # argparse: --help (0) or a usage error (2)
        return exit.code if isinstance(exit.code, int) else ExitCode.USAGE
    except Exception as error:
        code, message = _error_code(error)
        io.note(f"{PROG}: error: {message}")
        return code


if __name__ == "__main__":
    sys.exit(main())
