"""What a LimeTaskSchedule should do now: pure, so every rule is tested with a fake clock.

`plan(schedule, tasks, now)` looks at a schedule (its spec and status) and the tasks it
owns and says which task to create (at most one: the most recent due time), which to
delete first (Replace), which finished tasks to delete (history limits), the status to
write, the Kubernetes Events to post and when to look again. schedule_controller.py does
the I/O.

The rules are CronJob's (kubernetes/kubernetes pkg/controller/cronjob, and the CronJob
page of the Kubernetes documentation), so users coming from CronJob find no surprise:

- A run is due at each time the cron expression names after ``status.lastScheduleTime``
  (else the schedule's creation). Of the due times not yet run, only the most recent is
  started ("at most one catch-up"); with ``startingDeadlineSeconds`` only times within
  that many seconds of now count, older ones are missed for good (a ``MissedSchedule``
  Event). More than ``TOO_MANY_MISSED`` due times give a ``TooManyMissedTimes`` warning
  Event, never a burst.
- Forbid: a due time while a task of the schedule is unfinished is not started and
  ``lastScheduleTime`` is not moved, so it starts late when the earlier task finishes,
  if still within ``startingDeadlineSeconds`` (CronJob does the same).
- Replace: the unfinished tasks are deleted (which cancels them) before the new one.
- Suspended: nothing starts; due times pass and count as missed when resumed.
- History: finished tasks beyond ``successfulTasksHistoryLimit`` /
  ``failedTasksHistoryLimit`` are deleted, oldest first, but only once their event is
  settled (published, or events off), so the history limit never loses an event.

Time zones: cron fields are read in ``spec.timeZone`` (zoneinfo; UTC when unset) by
cronsim, which follows Debian cron across daylight-saving changes: a job at a fixed
local time inside a skipped hour runs when the clocks jump (02:30 on the spring-forward
night runs at 03:00), one inside a repeated hour runs once; jobs every hour or more
often keep their pace in real time (an hourly job runs twice in the repeated hour: 02:00
CEST and 02:00 CET are an hour apart). Every instant the operator writes or names a
task by is UTC.

Why cronsim (over croniter): it has no dependencies and works with zoneinfo directly
(croniter needs python-dateutil), documents and tests its DST behaviour against Debian
cron, refuses bad expressions with a message (CronSimError: "Bad minute"), and is
actively released (2.8, 2026-11); croniter was declared unmaintained in 2024 before
moving to a community organisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Optional, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from lime_task import timestamps

# Kubernetes' CronJob controller gives up counting at 100 missed start times and posts
# a warning (pkg/controller/cronjob/utils.go, mostRecentScheduleTime).
TOO_MANY_MISSED = 100
# The macros CronJob accepts (robfig/cron's descriptors), as five fields.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Task names: <schedule>-<minutes since the epoch>, as CronJob names its Jobs. A
# schedule's name has at most this many characters (the CRD says so too), so the name
# stays a valid label value (63) with the 11-character suffix.
MAX_SCHEDULE_NAME = 52
CONDITION_READY = "Ready"
REASON_SCHEDULING = "Scheduling"
REASON_SUSPENDED = "Suspended"
REASON_INVALID_SCHEDULE = "InvalidSchedule"
REASON_INVALID_TIME_ZONE = "InvalidTimeZone"
REASON_INVALID_TEMPLATE = "InvalidTemplate"
POLICIES = ("Allow", "Forbid", "Replace")
# Active task names listed in status (the CRD's maxItems); activeCount counts them all.
MAX_ACTIVE_LISTED = 64
TERMINAL = ("SUCCESS", "FAILURE")


class InvalidSchedule(ValueError):
    """The schedule's cron expression or time zone cannot be used; ``reason`` is the
    Ready condition's reason (InvalidSchedule or InvalidTimeZone)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Cron:
    """A parsed schedule: five cron fields read in a time zone."""

    expression: str
    zone: ZoneInfo

    def after(self, moment: datetime) -> Optional[datetime]:
        """The first due time strictly after `moment` (UTC), None if there is none within
        cronsim's 50-year horizon (e.g. '0 0 30 2 *' is refused earlier; '0 0 31 4 *' too)."""
        try:
            return next(CronSim(self.expression, moment.astimezone(self.zone))).astimezone(timezone.utc)
        except StopIteration:
            return None

    def latest_at_or_before(self, moment: datetime) -> Optional[datetime]:
        """The last due time at or before `moment` (UTC); None within the horizon."""
        # cronsim's reverse iteration starts strictly before its start: start one
        # second later (cron times are whole minutes; `moment` may have seconds).
        start = (moment + timedelta(seconds=1)).astimezone(self.zone)
        try:
            return next(CronSim(self.expression, start, reverse=True)).astimezone(timezone.utc)
        except StopIteration:
            return None


def parse_cron(schedule: str, time_zone: Optional[str]) -> Cron:
    """Parse ``spec.schedule`` (five fields or a macro) in ``spec.timeZone`` (IANA; None or
    '' is UTC). Raises InvalidSchedule naming the problem: a bad field ('Bad minute'), a
    sixth (seconds) field, TZ= in the expression, an unknown zone, a date that never
    comes ('0 0 30 2 *')."""
    text = " ".join((schedule or "").split())
    if not text:
        raise InvalidSchedule(REASON_INVALID_SCHEDULE, "schedule is empty")
    if text.startswith(("TZ=", "CRON_TZ=")):
        raise InvalidSchedule(REASON_INVALID_SCHEDULE, f"schedule {schedule!r}: set the time zone in spec.timeZone, not in the schedule")
    if text.startswith("@"):
        if text not in MACROS:
            raise InvalidSchedule(REASON_INVALID_SCHEDULE,
                                  f"schedule {schedule!r}: unknown macro; use one of {', '.join(MACROS)}")
        text = MACROS[text]
    fields = text.split(" ")
    if len(fields) != 5:
        raise InvalidSchedule(REASON_INVALID_SCHEDULE,
                              f"schedule {schedule!r} has {len(fields)} fields; it needs five: minute hour "
                              "day-of-month month day-of-week")
    try:
        zone = ZoneInfo(time_zone) if time_zone else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise InvalidSchedule(REASON_INVALID_TIME_ZONE,
                              f"timeZone {time_zone!r} is not a time zone the operator knows (IANA names, "
                              f"e.g. Europe/Stockholm): {error}") from None
    reference = datetime(2000, 1, 1, tzinfo=zone)
    try:
        next(CronSim(text, reference))
    except CronSimError as error:
        raise InvalidSchedule(REASON_INVALID_SCHEDULE, f"schedule {schedule!r}: {error}") from None
    except StopIteration:
        raise InvalidSchedule(REASON_INVALID_SCHEDULE,
                              f"schedule {schedule!r} names no time that ever comes") from None
    return Cron(text, zone)


def task_name(schedule_name: str, scheduled: datetime) -> str:
    """The run's task name: ``<schedule>-<minutes since the Unix epoch>`` (UTC), as CronJob
    names its Jobs. Deterministic, so creating it twice is a 409 (adopted), never two
    runs."""
    minutes = timestamps.to_epoch_seconds(scheduled) // 60
    return f"{schedule_name}-{minutes}"


@dataclass(frozen=True)
class OwnedTask:
    """The parts of one of the schedule's LimeTasks that a decision reads.

    ``state`` the task's status.state (None before the operator wrote one); ``scheduled``
    the time it was created for (annotation; None for a run-now task); ``settled``
    whether its event is published or will never be (views.event_settled): only then may
    the history limit delete it.
    """

    name: str
    uid: str
    state: Optional[str]
    created: Optional[datetime]
    scheduled: Optional[datetime] = None
    finished: Optional[datetime] = None
    settled: bool = False
    deleting: bool = False

    @property
    def finished_ok(self) -> bool:
        return self.state == "SUCCESS"

    @property
    def active(self) -> bool:
        return self.state not in TERMINAL and not self.deleting


@dataclass(frozen=True)
class ScheduleSpec:
    """``spec`` of a LimeTaskSchedule with the CRD's defaults applied."""

    schedule: str
    time_zone: Optional[str] = None
    concurrency_policy: str = "Allow"
    starting_deadline_seconds: Optional[int] = None
    suspend: bool = False
    successful_history: int = 3
    failed_history: int = 1

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> "ScheduleSpec":
        def count(name: str, default: int) -> int:
            value = spec.get(name)
            return value if isinstance(value, int) and value >= 0 else default

        deadline = spec.get("startingDeadlineSeconds")
        return cls(
            schedule=str(spec.get("schedule") or ""),
            time_zone=spec.get("timeZone") or None,
            concurrency_policy=spec.get("concurrencyPolicy") or "Allow",
            starting_deadline_seconds=deadline if isinstance(deadline, int) and deadline > 0 else None,
            suspend=bool(spec.get("suspend")),
            successful_history=count("successfulTasksHistoryLimit", 3),
            failed_history=count("failedTasksHistoryLimit", 1),
        )


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the schedule: type Normal or Warning."""

    type: str
    reason: str
    message: str


@dataclass
class Plan:
    """What to do in one pass, in this order: delete ``replace`` (Replace policy), create
    the run for ``create`` (a UTC instant) named ``create_name``, delete ``prune`` (history),
    write ``status`` (fields to set; None values are removed), post ``events``, look again
    after ``requeue_after`` seconds of schedule time (None: only on a change)."""

    create: Optional[datetime] = None
    create_name: Optional[str] = None
    replace: list[OwnedTask] = field(default_factory=list)
    prune: list[OwnedTask] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    requeue_after: Optional[float] = None


def format_time(moment: Optional[datetime]) -> Optional[str]:
    """RFC 3339 in UTC, whole seconds, 'Z' (what the API server stores for date-time)."""
    if moment is None:
        return None
    return timestamps.format_time(moment)


def parse_time(text: Any) -> Optional[datetime]:
    """An RFC 3339 time from a status or annotation, None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = timestamps.parse_time(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _ready(status: Mapping[str, Any], state: str, reason: str, message: str, generation: Optional[int],
           now: datetime) -> list[dict[str, Any]]:
    """The conditions list with Ready set; lastTransitionTime kept unless status changes."""
    conditions = [dict(c) for c in status.get("conditions") or [] if isinstance(c, Mapping)]
    old = next((c for c in conditions if c.get("type") == CONDITION_READY), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == state else format_time(now)
    ready = {"type": CONDITION_READY, "status": state, "reason": reason, "message": message[:1024],
             "lastTransitionTime": since}
    if generation is not None:
        ready["observedGeneration"] = generation
    others = [c for c in conditions if c.get("type") != CONDITION_READY]
    return [ready] + others[:7]


def _history(tasks: Sequence[OwnedTask], spec: ScheduleSpec) -> list[OwnedTask]:
    """Finished tasks beyond the history limits, oldest first; a task whose event is not
    settled yet is kept (and still counts against the limit, so none is lost)."""
    prune: list[OwnedTask] = []
    for ok, limit in ((True, spec.successful_history), (False, spec.failed_history)):
        done = [t for t in tasks if t.state in TERMINAL and t.finished_ok == ok and not t.deleting]
        epoch = datetime.min.replace(tzinfo=timezone.utc)
        done.sort(key=lambda t: (t.finished or t.scheduled or t.created or epoch, t.name), reverse=True)
        prune += [t for t in done[limit:] if t.settled]
    return prune


def plan(name: str, spec_body: Mapping[str, Any], status: Mapping[str, Any], created: datetime,
         generation: Optional[int], tasks: Sequence[OwnedTask], now: datetime,
         template_problem: Optional[str] = None) -> Plan:
    """Decide one pass for schedule `name` (see the module docstring for the rules).

    ``spec_body``/``status`` as stored (camelCase); ``created`` the schedule's
    creationTimestamp; ``tasks`` every task the schedule owns; ``now`` the clock (UTC);
    ``template_problem`` why the task template is refused (the operator's LimeTask
    checks), or None.
    """
    spec = ScheduleSpec.of(spec_body)
    result = Plan()
    active = sorted((t for t in tasks if t.active), key=lambda t: (t.scheduled or t.created or now, t.name))
    result.prune = _history(tasks, spec)
    last_ok = max((t.finished for t in tasks if t.finished_ok and t.finished), default=None)
    recorded_ok = parse_time(status.get("lastSuccessfulTime"))
    if recorded_ok and (last_ok is None or recorded_ok > last_ok):
        last_ok = recorded_ok
    fields: dict[str, Any] = {"lastSuccessfulTime": format_time(last_ok), "observedGeneration": generation}

    def finish(state: str, reason: str, message: str, next_time: Optional[datetime],
               active_names: list[str]) -> Plan:
        fields["nextScheduleTime"] = format_time(next_time)
        fields["active"] = active_names[:MAX_ACTIVE_LISTED]
        fields["activeCount"] = len(active_names)
        fields["conditions"] = _ready(status, state, reason, message, generation, now)
        result.status = fields
        if next_time is not None:
            result.requeue_after = max(0.0, (next_time - now).total_seconds())
        return result

    names = [t.name for t in active]
    try:
        cron = parse_cron(spec.schedule, spec.time_zone)
    except InvalidSchedule as error:
        return finish("False", error.reason, str(error), None, names)
    if spec.concurrency_policy not in POLICIES:
        return finish("False", REASON_INVALID_SCHEDULE,
                      f"concurrencyPolicy {spec.concurrency_policy!r} is not one of {', '.join(POLICIES)}", None, names)
    if template_problem:
        return finish("False", REASON_INVALID_TEMPLATE, f"taskTemplate: {template_problem}", None, names)
    if spec.suspend:
        return finish("True", REASON_SUSPENDED, "suspended: no new runs start", None, names)

    next_time = cron.after(now)
    last = parse_time(status.get("lastScheduleTime"))
    earliest = last or created  # CronJob: lastScheduleTime, else the creation
    window_start = earliest
    if spec.starting_deadline_seconds is not None:
        window_start = max(earliest, now - timedelta(seconds=spec.starting_deadline_seconds))
    due = cron.latest_at_or_before(now)
    if due is None or due <= window_start:
        # Nothing due in the window; were there due times before it (missed for good)?
        missed = cron.after(earliest)
        if missed is not None and missed <= window_start and _first_sight(status, missed):
            result.events.append(Event("Warning", "MissedSchedule",
                                       f"missed the run due at {format_time(missed)}: it could not start within "
                                       f"startingDeadlineSeconds ({spec.starting_deadline_seconds}s)"))
        return finish("True", REASON_SCHEDULING, _next_message(next_time), next_time, names)

    if _first_sight(status, due):
        count = _count_due(cron, window_start, now)
        if count > TOO_MANY_MISSED:
            result.events.append(Event(
                "Warning", "TooManyMissedTimes",
                f"more than {TOO_MANY_MISSED} runs were due since {format_time(window_start)}; only the most recent "
                f"({format_time(due)}) starts. Check the operator was running, or set startingDeadlineSeconds"))
    run_name = task_name(name, due)
    if any(t.name == run_name for t in tasks):
        # Created by an earlier pass (or an earlier operator) whose status write did not land.
        fields["lastScheduleTime"] = format_time(due)
        return finish("True", REASON_SCHEDULING, _next_message(next_time), next_time, names)
    if active and spec.concurrency_policy == "Forbid":
        if _first_sight(status, due):
            result.events.append(Event("Normal", "RunSkipped",
                                       f"run due at {format_time(due)} not started: concurrencyPolicy Forbid and "
                                       f"{', '.join(names[:5])} not finished; it starts when they finish, "
                                       "if still within startingDeadlineSeconds"))
        # lastScheduleTime stays: the run is still owed (CronJob's Forbid), and starts when
        # the unfinished task's end nudges the schedule, if still within the deadline.
        return finish("True", REASON_SCHEDULING, f"run due at {format_time(due)} waits for {names[0]} to finish "
                      "(concurrencyPolicy Forbid)", next_time, names)
    if active and spec.concurrency_policy == "Replace":
        result.replace = list(active)
        result.events.append(Event("Normal", "RunReplaced",
                                   f"deleting unfinished {', '.join(names[:5])} to start the run due at "
                                   f"{format_time(due)} (concurrencyPolicy Replace)"))
        names = []
    result.create = due
    result.create_name = run_name
    fields["lastScheduleTime"] = format_time(due)
    return finish("True", REASON_SCHEDULING, _next_message(next_time), next_time, names + [run_name])


def _first_sight(status: Mapping[str, Any], due: datetime) -> bool:
    """Whether this pass is the first to see `due` as due: the previous pass's
    nextScheduleTime was at or before it (or unset). Keeps Events to one per due time."""
    previous = parse_time(status.get("nextScheduleTime"))
    last = parse_time(status.get("lastScheduleTime"))
    if last is not None and last >= due:
        return False
    return previous is None or previous <= due


def _count_due(cron: Cron, after: datetime, until: datetime) -> int:
    """Due times in (after, until], counted up to TOO_MANY_MISSED + 1."""
    count, moment = 0, after
    while count <= TOO_MANY_MISSED:
        moment = cron.after(moment)
        if moment is None or moment > until:
            break
        count += 1
    return count


def _next_message(next_time: Optional[datetime]) -> str:
    return f"next run at {format_time(next_time)}" if next_time else "no future time matches the schedule"


def owned_task(body: Mapping[str, Any], events_settled: bool, annotation: str) -> OwnedTask:
    """An OwnedTask from a LimeTask body; ``annotation`` the scheduled-time annotation key,
    ``events_settled`` from views.event_settled on its status."""
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    return OwnedTask(
        name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        state=status.get("state"),
        created=parse_time(metadata.get("creationTimestamp")),
        scheduled=parse_time((metadata.get("annotations") or {}).get(annotation)),
        finished=parse_time(status.get("finishedAt")),
        settled=events_settled,
        deleting=bool(metadata.get("deletionTimestamp")),
    )

