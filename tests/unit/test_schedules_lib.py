"""lime_task.schedules (pure parts), `lime-task schedule` parsing and output, the test
clock, and the controller's status diff."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pytest

from lime_task import cli, cli_schedule, schedules
from lime_task.constants import (ANNOTATION_INSTANTIATE, ANNOTATION_SCHEDULED_AT, LABEL_APP, LABEL_SCHEDULE,
                                 SCHEDULE_KIND)
from lime_task.errors import InvalidTaskError
from lime_task_operator import schedule, schedule_clock
from lime_task_operator.schedule_controller import status_changes

SCHEDULE = {
    "apiVersion": "limetask.dev/v1alpha1", "kind": SCHEDULE_KIND,
    "metadata": {"name": "nightly", "namespace": "reports", "uid": "u-1"},
    "spec": {"schedule": "30 2 * * *", "taskTemplate": {"task": "reports.tasks.nightly", "app": "reports",
                                                       "args": [2.0], "kwargs": {}, "floatPaths": ["/args/0"]}},
}


def test_task_for_run_is_owned_labelled_and_annotated():
    when = datetime(2026, 5, 4, 2, 30, tzinfo=timezone.utc)
    body = schedules.task_for_run(SCHEDULE, schedule.task_name("nightly", when), when)
    metadata = body["metadata"]
    assert metadata["name"] == f"nightly-{int(when.timestamp()) // 60}"
    assert metadata["namespace"] == "reports"
    assert metadata["labels"] == {LABEL_SCHEDULE: "nightly", LABEL_APP: "reports"}
    assert metadata["annotations"] == {ANNOTATION_SCHEDULED_AT: "2026-05-04T02:30:00Z"}
    [owner] = metadata["ownerReferences"]
    assert owner["kind"] == SCHEDULE_KIND and owner["uid"] == "u-1" and owner["controller"] is True
    # The template as stored, floatPaths included, so 2.0 reaches the task as a float.
    assert body["spec"] == SCHEDULE["spec"]["taskTemplate"]
    assert body["spec"] is not SCHEDULE["spec"]["taskTemplate"]


def test_run_now_tasks_are_marked_manual_and_never_take_a_due_times_name():
    body = schedules.task_for_run(SCHEDULE, schedules.run_now_name("nightly"), None)
    assert body["metadata"]["annotations"] == {ANNOTATION_INSTANTIATE: "manual"}
    name = body["metadata"]["name"]
    assert name.startswith("nightly-manual-") and schedules.belongs_to_schedule("nightly", name)
    assert name != schedule.task_name("nightly", datetime.now(timezone.utc))


@pytest.mark.parametrize("schedule_name,task_id,expected", [
    ("nightly", "nightly-29933431", True),
    ("nightly", "nightly-manual-bc2d4", True),
    ("nightly", "nightly-eu-29933431", False),
    ("nightly-eu", "nightly-29933431", False),
    ("nightly", "nightly-manual-toolong1", False),
    ("nightly", "nightly-", False),
    ("nightly", "other-29933431", False),
])
def test_belongs_to_schedule(schedule_name, task_id, expected):
    assert schedules.belongs_to_schedule(schedule_name, task_id) is expected


@pytest.mark.parametrize("template,words", [
    ({"task": "m.f", "app": "a", "kwargs": {"not an identifier": 1}}, "not a Python identifier"),
    ({"task": "nodots", "app": "a"}, "task: String should match pattern"),
    ({"task": "m.f", "app": "a", "args": ["x" * 40000]}, "32768"),
    ("text", "must be an object"),
])
def test_template_problem_names_it(template, words):
    assert words in schedules.template_problem(template)


def test_template_problem_none_for_a_good_template():
    assert schedules.template_problem(SCHEDULE["spec"]["taskTemplate"]) is None


def test_build_schedule_checks_the_template_like_send_task():
    body = schedules.build_schedule("n", "@daily", "m.f", "a", [1.0], {"k": 2}, concurrency_policy="Forbid",
                                    starting_deadline_seconds=60, successful_history=0)
    spec = body["spec"]
    assert spec["taskTemplate"]["floatPaths"] == ["/args/0"] and spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulTasksHistoryLimit"] == 0 and "failedTasksHistoryLimit" not in spec
    with pytest.raises(InvalidTaskError, match="template"):
        schedules.build_schedule("n", "@daily", "m.f", "a", [], {"bad key": 1})
    with pytest.raises(InvalidTaskError, match="Sometimes"):
        schedules.build_schedule("n", "@daily", "m.f", "a", concurrency_policy="Sometimes")


# ------------------------------------------------------------------ CLI


def test_cli_parses_schedule_create():
    options = cli.parse(["schedule", "create", "nightly", "--cron", "30 2 * * *", "--task", "m.f", "--app", "a",
                         "--arg", "1", "--arg", "-2", "--kwarg", "x=3", "--concurrency-policy", "Replace",
                         "--starting-deadline", "30", "-n", "ns", "-o", "json"])
    assert (options.command, options.action, options.name, options.cron) == ("schedule", "create", "nightly",
                                                                             "30 2 * * *")
    assert options.args == ["1", "-2"] and options.concurrency_policy == "Replace"
    assert options.starting_deadline == 30 and options.namespace == "ns" and options.output == "json"


@pytest.mark.parametrize("argv", [
    ["schedule", "create", "n", "--task", "m.f", "--app", "a"],  # no --cron
    ["schedule", "create", "n", "--cron", "@daily", "--task", "m.f", "--app", "a", "--starting-deadline", "0"],
    ["schedule", "create", "n", "--cron", "@daily", "--task", "m.f", "--app", "a", "--failed-history", "101"],
    ["schedule", "create", "n", "--cron", "@daily", "--task", "m.f", "--app", "a", "--concurrency-policy", "x"],
    ["schedule", "explode", "n"],
    ["schedule", "get"],
])
def test_cli_refuses_bad_schedule_commands_with_usage(argv, capsys):
    assert cli.main(argv, out=io.StringIO(), err=io.StringIO()) == 2
    assert "error:" in capsys.readouterr().err  # argparse's message, naming the option


def test_cli_refuses_a_bad_kwarg_before_any_api_call(monkeypatch):
    def no_api(*_a, **_k):
        raise AssertionError("no API call expected")
    monkeypatch.setattr(schedules, "create_schedule", no_api)
    err = io.StringIO()
    code = cli.main(["schedule", "create", "n", "--cron", "@daily", "--task", "m.f", "--app", "a",
                     "--kwarg", "not-a-name=1"], out=io.StringIO(), err=err)
    assert code == 2 and "not-a-name" in err.getvalue()


STORED = {**SCHEDULE, "status": {
    "lastScheduleTime": "2026-05-04T02:30:00Z", "nextScheduleTime": "2026-05-05T02:30:00Z", "activeCount": 1,
    "active": ["nightly-29633430"],
    "conditions": [{"type": "Ready", "status": "True", "reason": "Scheduling", "message": "next run at ..."}]}}


def test_summary_and_text_output():
    item = cli_schedule.summary(STORED)
    assert item["timeZone"] == "UTC" and item["activeCount"] == 1 and item["reason"] == "Scheduling"
    table = cli_schedule.format_table([STORED], datetime(2026, 5, 4, 3, 30, tzinfo=timezone.utc)).splitlines()
    assert table[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "NEXT", "READY"]
    assert table[1].split()[-4:] == ["1", "1h", "2026-05-05T02:30:00Z", "Scheduling"]
    details = cli_schedule.format_details(STORED)
    assert "Active (1):" in details and "nightly-29633430" in details and "Ready:              True" in details


def test_get_json_through_main(monkeypatch):
    monkeypatch.setattr(schedules, "get_schedule", lambda name, namespace=None: STORED)
    out = io.StringIO()
    assert cli.main(["schedule", "get", "nightly", "-o", "json"], out=out, err=io.StringIO()) == 0
    assert '"nextScheduleTime":"2026-05-05T02:30:00Z"' in out.getvalue()


def test_not_found_exits_3(monkeypatch):
    from lime_task.errors import NotFoundError

    def missing(name, namespace=None):
        raise NotFoundError(f"no LimeTaskSchedule {name!r}")
    monkeypatch.setattr(schedules, "get_schedule", missing)
    err = io.StringIO()
    assert cli.main(["schedule", "get", "nope"], out=io.StringIO(), err=err) == 3 and "nope" in err.getvalue()


# ------------------------------------------------------------------ clock, status diff


def test_test_clock_runs_faster_from_its_anchor_and_is_continuous():
    wall = iter([1000.0, 1010.0])
    clock = schedule_clock.ScheduleClock(1000.0, 60.0, lambda: next(wall))
    assert clock.now() == datetime.fromtimestamp(1000, timezone.utc)
    assert clock.now() == datetime.fromtimestamp(1000 + 600, timezone.utc)
    assert clock.real_seconds(60) == 1.0
    assert schedule_clock.from_environ({}).speed == 1.0
    assert schedule_clock.from_environ({schedule_clock.ENV_TEST_CLOCK: "1000:12"}) == \
        schedule_clock.ScheduleClock(1000.0, 12.0)


@pytest.mark.parametrize("value", ["fast", "1000", "1000:0.5", "1000:nan", "-5:2", "x:2"])
def test_test_clock_refuses_bad_values_naming_the_variable(value):
    with pytest.raises(ValueError, match=schedule_clock.ENV_TEST_CLOCK):
        schedule_clock.from_environ({schedule_clock.ENV_TEST_CLOCK: value})


def test_status_changes_writes_nothing_when_nothing_changed():
    current = {"lastScheduleTime": "a", "nextScheduleTime": "b", "active": []}
    assert status_changes(current, {"lastScheduleTime": "a", "nextScheduleTime": "b", "active": []}) == ({}, [])
    assert status_changes(current, {"nextScheduleTime": None, "active": ["x"], "lastSuccessfulTime": None}) == \
        ({"active": ["x"]}, ["nextScheduleTime"])


# ------------------------------------------------------------------ example 04 (pure parts)


def _example():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).parents[2] / "examples" / "04-nightly-report" / "report_failures.py"
    spec = importlib.util.spec_from_file_location("report_failures_unit", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["report_failures_unit"] = module
    spec.loader.exec_module(module)
    return module


def _event(task_id, state="FAILURE", message_id="m-1"):
    from lime_task.events import TaskEvent

    return TaskEvent(task_id=task_id, task_name="sample_tasks.tasks.fail", app="reports", state=state,
                     reason="TaskRaised", attempts=2, message_id=message_id,
                     error={"type": "ValueError", "message": "no data\nsecond line"})


def test_example_04_mails_failed_runs_of_its_schedule_once_and_nothing_else():
    example = _example()
    mails: list[str] = []
    mailer = example.RunFailureMailer("nightly-report", send=mails.append, recipient="r@example.com")
    mailer(_event("nightly-report-29934810"))
    mailer(_event("nightly-report-29934810"))  # redelivered: same message id
    mailer(_event("nightly-report-manual-bc2d4", message_id="m-2"))
    mailer(_event("nightly-report-eu-29934810", message_id="m-3"))  # another schedule
    mailer(_event("3f1c0e9a-hand-sent", message_id="m-4"))  # sent by hand
    mailer(_event("nightly-report-29934811", state="SUCCESS", message_id="m-5"))
    assert mails == [
        "To: r@example.com | Subject: schedule nightly-report: run nightly-report-29934810 failed "
        "(reason TaskRaised, attempts 2): ValueError: no data",
        "To: r@example.com | Subject: schedule nightly-report: run nightly-report-manual-bc2d4 failed "
        "(reason TaskRaised, attempts 2): ValueError: no data",
    ]
