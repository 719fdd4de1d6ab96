"""What the CLI shows: the TaskView read from a LimeTask, human text and JSON."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from lime_task import cli, cli_output
from lime_task.cli_args import ExitCode
from lime_task.events import TaskEvent

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def lime_task(name="t1", state=None, app="my-app", created="2024-05-01T11:58:00Z", **status):
    obj = {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created, "labels": {"limetask.dev/app": app}},
        "spec": {"task": "pkg.tasks.add", "app": app, "args": [1, 2]},
    }
    if state:
        obj["status"] = {"state": state, **status}
    return obj


def test_a_task_without_status_is_pending():
    view = cli_output.view_of(lime_task())
    assert (view.id, view.status, view.result, view.error) == ("t1", "PENDING", None, None)
    assert view.to_json() == {"id": "t1", "status": "PENDING", "result": None}


def test_success_json_is_the_task_status_shape():
    view = cli_output.view_of(lime_task(state="SUCCESS", result={"sum": 3}, reason="Completed"))
    assert view.to_json() == {"id": "t1", "status": "SUCCESS", "result": {"sum": 3}}


def test_failure_json_adds_the_error():
    error = {"type": "ValueError", "message": "bad", "traceback": "Traceback...\nValueError: bad"}
    view = cli_output.view_of(lime_task(state="FAILURE", error=error, result="ignored"))
    assert view.failed
    assert view.to_json() == {"id": "t1", "status": "FAILURE", "result": None, "error": error}


def test_status_text_shows_result_or_error_and_the_traceback_tail():
    text = cli_output.format_status(cli_output.view_of(lime_task(state="SUCCESS", result={"sum": 3}, attempts=1, duration="1.2s")))
    assert "status:   SUCCESS" in text and 'result:   {"sum":3}' in text and "duration: 1.2s" in text
    error = {"type": "ValueError", "message": "bad input", "traceback": "File x\nValueError: bad input"}
    text = cli_output.format_status(cli_output.view_of(lime_task(state="FAILURE", error=error, reason="TaskRaised")))
    assert "error:  ValueError: bad input" in text
    assert "reason: TaskRaised" in text
    assert text.endswith("traceback (last lines):\n  File x\n  ValueError: bad input")
    assert "result" not in text


def test_failure_without_error_object_shows_the_condition_message():
    obj = lime_task(state="FAILURE", reason="InvalidTask", conditions=[
        {"type": "Succeeded", "status": "False", "reason": "InvalidTask", "message": "image not allowed", "lastTransitionTime": "2024-05-01T11:59:00Z"},
    ])
    assert "error:  image not allowed" in cli_output.format_status(cli_output.view_of(obj))


def test_table_is_aligned_with_kubectl_style_ages():
    views = [
        cli_output.view_of(lime_task("a-long-id", "SUCCESS", created="2024-05-01T11:59:30Z")),
        cli_output.view_of(lime_task("b", app="other", created="2024-04-28T12:00:00Z")),
    ]
    lines = cli_output.format_table(views, NOW).splitlines()
    assert lines[0].split() == ["ID", "STATE", "TASK", "APP", "AGE"]
    assert lines[1].split() == ["a-long-id", "SUCCESS", "pkg.tasks.add", "my-app", "30s"]
    assert lines[2].split() == ["b", "PENDING", "pkg.tasks.add", "other", "3d"]
    assert lines[0].index("STATE") == lines[1].index("SUCCESS") == lines[2].index("PENDING")


def test_empty_table_says_so():
    assert cli_output.format_table([], NOW) == "No tasks found."


@pytest.mark.parametrize("delta, text", [(0, "0s"), (59, "59s"), (60, "1m"), (7199, "1h"), (86400 * 2, "2d"), (-5, "0s")])
def test_age(delta, text):
    assert cli_output.age(NOW - timedelta(seconds=delta), NOW) == text


def test_select_tasks_filters_by_spec_app_not_label_and_by_state_oldest_first():
    relabelled = lime_task("sneaky", app="other", created="2024-05-01T10:00:00Z")
    relabelled["metadata"]["labels"]["limetask.dev/app"] = "my-app"  # the label lies
    items = [
        lime_task("new", "SUCCESS", created="2024-05-01T11:00:00Z"),
        lime_task("old", "SUCCESS", created="2024-05-01T09:00:00Z"),
        lime_task("running", "STARTED", created="2024-05-01T08:00:00Z"),
        relabelled,
    ]
    assert [v.id for v in cli.select_tasks(items, "my-app", None)] == ["running", "old", "new"]
    assert [v.id for v in cli.select_tasks(items, "my-app", "SUCCESS")] == ["old", "new"]
    assert [v.id for v in cli.select_tasks(items, None, None)] == ["running", "old", "sneaky", "new"]


def test_detailed_json_for_list_keeps_the_status_shape_first():
    data = cli_output.view_of(lime_task(state="STARTED", startedAt="2024-05-01T11:59:00Z")).to_json_detailed()
    assert list(data)[:3] == ["id", "status", "result"]
    assert data["task"] == "pkg.tasks.add" and data["createdAt"] == "2024-05-01T11:58:00Z"
    assert data["startedAt"] == "2024-05-01T11:59:00Z" and data["finishedAt"] is None
    json.dumps(data)  # serialisable as it is


def test_progress_line_names_state_and_reason():
    view = cli_output.view_of(lime_task(state="STARTED", reason="Running"))
    assert cli_output.format_progress(view) == "t1: STARTED (Running)"


def event(state, **extra):
    body = {"id": "t1", "task": "pkg.tasks.add", "app": "my-app", "state": state, "finishedAt": "2024-05-01T12:00:00Z", **extra}
    return TaskEvent.from_message(json.dumps(body), routing_key=f"core.task.pkg.tasks.add.{state.lower()}.v1")


def test_event_lines_show_result_or_error():
    assert cli_output.format_event(event("SUCCESS", result=3)) == (
        "2024-05-01T12:00:00Z  SUCCESS  pkg.tasks.add  id=t1  app=my-app  result=3"
    )
    line = cli_output.format_event(event("FAILURE", error={"type": "KeyError", "message": "'x'"}))
    assert line.endswith("error=KeyError: 'x'")


def test_event_json_is_the_body_plus_routing_key():
    data = cli_output.event_json(event("SUCCESS", result=[1]))
    assert data["result"] == [1] and data["routingKey"] == "core.task.pkg.tasks.add.success.v1"


def test_api_error_message_prefers_the_servers_message():
    class Fake:
        status, reason = 403, "Forbidden"
        body = json.dumps({"message": 'limetasks.limetask.dev "x" is forbidden'})

    assert cli_output.api_error_message(Fake()) == 'limetasks.limetask.dev "x" is forbidden'
    Fake.body = "not json"
    assert cli_output.api_error_message(Fake()) == "403 Forbidden"


def test_errors_map_to_documented_exit_codes():
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import MaxRetryError

    from lime_task import InvalidTaskError, NotFoundError
    from lime_task.events import ConsumerError
    from lime_task.kube import LimeTaskApiError

    cases = [
        (NotFoundError("no task 'x'"), ExitCode.NOT_FOUND),
        (InvalidTaskError("bad"), ExitCode.USAGE),
        (TimeoutError("late"), ExitCode.TIMEOUT),
        (LimeTaskApiError("no config"), ExitCode.UNAVAILABLE),
        (ConsumerError("no broker"), ExitCode.UNAVAILABLE),
        (MaxRetryError(None, "https://127.0.0.1:1"), ExitCode.UNAVAILABLE),
        (ApiException(status=404, reason="Not Found"), ExitCode.NOT_FOUND),
        (ApiException(status=403, reason="Forbidden"), ExitCode.FAILED),
        (cli.CliError("no logs", ExitCode.NOT_FOUND), ExitCode.NOT_FOUND),
    ]
    for error, code in cases:
        assert cli._error_code(error)[0] == code, error
    with pytest.raises(ZeroDivisionError):  # a bug is not disguised as an exit code
        cli._error_code(ZeroDivisionError())


def test_a_result_with_integral_floats_is_shown_as_the_task_returned_it():
    view = cli_output.view_of(lime_task(state="SUCCESS", result={"avg": 2, "n": 4}, resultFloatPaths=["/avg"]))
    assert view.result == {"avg": 2.0, "n": 4} and type(view.result["avg"]) is float
    assert cli_output.dumps(view.to_json()) == '{"id":"t1","status":"SUCCESS","result":{"avg":2.0,"n":4}}'


def test_a_poison_task_is_listed_and_marked_not_hidden():
    from lime_task import values

    deep = "[" * 5000 + "]" * 5000
    text = json.dumps({"items": [lime_task("ok"), lime_task("poison")]}).replace('"args": [1, 2]}}]', f'"args": [{deep}]}}}}]')
    items, cut = values.decode_bounded(text)
    assert cut
    views = cli.select_tasks(items["items"], None, None)
    assert [v.id for v in views] == ["ok", "poison"]
    assert views[0].invalid == ""
    assert views[1].invalid.startswith("spec['args'][0][0]") and "nested deeper than 200 levels" in views[1].invalid
    assert views[1].to_json_detailed()["invalid"] == views[1].invalid
    assert "invalid" not in views[0].to_json_detailed()
    table = cli_output.format_table(views, NOW).splitlines()
    assert table[0].split() == ["ID", "STATE", "TASK", "APP", "AGE", "NOTE"]
    assert table[2].startswith("poison") and "nested deeper" in table[2]
    assert "NOTE" not in cli_output.format_table(views[:1], NOW)
    assert "invalid:" in cli_output.format_status(views[1])
