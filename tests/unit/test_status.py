"""State, reason and conditions computed from a task, its Job and its pods (pure)."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from lime_task_operator import status

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def task(state=None, spec=None, **fields):
    st = dict(fields)
    if state:
        st["state"] = state
    return {
        "metadata": {"name": "t1", "namespace": "ns", "uid": "u1", "resourceVersion": "7", "generation": 1},
        "spec": {"task": "pkg.mod.fn", "app": "a", **(spec or {})},
        "status": st,
    }


def job(*conditions):
    return {
        "metadata": {"name": "lt-t1"},
        "status": {"startTime": "2025-01-02T03:00:00Z",
                   "conditions": [{"type": t, "status": "True", "reason": r,
                                   "lastTransitionTime": "2025-01-02T03:04:00Z"} for t, r in conditions]},
    }


def pod(name, created, state, message=None, exit_code=None, started="2025-01-02T03:01:00Z",
        finished="2025-01-02T03:03:30Z"):
    if state == "running":
        container_state = {"running": {"startedAt": started}}
    elif state == "waiting":
        container_state = {"waiting": {"reason": "ContainerCreating"}}
    else:
        container_state = {"terminated": {"exitCode": exit_code, "startedAt": started, "finishedAt": finished,
                                          "message": message, "reason": "Error" if exit_code else "Completed"}}
    return {"metadata": {"name": name, "creationTimestamp": created},
            "status": {"containerStatuses": [{"name": "task", "state": container_state}]}}


def condition(st, type_="Succeeded"):
    return next(c for c in st["conditions"] if c["type"] == type_)


def report(**body):
    return json.dumps(body)


# ------------------------------------------------------------ before the Job

def test_queued_then_pending_with_an_unknown_succeeded_condition():
    t = status.queued(task(), "waiting for a free slot (MAX_RUNNING=1)", NOW)
    assert (t.state, t.reason) == ("PENDING", "Queued")
    cond = condition(t.status)
    assert (cond["status"], cond["reason"]) == ("Unknown", "Queued")
    assert cond["lastTransitionTime"] == "2025-01-02T03:04:05Z"
    assert t.status["observedGeneration"] == 1
    # Idempotent: already queued, nothing to write.
    assert status.queued(task("PENDING", reason="Queued"), "x", NOW) is None

    p = status.pending(task("PENDING", reason="Queued", conditions=t.status["conditions"]), "lt-t1", NOW + timedelta(seconds=5))
    assert (p.state, p.reason, p.status["jobName"]) == ("PENDING", "Pending", "lt-t1")
    # Still Unknown, so the transition time is kept.
    assert condition(p.status)["lastTransitionTime"] == "2025-01-02T03:04:05Z"
    assert status.pending(task("PENDING", reason="Pending", jobName="lt-t1"), "lt-t1", NOW) is None


def test_terminal_states_are_never_overwritten():
    done = task("SUCCESS", reason="Completed", result=1)
    assert status.queued(done, "x", NOW) is None
    assert status.pending(done, "lt-t1", NOW) is None
    assert status.invalid(done, "x", NOW) is None
    assert status.cancelled(done, "lt-t1", NOW) is None
    assert status.observe(done, job(("Failed", "DeadlineExceeded")), [], NOW) is None


def test_started_never_goes_back_to_pending():
    assert status.pending(task("STARTED", reason="Running", jobName="lt-t1"), "lt-t1", NOW) is None


def test_invalid_task_fails_without_attempts():
    t = status.invalid(task(), "image 'x' is not allowed", NOW)
    assert (t.state, t.reason, t.event_type) == ("FAILURE", "InvalidTask", "Warning")
    assert t.status["error"] == {"type": "InvalidTask", "message": "image 'x' is not allowed", "traceback": ""}
    assert t.status["attempts"] == 0 and t.status["finishedAt"] == "2025-01-02T03:04:05Z"
    assert condition(t.status)["status"] == "False"


def test_cancelled_when_the_job_vanished():
    t = status.cancelled(task("STARTED", startedAt="2025-01-02T03:04:00Z"), "lt-t1", NOW)
    assert (t.state, t.reason) == ("FAILURE", "Cancelled")
    assert "lt-t1 was deleted" in t.status["error"]["message"]
    assert t.status["duration"] == "5s"


# ------------------------------------------------------------ following the Job

def test_pending_while_the_pod_waits():
    t = status.observe(task(), job(), [pod("p1", "2025-01-02T03:00:00Z", "waiting")], NOW)
    assert (t.state, t.reason, t.status["jobName"]) == ("PENDING", "Pending", "lt-t1")


def test_started_when_the_pod_runs():
    t = status.observe(task("PENDING", reason="Pending", jobName="lt-t1"), job(),
                       [pod("p1", "2025-01-02T03:00:00Z", "running")], NOW)
    assert (t.state, t.reason) == ("STARTED", "Running")
    assert t.status["startedAt"] == "2025-01-02T03:01:00Z"
    assert t.status["attempts"] == 1
    assert condition(t.status)["status"] == "Unknown"
    # Nothing new: no write.
    again = task("STARTED", reason="Running", jobName="lt-t1", attempts=1, startedAt="2025-01-02T03:01:00Z")
    assert status.observe(again, job(), [pod("p1", "2025-01-02T03:00:00Z", "running")], NOW) is None


def test_a_retry_counts_attempts_and_keeps_the_first_start():
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=False, error={"type": "E"}), 1),
            pod("p2", "2025-01-02T03:02:00Z", "running", started="2025-01-02T03:02:10Z")]
    t = status.observe(task("STARTED", jobName="lt-t1", attempts=1, startedAt="2025-01-02T03:01:00Z"), job(), pods, NOW)
    assert t.status["attempts"] == 2 and t.status["startedAt"] == "2025-01-02T03:01:00Z"


def test_success_with_the_result_from_the_termination_message():
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=True, result={"sum": 3}), 0)]
    t = status.observe(task("STARTED", jobName="lt-t1"), job(("Complete", None)), pods, NOW)
    assert (t.state, t.reason, t.event_type) == ("SUCCESS", "Completed", "Normal")
    assert t.status["result"] == {"sum": 3}
    assert t.status["finishedAt"] == "2025-01-02T03:03:30Z"
    assert t.status["duration"] == "2m30s"
    assert t.status["attempts"] == 1
    assert condition(t.status)["status"] == "True" and condition(t.status)["reason"] == "Completed"
    assert t.terminal


def test_success_with_a_null_result_is_still_success():
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=True, result=None), 0)]
    t = status.observe(task(), job(("Complete", None)), pods, NOW)
    assert (t.state, t.reason) == ("SUCCESS", "Completed")
    assert t.status.get("result") is None


def test_complete_job_without_a_readable_result_is_invalid_result():
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", "not json", 0)]
    t = status.observe(task(), job(("Complete", None)), pods, NOW)
    assert (t.state, t.reason) == ("FAILURE", "InvalidResult")


def test_task_raised_carries_the_reported_error():
    error = {"type": "ValueError", "message": "boom", "traceback": "Traceback...\nValueError: boom"}
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=False, error=error), 1)]
    t = status.observe(task(), job(("Failed", "BackoffLimitExceeded")), pods, NOW)
    assert (t.state, t.reason) == ("FAILURE", "TaskRaised")
    assert t.status["error"] == error
    assert condition(t.status)["status"] == "False"
    assert "ValueError: boom" in condition(t.status)["message"]


@pytest.mark.parametrize("code, reason", [(3, "CouldNotLoad"), (4, "InvalidResult")])
def test_non_retriable_exit_codes(code, reason):
    error = {"type": "NotATask", "message": "not decorated with @task", "traceback": ""}
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=False, error=error), code)]
    t = status.observe(task(), job(("Failed", "PodFailurePolicy")), pods, NOW)
    assert (t.state, t.reason) == ("FAILURE", reason)
    assert t.status["error"]["type"] == "NotATask"


def test_deadline_exceeded_names_the_timeout():
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", None, 137)]
    t = status.observe(task(spec={"timeoutSeconds": 5}), job(("Failed", "DeadlineExceeded")), pods, NOW)
    assert (t.state, t.reason) == ("FAILURE", "DeadlineExceeded")
    assert "timeoutSeconds=5" in t.status["error"]["message"]


def test_killed_pod_without_report_is_pod_failed():
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", None, 137)]
    t = status.observe(task(), job(("Failed", "BackoffLimitExceeded")), pods, NOW)
    assert (t.state, t.reason) == ("FAILURE", "PodFailed")
    assert "exit code 137" in t.status["error"]["message"]


def test_the_last_attempt_decides_the_error():
    first = pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=False, error={"type": "First"}), 1)
    last = pod("p2", "2025-01-02T03:02:00Z", "terminated", report(ok=False, error={"type": "Last"}), 1)
    t = status.observe(task(), job(("Failed", "BackoffLimitExceeded")), [last, first], NOW)
    assert t.status["error"]["type"] == "Last" and t.status["attempts"] == 2


# ------------------------------------------------------------ helpers and after the end

def test_termination_message_parsing_rejects_garbage():
    assert status.parse_termination_message('{"ok": true, "result": 1}') == {"ok": True, "result": 1}
    assert status.parse_termination_message("") is None
    assert status.parse_termination_message("[1]") is None
    assert status.parse_termination_message('{"result": 1}') is None
    assert status.parse_termination_message("{") is None


@pytest.mark.parametrize("seconds, text", [(0.42, "<1s"), (1, "1s"), (12.34, "12s"), (59.9, "59s"), (60, "1m00s"), (245, "4m05s"), (7380, "2h03m"), (-1, "<1s")])
def test_format_duration(seconds, text):
    assert status.format_duration(seconds) == text


def test_set_condition_moves_transition_time_only_on_status_change():
    first = status.set_condition([], "X", "Unknown", "A", "", NOW)
    later = NOW + timedelta(minutes=1)
    same = status.set_condition(first, "X", "Unknown", "B", "m", later)
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"] and same[0]["reason"] == "B"
    changed = status.set_condition(same, "X", "True", "C", "", later)
    assert changed[0]["lastTransitionTime"] == "2025-01-02T03:05:05Z"
    other = status.set_condition(changed, "Y", "False", "D", "", later)
    assert [c["type"] for c in other] == ["X", "Y"]


def test_event_conditions():
    done = task("FAILURE", reason="TaskRaised", finishedAt="2025-01-02T03:00:00Z")
    fields = status.event_published(done, "core.task.pkg.mod.fn.failure.v1", "u1.failure", NOW)
    assert fields["event"] == {"routingKey": "core.task.pkg.mod.fn.failure.v1", "messageId": "u1.failure",
                               "confirmedAt": "2025-01-02T03:04:05Z"}
    assert condition(fields, "EventPublished")["status"] == "True"
    failed = status.event_failed(done, "BrokerUnreachable", "no route", NOW)
    assert condition(failed, "EventPublished")["reason"] == "BrokerUnreachable"
    # Writing the same failure again is a no-op.
    assert status.event_failed(task("FAILURE", conditions=failed["conditions"]), "BrokerUnreachable", "no route", NOW) is None
    disabled = status.events_disabled(done, NOW)
    assert condition(disabled, "EventPublished")["reason"] == "EventsDisabled"
    assert status.events_disabled(task("FAILURE", conditions=disabled["conditions"]), NOW) is None


def test_ttl_waits_for_the_event_unless_events_are_disabled():
    finished = "2025-01-02T03:04:00Z"
    done = task("SUCCESS", spec={"ttlSecondsAfterFinished": 3}, finishedAt=finished)
    assert status.expiry(done, 86400) == datetime(2025, 1, 2, 3, 4, 3, tzinfo=timezone.utc)
    assert not status.may_delete(done, 86400, events_enabled=False, now=NOW - timedelta(seconds=3))
    assert status.may_delete(done, 86400, events_enabled=False, now=NOW)
    assert not status.may_delete(done, 86400, events_enabled=True, now=NOW)
    confirmed = task("SUCCESS", spec={"ttlSecondsAfterFinished": 3}, finishedAt=finished,
                     event={"routingKey": "k", "messageId": "m", "confirmedAt": finished})
    assert status.may_delete(confirmed, 86400, events_enabled=True, now=NOW)
    # The default TTL applies when the task has none; running tasks never expire.
    assert status.expiry(task("SUCCESS", finishedAt=finished), 60) == datetime(2025, 1, 2, 3, 5, tzinfo=timezone.utc)
    assert status.expiry(task("STARTED"), 60) is None
