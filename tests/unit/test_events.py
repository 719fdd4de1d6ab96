"""Pure parts of the event contract: routing keys, message ids, body, patterns, parsing."""

import json
from datetime import datetime, timezone

import pytest

from lime_task import events
from lime_task.events import (
    EventConsumer,
    TaskEvent,
    build_event_body,
    event_message_id,
    pattern_for,
    resolve_broker_url,
    resolve_exchange,
    routing_key,
)


def finished_task(state="SUCCESS", **status):
    base_status = {
        "state": state,
        "reason": "Completed" if state == "SUCCESS" else "TaskRaised",
        "startedAt": "2024-05-01T10:00:01Z",
        "finishedAt": "2024-05-01T10:00:05Z",
        "attempts": 1,
        "result": {"description": "done"},
        "error": {"type": "KeyError", "message": "'x'", "traceback": "Traceback ..."},
    }
    base_status.update(status)
    return {
        "apiVersion": "limetask.dev/v1alpha1",
        "kind": "LimeTask",
        "metadata": {
            "name": "3b0f6c1e-1111-4222-8333-444455556666",
            "namespace": "team-a",
            "uid": "9a8b7c6d-0000-1111-2222-333344445555",
            "creationTimestamp": "2024-05-01T10:00:00Z",
        },
        "spec": {"task": "my_package.tasks.lime.get_lime_company", "app": "my-app", "args": [1001]},
        "status": base_status,
    }


# -- routing keys -------------------------------------------------------------------


def test_routing_keys_follow_the_contract():
    assert routing_key("pkg.tasks.report", "SUCCESS") == "core.task.pkg.tasks.report.success.v1"
    assert routing_key("pkg.tasks.report", "FAILURE") == "core.task.pkg.tasks.report.failure.v1"


@pytest.mark.parametrize("state", ["PENDING", "STARTED", "success", "", None])
def test_routing_key_refuses_non_terminal_states(state):
    with pytest.raises(ValueError, match="has no event"):
        routing_key("pkg.tasks.report", state)


@pytest.mark.parametrize("name", ["report", "pkg.#", "pkg..x", "pkg.tasks.report.", "", "pkg.ta sk"])
def test_routing_key_refuses_names_that_are_not_task_paths(name):
    with pytest.raises(ValueError, match="not a dotted Python path"):
        routing_key(name, "SUCCESS")


# -- message ids ----------------------------------------------------------------------


def test_message_id_is_stable_per_uid_and_outcome():
    uid = "9a8b7c6d-0000-1111-2222-333344445555"
    assert event_message_id(uid, "SUCCESS") == event_message_id(uid, "SUCCESS")
    assert event_message_id(uid, "SUCCESS") != event_message_id(uid, "FAILURE")
    assert event_message_id(uid, "SUCCESS") != event_message_id("another-uid", "SUCCESS")
    assert uid in event_message_id(uid, "FAILURE")


def test_message_id_needs_a_uid_and_a_terminal_state():
    with pytest.raises(ValueError, match="uid is empty"):
        event_message_id("", "SUCCESS")
    with pytest.raises(ValueError, match="has no event"):
        event_message_id("uid-1", "STARTED")


# -- body -----------------------------------------------------------------------------


def test_success_body_has_the_result_and_no_error():
    body = build_event_body(finished_task("SUCCESS"))
    assert body == {
        "id": "3b0f6c1e-1111-4222-8333-444455556666",
        "uid": "9a8b7c6d-0000-1111-2222-333344445555",
        "task": "my_package.tasks.lime.get_lime_company",
        "app": "my-app",
        "namespace": "team-a",
        "state": "SUCCESS",
        "reason": "Completed",
        "result": {"description": "done"},
        "error": None,
        "createdAt": "2024-05-01T10:00:00Z",
        "startedAt": "2024-05-01T10:00:01Z",
        "finishedAt": "2024-05-01T10:00:05Z",
        "attempts": 1,
    }
    json.dumps(body)  # the publisher sends it as JSON


def test_failure_body_has_the_error_and_no_result():
    body = build_event_body(finished_task("FAILURE", attempts=3))
    assert body["state"] == "FAILURE"
    assert body["result"] is None
    assert body["error"] == {"type": "KeyError", "message": "'x'", "traceback": "Traceback ..."}
    assert body["attempts"] == 3


def test_body_accepts_datetimes_and_writes_them_as_utc_rfc3339():
    obj = finished_task("SUCCESS", finishedAt=datetime(2024, 5, 1, 12, 0, 5, tzinfo=timezone.utc))
    obj["metadata"]["creationTimestamp"] = datetime(2024, 5, 1, 12, 0, 0)  # naive: taken as UTC
    body = build_event_body(obj)
    assert body["finishedAt"] == "2024-05-01T12:00:05Z"
    assert body["createdAt"] == "2024-05-01T12:00:00Z"


def test_body_of_a_task_without_start_time_has_null_timestamps():
    obj = finished_task("FAILURE")
    del obj["status"]["startedAt"]
    assert build_event_body(obj)["startedAt"] is None


@pytest.mark.parametrize(
    "section,key",
    [("metadata", "name"), ("metadata", "uid"), ("spec", "task"), ("spec", "app"), ("status", "state")],
)
def test_body_names_the_missing_field(section, key):
    obj = finished_task()
    del obj[section][key]
    with pytest.raises(ValueError, match=f"no {section}.{key}"):
        build_event_body(obj)


def test_body_refuses_a_running_task():
    with pytest.raises(ValueError, match="'STARTED' has no event"):
        build_event_body(finished_task("STARTED"))


# -- patterns -------------------------------------------------------------------------


def test_patterns_default_to_every_event():
    assert pattern_for() == ["core.task.#.success.v1", "core.task.#.failure.v1"]
    assert pattern_for(failures=True, successes=True) == pattern_for()


def test_patterns_for_failures_or_successes_only():
    assert pattern_for(failures=True) == ["core.task.#.failure.v1"]
    assert pattern_for(successes=True) == ["core.task.#.success.v1"]


def test_patterns_for_one_task_or_a_package():
    assert pattern_for(successes=True, task="pkg.tasks.report") == ["core.task.pkg.tasks.report.success.v1"]
    assert pattern_for(failures=True, task="billing.#") == ["core.task.billing.#.failure.v1"]


def test_a_task_pattern_matches_the_routing_key_it_names():
    key = routing_key("pkg.tasks.report", "FAILURE")
    assert key in pattern_for(failures=True, task="pkg.tasks.report")


@pytest.mark.parametrize("task", ["", "pkg tasks", "pkg..x", "pkg/x", "pkg.#x"])
def test_patterns_refuse_bad_task_names(task):
    with pytest.raises(ValueError, match="not a dotted task name"):
        pattern_for(task=task)


# -- broker URL and exchange ------------------------------------------------------------


def test_broker_url_from_argument_else_environment(monkeypatch):
    monkeypatch.setenv("LIME_TASK_BROKER_URL", "amqp://env-host/")
    assert resolve_broker_url("amqp://arg-host/") == "amqp://arg-host/"
    assert resolve_broker_url() == "amqp://env-host/"


def test_missing_broker_url_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv("LIME_TASK_BROKER_URL", raising=False)
    with pytest.raises(ValueError, match="LIME_TASK_BROKER_URL"):
        resolve_broker_url()


def test_exchange_from_argument_else_environment_else_default(monkeypatch):
    monkeypatch.delenv("LIME_TASK_EXCHANGE", raising=False)
    assert resolve_exchange() == "lime_task"
    monkeypatch.setenv("LIME_TASK_EXCHANGE", "team_events")
    assert resolve_exchange() == "team_events"
    assert resolve_exchange("explicit") == "explicit"


def test_consumer_refuses_dead_letter_without_a_named_queue():
    with pytest.raises(ValueError, match="dead_letter needs a named queue"):
        EventConsumer(pattern_for(), url="amqp://127.0.0.1/", dead_letter=True)


def test_consumer_refuses_an_empty_pattern_list():
    with pytest.raises(ValueError, match="no routing-key patterns"):
        EventConsumer([], url="amqp://127.0.0.1/")


def test_consumer_redacts_the_password_in_urls():
    assert events.redact_url("amqp://user:s3cret@host:5672/vh") == "amqp://user:***@host:5672/vh"


# -- parsing a delivered message ------------------------------------------------------------


def test_event_round_trips_from_the_published_body():
    body = build_event_body(finished_task("FAILURE", attempts=2))
    event = TaskEvent.from_message(
        json.dumps(body).encode(),
        routing_key="core.task.my_package.tasks.lime.get_lime_company.failure.v1",
        message_id="uid.failure",
        timestamp=1714557605,
        redelivered=True,
    )
    assert event.task_id == body["id"]
    assert event.task_name == "my_package.tasks.lime.get_lime_company"
    assert event.app == "my-app"
    assert event.state == "FAILURE" and not event.succeeded
    assert event.error["type"] == "KeyError"
    assert event.result is None
    assert event.attempts == 2
    assert event.finished_at == datetime(2024, 5, 1, 10, 0, 5, tzinfo=timezone.utc)
    assert event.timestamp == datetime.fromtimestamp(1714557605, tz=timezone.utc)
    assert event.message_id == "uid.failure"
    assert event.redelivered is True
    assert event.body == body


@pytest.mark.parametrize(
    "raw,message",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON list"),
        (b'{"id": "x", "task": "a.b"}', "lacks app, state"),
        (b'{"id": "x", "task": "a.b", "app": "a", "state": "SUCCESS", "finishedAt": "yesterday"}', "not RFC 3339"),
    ],
)
def test_malformed_messages_are_refused_with_the_reason(raw, message):
    with pytest.raises(ValueError, match=message):
        TaskEvent.from_message(raw)


def test_body_writes_every_timestamp_as_kubernetes_does():
    # One time module (lime_task.timestamps): offsets and fractions become UTC seconds with Z.
    obj = finished_task("SUCCESS", startedAt="2024-05-01T12:00:01.250+02:00")
    assert build_event_body(obj)["startedAt"] == "2024-05-01T10:00:01Z"


def test_body_refuses_a_timestamp_that_is_not_rfc3339_naming_it():
    with pytest.raises(ValueError, match="'yesterday' is not RFC 3339"):
        build_event_body(finished_task("SUCCESS", finishedAt="yesterday"))
