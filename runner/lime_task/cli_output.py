"""Pure formatting for the `lime-task` command line: what a person or a script reads.

Human output is aligned text; `-o json` output is one JSON document per command (one
per line for the `events` stream) in the TaskStatus shape ``{"id", "status", "result"}``
plus ``error`` when the task failed, so scripts can parse it with any JSON tool.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping, Optional

from . import timestamps, values
from .constants import LABEL_APP


@dataclass(frozen=True)
class TaskView:
    """What the CLI shows of one LimeTask, read from the API's camelCase object."""

    id: str
    status: str
    result: Any = None
    error: Optional[Mapping[str, Any]] = None
    task: str = ""
    app: str = ""
    namespace: str = ""
    reason: str = ""
    message: str = ""
    attempts: Optional[int] = None
    created: Optional[datetime] = None
    started: Optional[datetime] = None
    finished: Optional[datetime] = None
    duration: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Why the object cannot be shown whole: a part of it nested too deep to decode
    # (lime_task.values.decode_bounded), e.g. the args of a poison task; else "".
    invalid: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "FAILURE"

    def to_json(self) -> dict[str, Any]:
        """The TaskStatus shape, plus `error` for a failed task."""
        data: dict[str, Any] = {"id": self.id, "status": self.status, "result": self.result}
        if self.error is not None:
            data["error"] = dict(self.error)
        return data

    def to_json_detailed(self) -> dict[str, Any]:
        """The TaskStatus shape plus what `list` shows (task, app, timestamps)."""
        data = self.to_json()
        data.update(
            task=self.task,
            app=self.app,
            namespace=self.namespace,
            reason=self.reason or None,
            attempts=self.attempts,
            createdAt=_iso(self.created),
            startedAt=_iso(self.started),
            finishedAt=_iso(self.finished),
        )
        if self.invalid:
            data["invalid"] = self.invalid
        return data


def _parse_time(value: Any) -> Optional[datetime]:
    return timestamps.parse_time_or_none(value or None)  # display: what cannot be read is not shown


def _iso(value: Optional[datetime]) -> Optional[str]:
    return timestamps.format_time(value) if value else None


def _succeeded_message(status: Mapping[str, Any]) -> str:
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Succeeded":
            return condition.get("message") or ""
    return ""


def view_of(obj: Mapping[str, Any]) -> TaskView:
    """A TaskView of a LimeTask as the API returns it (a dict).

    A task the operator has not seen yet has no status: it is PENDING, as `send_task`
    reports it.
    """
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    state = status.get("state") or "PENDING"
    cut = values.cut_place(obj)
    return TaskView(
        id=metadata.get("name", ""),
        status=state,
        result=values.status_result(status) if state == "SUCCESS" else None,
        error=status.get("error") if state == "FAILURE" else None,
        task=spec.get("task", ""),
        app=spec.get("app") or (metadata.get("labels") or {}).get(LABEL_APP, ""),
        namespace=metadata.get("namespace", ""),
        reason=status.get("reason") or "",
        message=_succeeded_message(status),
        attempts=status.get("attempts"),
        created=_parse_time(metadata.get("creationTimestamp")),
        started=_parse_time(status.get("startedAt")),
        finished=_parse_time(status.get("finishedAt")),
        duration=status.get("duration") or "",
        invalid=(
            f"{cut} is nested deeper than {values.DECODE_MAX_DEPTH} levels (at most {values.MAX_DEPTH} "
            "are accepted per value); not shown"
            if cut
            else ""
        ),
    )


def dumps(data: Any) -> str:
    """Compact, key-order-preserving JSON; non-ASCII kept readable."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def age(then: Optional[datetime], now: datetime) -> str:
    """kubectl-style age: 45s, 3m, 2h, 5d."""
    if then is None:
        return "<unknown>"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_error(error: Optional[Mapping[str, Any]]) -> str:
    """`Type: message` of a task error, on one line."""
    if not error:
        return ""
    kind = error.get("type") or "Error"
    message = (error.get("message") or "").strip()
    return f"{kind}: {message}" if message else kind


def format_status(view: TaskView) -> str:
    """The human form of `status`, `wait` and `send --wait`: one `field: value` per line."""
    rows: list[tuple[str, str]] = [("id", view.id), ("status", view.status)]
    if view.task:
        rows.append(("task", view.task))
    if view.app:
        rows.append(("app", view.app))
    if view.reason:
        rows.append(("reason", view.reason))
    if view.attempts:
        rows.append(("attempts", str(view.attempts)))
    if view.duration:
        rows.append(("duration", view.duration))
    if view.status == "SUCCESS":
        rows.append(("result", dumps(view.result)))
    if view.invalid:
        rows.append(("invalid", view.invalid))
    if view.error:
        rows.append(("error", format_error(view.error)))
    elif view.failed and view.message:
        rows.append(("error", view.message))
    width = max(len(name) for name, _ in rows) + 1
    text = "\n".join(f"{name + ':':<{width}} {value}" for name, value in rows)
    traceback = (view.error or {}).get("traceback") if view.error else None
    if traceback:
        text += "\ntraceback (last lines):\n" + _indent(traceback.rstrip())
    return text


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def format_table(views: Iterable[TaskView], now: datetime) -> str:
    """The human form of `list`: kubectl-like columns, oldest first."""
    views = list(views)
    header: tuple[str, ...] = ("ID", "STATE", "TASK", "APP", "AGE")
    rows = [header] + [(v.id, v.status, v.task, v.app, age(v.created, now)) for v in views]
    if len(rows) == 1:
        return "No tasks found."
    if any(v.invalid for v in views):
        # Only then: the usual table keeps kubectl's five columns.
        header += ("NOTE",)
        rows = [header] + [row + (views[i].invalid,) for i, row in enumerate(rows[1:])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    )


def format_progress(view: TaskView) -> str:
    """One stderr line per state change while `wait` waits."""
    detail = f" ({view.reason})" if view.reason else ""
    return f"{view.id}: {view.status}{detail}"


def format_event(event: Any) -> str:
    """One line per task event (a lime_task.events.TaskEvent) for people."""
    when = _iso(event.finished_at or event.timestamp) or "-"
    line = f"{when}  {event.state:<7}  {event.task_name}  id={event.task_id}  app={event.app}"
    if event.state == "FAILURE":
        line += f"  error={format_error(event.error) or event.reason or '-'}"
    else:
        line += f"  result={dumps(event.result)}"
    return line


def event_json(event: Any) -> dict[str, Any]:
    """The JSON of one event for scripts: the message body plus its routing key."""
    data = dict(event.body)
    data["routingKey"] = event.routing_key
    return data


def api_error_message(error: Any) -> str:
    """The API server's own message from a kubernetes ApiException (its JSON body)."""
    body = getattr(error, "body", None)
    try:
        message = json.loads(body)["message"]
        if message:
            return str(message)
    except Exception:  # not JSON, no message: fall back to the HTTP status
        pass
    return f"{getattr(error, 'status', '?')} {getattr(error, 'reason', '')}".strip()
