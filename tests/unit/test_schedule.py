"""The pure schedule logic (lime_task_operator.schedule) with a fake clock: cron parsing,
every concurrency policy, missed runs per CronJob's rules, DST, suspend, history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from lime_task_operator import schedule as s

UTC = timezone.utc
T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)  # a Monday
CREATED = T0 - timedelta(hours=1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def task(name, state=None, scheduled=None, finished=None, settled=True, deleting=False):
    return s.OwnedTask(name=name, uid=f"uid-{name}", state=state, created=scheduled or CREATED,
                       scheduled=scheduled, finished=finished, settled=settled, deleting=deleting)


def plan(spec=None, status=None, tasks=(), now=T0, created=CREATED, problem=None):
    body = {"schedule": "*/5 * * * *", **(spec or {})}
    return s.plan("nightly", body, status or {}, created, 3, list(tasks), now, problem)


def ready(p):
    return next(c for c in p.status["conditions"] if c["type"] == "Ready")


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize("text,fields", [
    ("*/5 * * * *", "*/5 * * * *"),
    ("  0   2 * * MON-FRI ", "0 2 * * MON-FRI"),
    ("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"),
])
def test_parse_accepts_five_fields_and_cronjob_macros(text, fields):
    assert s.parse_cron(text, None).expression == fields


@pytest.mark.parametrize("text,zone,reason,words", [
    ("", None, "InvalidSchedule", "empty"),
    ("60 * * * *", None, "InvalidSchedule", "Bad minute"),
    ("* * * *", None, "InvalidSchedule", "4 fields"),
    ("0 * * * * *", None, "InvalidSchedule", "6 fields"),  # cronsim's seconds field: not cron
    ("@reboot", None, "InvalidSchedule", "unknown macro"),
    ("TZ=Europe/Oslo 0 2 * * *", None, "InvalidSchedule", "spec.timeZone"),
    ("0 0 30 2 *", None, "InvalidSchedule", "day-of-month"),
    ("0 2 * * *", "Mars/Olympus", "InvalidTimeZone", "Mars/Olympus"),
    ("0 2 * * *", "../etc/passwd", "InvalidTimeZone", "../etc/passwd"),
])
def test_parse_refuses_naming_the_problem(text, zone, reason, words):
    with pytest.raises(s.InvalidSchedule) as error:
        s.parse_cron(text, zone)
    assert error.value.reason == reason
    assert words in str(error.value)


def test_task_names_are_deterministic_minutes_since_the_epoch():
    assert s.task_name("nightly", T0) == f"nightly-{int(T0.timestamp()) // 60}"
    assert s.task_name("nightly", T0) == s.task_name("nightly", T0.astimezone(timezone(timedelta(hours=2))))
    assert len(s.task_name("x" * s.MAX_SCHEDULE_NAME, T0)) <= 63


# ------------------------------------------------------------------ when runs start


def test_a_due_time_creates_exactly_its_task_and_records_it():
    p = plan(status={"lastScheduleTime": s.format_time(at(-5))}, now=at(0.2))
    assert p.create == T0 and p.create_name == s.task_name("nightly", T0)
    assert p.status["lastScheduleTime"] == s.format_time(T0)
    assert p.status["nextScheduleTime"] == s.format_time(at(5))
    assert p.status["active"] == [p.create_name] and p.status["activeCount"] == 1
    assert p.requeue_after == pytest.approx((at(5) - at(0.2)).total_seconds())
    assert ready(p)["status"] == "True" and ready(p)["reason"] == "Scheduling"
    assert p.status["observedGeneration"] == 3


def test_nothing_due_before_the_first_time_after_creation():
    p = plan(created=at(-2), now=at(-1))
    assert p.create is None and p.status["nextScheduleTime"] == s.format_time(T0)
    assert p.requeue_after == 60


def test_a_run_already_created_is_adopted_not_repeated():
    name = s.task_name("nightly", T0)
    p = plan(status={"lastScheduleTime": s.format_time(at(-5))}, tasks=[task(name, "PENDING", T0)], now=at(1))
    assert p.create is None and p.status["lastScheduleTime"] == s.format_time(T0)


def test_missed_runs_start_only_the_most_recent_one():
    p = plan(status={"lastScheduleTime": s.format_time(at(-60))}, now=at(1))
    assert p.create == T0  # not at(-55), at(-50), ...: one catch-up
    assert not p.events


def test_more_than_100_missed_times_warn_and_start_one():
    p = plan({"schedule": "* * * * *"}, status={"lastScheduleTime": s.format_time(at(-500)),
                                                "nextScheduleTime": s.format_time(at(-499))}, now=at(0.5))
    assert p.create == T0
    assert [e.reason for e in p.events] == ["TooManyMissedTimes"] and p.events[0].type == "Warning"


def test_exactly_100_missed_times_do_not_warn():
    p = plan({"schedule": "* * * * *"}, status={"lastScheduleTime": s.format_time(at(-100))}, now=at(0.5))
    assert p.create == T0 and not p.events


def test_starting_deadline_bounds_the_catch_up():
    late = plan({"startingDeadlineSeconds": 60}, status={"lastScheduleTime": s.format_time(at(-5)),
                                                         "nextScheduleTime": s.format_time(T0)}, now=at(2))
    assert late.create is None
    assert [e.reason for e in late.events] == ["MissedSchedule"]
    assert "lastScheduleTime" not in late.status
    in_time = plan({"startingDeadlineSeconds": 180}, status={"lastScheduleTime": s.format_time(at(-5))}, now=at(2))
    assert in_time.create == T0


def test_missed_schedule_event_is_posted_once():
    status = {"lastScheduleTime": s.format_time(at(-5)), "nextScheduleTime": s.format_time(T0)}
    first = plan({"startingDeadlineSeconds": 60}, status=status, now=at(2))
    again = plan({"startingDeadlineSeconds": 60}, status={**status, **first.status}, now=at(3))
    assert first.events and not again.events


# ------------------------------------------------------------------ concurrency policies

ACTIVE = task("nightly-old", "STARTED", at(-5))


def test_allow_starts_beside_an_unfinished_task():
    p = plan({"concurrencyPolicy": "Allow"}, status={"lastScheduleTime": s.format_time(at(-5))},
             tasks=[ACTIVE], now=at(0.1))
    assert p.create == T0 and not p.replace
    assert p.status["active"] == ["nightly-old", p.create_name]


def test_forbid_skips_while_unfinished_and_keeps_the_run_owed():
    status = {"lastScheduleTime": s.format_time(at(-5)), "nextScheduleTime": s.format_time(T0)}
    p = plan({"concurrencyPolicy": "Forbid"}, status=status, tasks=[ACTIVE], now=at(0.1))
    assert p.create is None and "lastScheduleTime" not in p.status
    assert [e.reason for e in p.events] == ["RunSkipped"]
    assert "Forbid" in ready(p)["message"]
    # Seen again (the task's events nudge the schedule): no second Event.
    again = plan({"concurrencyPolicy": "Forbid"}, status={**status, **p.status}, tasks=[ACTIVE], now=at(0.5))
    assert again.create is None and not again.events
    # The earlier task finished within the deadline: the owed run starts, late.
    done = task("nightly-old", "SUCCESS", at(-5), finished=at(1))
    late = plan({"concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 120},
                status={**status, **p.status}, tasks=[done], now=at(1.5))
    assert late.create == T0
    # ... but not once the deadline has passed: then it is missed.
    missed = plan({"concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 60},
                  status={**status, **p.status}, tasks=[done], now=at(1.5))
    assert missed.create is None


def test_replace_deletes_the_unfinished_tasks_then_starts():
    p = plan({"concurrencyPolicy": "Replace"}, status={"lastScheduleTime": s.format_time(at(-5))},
             tasks=[ACTIVE, task("nightly-done", "FAILURE", at(-10), at(-9))], now=at(0.1))
    assert [t.name for t in p.replace] == ["nightly-old"]
    assert p.create == T0 and p.status["active"] == [p.create_name]
    assert [e.reason for e in p.events] == ["RunReplaced"]


def test_tasks_being_deleted_are_not_active():
    gone = task("nightly-old", "STARTED", at(-5), deleting=True)
    p = plan({"concurrencyPolicy": "Forbid"}, status={"lastScheduleTime": s.format_time(at(-5))},
             tasks=[gone], now=at(0.1))
    assert p.create == T0


# ------------------------------------------------------------------ suspend, invalid


def test_suspended_starts_nothing_and_has_no_next_time():
    p = plan({"suspend": True}, status={"lastScheduleTime": s.format_time(at(-5))}, now=at(0.1))
    assert p.create is None and p.status["nextScheduleTime"] is None and p.requeue_after is None
    assert ready(p)["reason"] == "Suspended" and ready(p)["status"] == "True"


def test_resume_without_deadline_starts_the_most_recent_missed_run():
    p = plan(status={"lastScheduleTime": s.format_time(at(-60))}, now=at(3))
    assert p.create == T0


def test_resume_with_deadline_skips_runs_missed_while_suspended():
    p = plan({"startingDeadlineSeconds": 60}, status={"lastScheduleTime": s.format_time(at(-60))}, now=at(3))
    assert p.create is None


@pytest.mark.parametrize("spec,reason", [
    ({"schedule": "61 * * * *"}, "InvalidSchedule"),
    ({"timeZone": "Nowhere/Atlantis"}, "InvalidTimeZone"),
    ({"concurrencyPolicy": "Sometimes"}, "InvalidSchedule"),
])
def test_an_invalid_schedule_starts_nothing_and_says_why(spec, reason):
    p = plan(spec, status={"lastScheduleTime": s.format_time(at(-60))}, now=at(1))
    assert p.create is None and ready(p)["status"] == "False" and ready(p)["reason"] == reason
    assert p.status["nextScheduleTime"] is None


def test_an_invalid_template_starts_nothing():
    p = plan(status={"lastScheduleTime": s.format_time(at(-5))}, now=at(1), problem="kwargs: bad name")
    assert p.create is None and ready(p)["reason"] == "InvalidTemplate" and "kwargs" in ready(p)["message"]


def test_ready_keeps_its_transition_time_while_unchanged():
    first = plan(now=at(1))
    later = plan(status=first.status, now=at(7))
    assert ready(later)["lastTransitionTime"] == ready(first)["lastTransitionTime"]
    broken = plan({"schedule": "61 * * * *"}, status=later.status, now=at(8))
    assert ready(broken)["lastTransitionTime"] == s.format_time(at(8))


# ------------------------------------------------------------------ history


def test_history_limits_delete_the_oldest_settled_finished_tasks():
    ok = [task(f"ok-{i}", "SUCCESS", at(-50 + i), at(-49 + i)) for i in range(5)]
    failed = [task(f"bad-{i}", "FAILURE", at(-40 + i), at(-39 + i)) for i in range(3)]
    p = plan({"successfulTasksHistoryLimit": 2, "failedTasksHistoryLimit": 1}, tasks=ok + failed,
             status={"lastScheduleTime": s.format_time(T0)}, now=at(1))
    assert sorted(t.name for t in p.prune) == ["bad-0", "bad-1", "ok-0", "ok-1", "ok-2"]
    assert p.status["lastSuccessfulTime"] == s.format_time(at(-45))


def test_history_keeps_a_task_whose_event_is_not_published_yet():
    ok = [task("ok-0", "SUCCESS", at(-50), at(-49), settled=False), task("ok-1", "SUCCESS", at(-45), at(-44))]
    p = plan({"successfulTasksHistoryLimit": 0}, tasks=ok, status={"lastScheduleTime": s.format_time(T0)}, now=at(1))
    assert [t.name for t in p.prune] == ["ok-1"]


def test_history_zero_and_unfinished_tasks_are_never_pruned():
    p = plan({"successfulTasksHistoryLimit": 0, "failedTasksHistoryLimit": 0},
             tasks=[ACTIVE], status={"lastScheduleTime": s.format_time(T0)}, now=at(1))
    assert p.prune == []


def test_last_successful_time_never_goes_back():
    p = plan(tasks=[task("ok", "SUCCESS", at(-20), at(-19))],
             status={"lastScheduleTime": s.format_time(T0), "lastSuccessfulTime": s.format_time(at(-2))}, now=at(1))
    assert p.status["lastSuccessfulTime"] == s.format_time(at(-2))


# ------------------------------------------------------------------ daylight saving time

BERLIN = "Europe/Berlin"


def runs(expression, zone, start, count):
    cron = s.parse_cron(expression, zone)
    out, moment = [], start
    for _ in range(count):
        moment = cron.after(moment)
        out.append(moment)
    return out


def test_spring_forward_a_daily_run_in_the_skipped_hour_runs_when_clocks_jump():
    # 2026-03-29 02:00 CET -> 03:00 CEST: 02:30 does not exist that night.
    times = runs("30 2 * * *", BERLIN, datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert times == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC), datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]


def test_fall_back_a_daily_run_in_the_repeated_hour_runs_once():
    # 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 happens twice; the run is once.
    times = runs("30 2 * * *", BERLIN, datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert times == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]


def test_hourly_keeps_real_time_pace_across_both_changes():
    spring = runs("0 * * * *", BERLIN, datetime(2026, 3, 28, 23, 30, tzinfo=UTC), 4)
    assert [b - a for a, b in zip(spring, spring[1:])] == [timedelta(hours=1)] * 3
    fall = runs("0 * * * *", BERLIN, datetime(2026, 10, 24, 22, 30, tzinfo=UTC), 4)
    assert [b - a for a, b in zip(fall, fall[1:])] == [timedelta(hours=1)] * 3
    names = {s.task_name("h", t) for t in fall}
    assert len(names) == 4  # 02:00 CEST and 02:00 CET are two runs with two names


def test_a_plan_across_the_repeated_hour_creates_one_task_per_instant():
    spec = {"schedule": "30 2 * * *", "timeZone": BERLIN}
    start = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)
    status: dict = {"lastScheduleTime": s.format_time(start)}
    created = []
    now = start
    while now < datetime(2026, 10, 25, 4, 0, tzinfo=UTC):
        p = s.plan("d", spec, status, start, 1, [], now)
        status = {**status, **{k: v for k, v in p.status.items() if v is not None}}
        if p.create:
            created.append(p.create)
        now += timedelta(minutes=10)
    assert created == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC)]


# ------------------------------------------------------------------ properties


@settings(max_examples=60, deadline=None)
@given(
    expression=st.sampled_from(["* * * * *", "*/7 * * * *", "0 * * * *", "15 3 * * *", "0 0 * * MON"]),
    policy=st.sampled_from(s.POLICIES),
    deadline=st.one_of(st.none(), st.integers(1, 7200)),
    steps=st.lists(st.integers(1, 5000), min_size=1, max_size=25),
    finish=st.lists(st.booleans(), min_size=25, max_size=25),
)
def test_never_two_tasks_for_one_due_time_and_only_due_times(expression, policy, deadline, steps, finish):
    """Passes at random moments (the operator's clock): every created task is for a due
    time, no due time gets two, no pass creates more than one, and a created time is
    never older than the starting deadline."""
    spec = {"schedule": expression, "concurrencyPolicy": policy}
    if deadline:
        spec["startingDeadlineSeconds"] = deadline
    cron = s.parse_cron(expression, None)
    status: dict = {}
    tasks: dict[str, s.OwnedTask] = {}
    created: list[datetime] = []
    now = T0
    for step, done in zip(steps, finish):
        now += timedelta(seconds=step)
        p = s.plan("p", spec, status, T0, 1, list(tasks.values()), now)
        for gone in p.replace + p.prune:
            tasks.pop(gone.name, None)
        if p.create:
            assert p.create <= now and cron.latest_at_or_before(p.create) == p.create
            if deadline:
                assert (now - p.create).total_seconds() <= deadline
            assert p.create_name not in tasks
            created.append(p.create)
            tasks[p.create_name] = task(p.create_name, "STARTED", p.create)
        status = {**status, **p.status}
        if done:  # everything unfinished finishes now
            tasks = {n: task(n, "SUCCESS", t.scheduled, now) if t.active else t for n, t in tasks.items()}
    assert len(created) == len(set(created))
    assert created == sorted(created)


CRON_FIELD = st.text(alphabet="0123456789*/,-#LW?MONTUEJANSUFRI", min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(fields=st.lists(CRON_FIELD, min_size=1, max_size=7),
       zone=st.sampled_from([None, "UTC", "Europe/Berlin", "America/St_Johns", "Australia/Lord_Howe", "Nope/Zone"]))
def test_any_expression_is_parsed_or_refused_with_invalid_schedule(fields, zone):
    """Whatever the API server's shape rule lets through (and more), the operator either
    reads it or refuses it as InvalidSchedule naming the problem, never another error;
    a readable one gives due times after and at-or-before a moment, in order."""
    import time as clock

    started = clock.monotonic()
    try:
        cron = s.parse_cron(" ".join(fields), zone)
    except s.InvalidSchedule as error:
        assert str(error) and error.reason in ("InvalidSchedule", "InvalidTimeZone")
        return
    finally:
        assert clock.monotonic() - started < 2.0
    nxt, prev = cron.after(T0), cron.latest_at_or_before(T0)
    assert nxt is None or nxt > T0
    assert prev is None or prev <= T0
