"""State, reason and conditions computed from a task, its Job and its pods (pure)."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from lime_task_operator import transitions

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
    t = transitions.queued(task(), "waiting for a free slot (MAX_RUNNING=1)", NOW)
    assert (t.state, t.reason) == ("PENDING", "Queued")
    cond = condition(t.status)
    assert (cond["status"], cond["reason"]) == ("Unknown", "Queued")
    assert cond["lastTransitionTime"] == "2025-01-02T03:04:05Z"
    assert t.status["observedGeneration"] == 1
    # Idempotent: already queued, nothing to write.
    assert transitions.queued(task("PENDING", reason="Queued"), "x", NOW) is None

    p = transitions.pending(task("PENDING", reason="Queued", conditions=t.status["conditions"]), "lt-t1", NOW + timedelta(seconds=5))
    assert (p.state, p.reason, p.status["jobName"]) == ("PENDING", "Pending", "lt-t1")
    # Still Unknown, so the transition time is kept.
    assert condition(p.status)["lastTransitionTime"] == "2025-01-02T03:04:05Z"
    assert transitions.pending(task("PENDING", reason="Pending", jobName="lt-t1"), "lt-t1", NOW) is None


def test_terminal_states_are_never_overwritten():
    done = task("SUCCESS", reason="Completed", result=1)
    assert transitions.queued(done, "x", NOW) is None
    assert transitions.pending(done, "lt-t1", NOW) is None
    assert transitions.invalid(done, "x", NOW) is None
    assert transitions.cancelled(done, "lt-t1", NOW) is None
    assert transitions.observe(done, job(("Failed", "DeadlineExceeded")), [], NOW) is None


def test_started_never_goes_back_to_pending():
    assert transitions.pending(task("STARTED", reason="Running", jobName="lt-t1"), "lt-t1", NOW) is None


def test_invalid_task_fails_without_attempts():
    t = transitions.invalid(task(), "image 'x' is not allowed", NOW)
    assert (t.state, t.reason, t.event_type) == ("FAILURE", "InvalidTask", "Warning")
    assert t.status["error"] == {"type": "InvalidTask", "message": "image 'x' is not allowed", "traceback": ""}
    assert t.status["attempts"] == 0 and t.status["finishedAt"] == "2025-01-02T03:04:05Z"
    assert condition(t.status)["status"] == "False"


def test_cancelled_when_the_job_vanished():
    t = transitions.cancelled(task("STARTED", startedAt="2025-01-02T03:04:00Z"), "lt-t1", NOW)
    assert (t.state, t.reason) == ("FAILURE", "Cancelled")
    assert "lt-t1 was deleted" in t.status["error"]["message"]
    assert t.status["duration"] == "5s"


# ------------------------------------------------------------ following the Job

def test_pending_while_the_pod_waits():
    t = transitions.observe(task(), job(), [pod("p1", "2025-01-02T03:00:00Z", "waiting")], NOW)
    assert (t.state, t.reason, t.status["jobName"]) == ("PENDING", "Pending", "lt-t1")


def test_started_when_the_pod_runs():
    t = transitions.observe(task("PENDING", reason="Pending", jobName="lt-t1"), job(),
                       [pod("p1", "2025-01-02T03:00:00Z", "running")], NOW)
    assert (t.state, t.reason) == ("STARTED", "Running")
    assert t.status["startedAt"] == "2025-01-02T03:01:00Z"
    assert t.status["attempts"] == 1
    assert condition(t.status)["status"] == "Unknown"
    # Nothing new: no write.
    again = task("STARTED", reason="Running", jobName="lt-t1", attempts=1, startedAt="2025-01-02T03:01:00Z")
    assert transitions.observe(again, job(), [pod("p1", "2025-01-02T03:00:00Z", "running")], NOW) is None


def test_a_retry_counts_attempts_and_keeps_the_first_start():
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=False, error={"type": "E"}), 1),
            pod("p2", "2025-01-02T03:02:00Z", "running", started="2025-01-02T03:02:10Z")]
    t = transitions.observe(task("STARTED", jobName="lt-t1", attempts=1, startedAt="2025-01-02T03:01:00Z"), job(), pods, NOW)
    assert t.status["attempts"] == 2 and t.status["startedAt"] == "2025-01-02T03:01:00Z"


def test_success_with_the_result_from_the_termination_message():
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=True, result={"sum": 3}), 0)]
    t = transitions.observe(task("STARTED", jobName="lt-t1"), job(("Complete", None)), pods, NOW)
    assert (t.state, t.reason, t.event_type) == ("SUCCESS", "Completed", "Normal")
    assert t.status["result"] == {"sum": 3}
    assert t.status["finishedAt"] == "2025-01-02T03:03:30Z"
    assert t.status["duration"] == "2m30s"
    assert t.status["attempts"] == 1
    assert condition(t.status)["status"] == "True" and condition(t.status)["reason"] == "Completed"
    assert t.terminal


def test_success_with_a_null_result_is_still_success():
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=True, result=None), 0)]
    t = transitions.observe(task(), job(("Complete", None)), pods, NOW)
    assert (t.state, t.reason) == ("SUCCESS", "Completed")
    assert t.status.get("result") is None


def test_complete_job_without_a_readable_result_is_invalid_result():
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", "not json", 0)]
    t = transitions.observe(task(), job(("Complete", None)), pods, NOW)
    assert (t.state, t.reason) == ("FAILURE", "InvalidResult")


def test_task_raised_carries_the_reported_error():
    error = {"type": "ValueError", "message": "boom", "traceback": "Traceback...\nValueError: boom"}
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=False, error=error), 1)]
    t = transitions.observe(task(), job(("Failed", "BackoffLimitExceeded")), pods, NOW)
    assert (t.state, t.reason) == ("FAILURE", "TaskRaised")
    assert t.status["error"] == error
    assert condition(t.status)["status"] == "False"
    assert "ValueError: boom" in condition(t.status)["message"]


@pytest.mark.parametrize("code, reason", [(3, "CouldNotLoad"), (4, "InvalidResult")])
def test_non_retriable_exit_codes(code, reason):
    error = {"type": "NotATask", "message": "not decorated with @task", "traceback": ""}
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=False, error=error), code)]
    t = transitions.observe(task(), job(("Failed", "PodFailurePolicy")), pods, NOW)
    assert (t.state, t.reason) == ("FAILURE", reason)
    assert t.status["error"]["type"] == "NotATask"


def test_deadline_exceeded_names_the_timeout():
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", None, 137)]
    t = transitions.observe(task(spec={"timeoutSeconds": 5}), job(("Failed", "DeadlineExceeded")), pods, NOW)
    assert (t.state, t.reason) == ("FAILURE", "DeadlineExceeded")
    assert "timeoutSeconds=5" in t.status["error"]["message"]


def test_killed_pod_without_report_is_pod_failed():
    pods = [pod("p1", "2025-01-02T03:00:00Z", "terminated", None, 137)]
    t = transitions.observe(task(), job(("Failed", "BackoffLimitExceeded")), pods, NOW)
    assert (t.state, t.reason) == ("FAILURE", "PodFailed")
    assert "exit code 137" in t.status["error"]["message"]


def test_the_last_attempt_decides_the_error():
    first = pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=False, error={"type": "First"}), 1)
    last = pod("p2", "2025-01-02T03:02:00Z", "terminated", report(ok=False, error={"type": "Last"}), 1)
    t = transitions.observe(task(), job(("Failed", "BackoffLimitExceeded")), [last, first], NOW)
    assert t.status["error"]["type"] == "Last" and t.status["attempts"] == 2


# ------------------------------------------------------------ helpers and after the end

def test_termination_message_parsing_rejects_garbage():
    assert transitions.parse_termination_message('{"ok": true, "result": 1}') == {"ok": True, "result": 1}
    assert transitions.parse_termination_message("") is None
    assert transitions.parse_termination_message("[1]") is None
    assert transitions.parse_termination_message('{"result": 1}') is None
    assert transitions.parse_termination_message("{") is None


@pytest.mark.parametrize("seconds, text", [(0.42, "<1s"), (1, "1s"), (12.34, "12s"), (59.9, "59s"), (60, "1m00s"), (245, "4m05s"), (7380, "2h03m"), (-1, "<1s")])
def test_format_duration(seconds, text):
    assert transitions.format_duration(seconds) == text


def test_set_condition_moves_transition_time_only_on_status_change():
    first = transitions.set_condition([], "X", "Unknown", "A", "", NOW)
    later = NOW + timedelta(minutes=1)
    same = transitions.set_condition(first, "X", "Unknown", "B", "m", later)
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"] and same[0]["reason"] == "B"
    changed = transitions.set_condition(same, "X", "True", "C", "", later)
    assert changed[0]["lastTransitionTime"] == "2025-01-02T03:05:05Z"
    other = transitions.set_condition(changed, "Y", "False", "D", "", later)
    assert [c["type"] for c in other] == ["X", "Y"]


def test_event_conditions():
    done = task("FAILURE", reason="TaskRaised", finishedAt="2025-01-02T03:00:00Z")
    fields = transitions.event_published(done, "core.task.pkg.mod.fn.failure.v1", "u1.failure", NOW)
    assert fields["event"] == {"routingKey": "core.task.pkg.mod.fn.failure.v1", "messageId": "u1.failure",
                               "confirmedAt": "2025-01-02T03:04:05Z"}
    assert condition(fields, "EventPublished")["status"] == "True"
    failed = transitions.event_failed(done, "BrokerUnreachable", "no route", NOW)
    assert condition(failed, "EventPublished")["reason"] == "BrokerUnreachable"
    # Writing the same failure again is a no-op.
    assert transitions.event_failed(task("FAILURE", conditions=failed["conditions"]), "BrokerUnreachable", "no route", NOW) is None
    disabled = transitions.events_disabled(done, NOW)
    assert condition(disabled, "EventPublished")["reason"] == "EventsDisabled"
    assert transitions.events_disabled(task("FAILURE", conditions=disabled["conditions"]), NOW) is None


def test_ttl_waits_for_the_event_unless_events_are_disabled():
    finished = "2025-01-02T03:04:00Z"
    done = task("SUCCESS", spec={"ttlSecondsAfterFinished": 3}, finishedAt=finished)
    assert transitions.expiry(done, 86400) == datetime(2025, 1, 2, 3, 4, 3, tzinfo=timezone.utc)
    assert not transitions.may_delete(done, 86400, events_enabled=False, now=NOW - timedelta(seconds=3))
    assert transitions.may_delete(done, 86400, events_enabled=False, now=NOW)
    assert not transitions.may_delete(done, 86400, events_enabled=True, now=NOW)
    confirmed = task("SUCCESS", spec={"ttlSecondsAfterFinished": 3}, finishedAt=finished,
                     event={"routingKey": "k", "messageId": "m", "confirmedAt": finished})
    assert transitions.may_delete(confirmed, 86400, events_enabled=True, now=NOW)
    # The default TTL applies when the task has none; running tasks never expire.
    assert transitions.expiry(task("SUCCESS", finishedAt=finished), 60) == datetime(2025, 1, 2, 3, 5, tzinfo=timezone.utc)
    assert transitions.expiry(task("STARTED"), 60) is None


# ------------------------------------------------------------ every failure names its cause (#11)

def failed_job(reason="BackoffLimitExceeded", failed=1, message="Job has reached the specified backoff limit"):
    body = job(("Failed", reason))
    body["status"]["conditions"][0]["message"] = message
    body["status"]["failed"] = failed
    return body


def with_status(p, **fields):
    p["status"].update(fields)
    return p


def deleting(p):
    p["metadata"]["deletionTimestamp"] = "2025-01-02T03:02:00Z"
    return p


def disrupted(p, reason, message="Eviction API: evicting"):
    p["status"].setdefault("conditions", []).append(
        {"type": "DisruptionTarget", "status": "True", "reason": reason, "message": message})
    return p


def waiting_pod(name, created, reason, message="", scheduled=True):
    p = pod(name, created, "waiting")
    p["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": reason, "message": message}}
    p["status"]["phase"] = "Pending"
    return p


def started(**fields):
    return task("STARTED", reason="Running", jobName="lt-t1", attempts=1, startedAt="2025-01-02T03:01:00Z", **fields)


def stored(transition, spec=None):
    """The task as the API server stores it after the transition's merge patch."""
    fields = dict(transition.status)
    if isinstance(fields.get("lastAttempt"), dict):
        fields["lastAttempt"] = {k: v for k, v in fields["lastAttempt"].items() if v is not None}
    return {**task(spec=spec), "status": fields}


def record_then_finish(pods_while_running, job_at_end, pods_at_end, spec=None, log=None):
    """Feed the operator the running pods (it records the attempt), then the end."""
    running_task = task("STARTED", spec=spec, reason="Running", jobName="lt-t1", attempts=1,
                        startedAt="2025-01-02T03:01:00Z")
    first = transitions.observe(running_task, job(), pods_while_running, NOW, log_tail=log)
    assert first is not None and first.state == "STARTED"
    return first, transitions.observe(stored(first, spec), job_at_end, pods_at_end, NOW)


@pytest.mark.parametrize(
    "disruption, reason",
    [("EvictionByEvictionAPI", "Evicted"), ("TerminationByKubelet", "Evicted"),
     ("PreemptionByScheduler", "Preempted"), ("DeletionByTaintManager", "NodeLost"),
     ("DeletionByPodGC", "NodeLost")],
)
def test_a_disrupted_pod_that_is_gone_at_the_end_keeps_its_cause_attempts_and_start(disruption, reason):
    running = disrupted(deleting(pod("p1", "2025-01-02T03:00:00Z", "running")), disruption, "why: drain")
    first, end = record_then_finish([running], failed_job(failed=1), [])
    assert first.status["lastAttempt"]["reason"] == reason
    assert (end.state, end.reason) == ("FAILURE", reason)
    assert end.status["attempts"] == 1
    assert end.status["startedAt"] == "2025-01-02T03:01:00Z"
    assert "why: drain" in end.status["error"]["message"]
    assert end.status["error"]["type"] == reason


def test_attempts_come_from_the_job_counters_when_the_pods_are_gone():
    gone = failed_job(failed=3)
    gone["status"]["uncountedTerminatedPods"] = {"failed": ["uid-4"]}
    t = transitions.observe(task("STARTED", startedAt="2025-01-02T03:01:00Z"), gone, [], NOW)
    assert t.status["attempts"] == 4
    # Never less than what the status already said.
    t = transitions.observe(task("STARTED", attempts=5), failed_job(failed=1), [], NOW)
    assert t.status["attempts"] == 5


def test_a_pod_that_never_ran_does_not_count_as_an_attempt():
    never = with_status(pod("p1", "2025-01-02T03:00:00Z", "waiting"), phase="Failed", reason="Evicted",
                        message="The node was low on resource: memory.")
    t = transitions.observe(task(), failed_job(failed=1), [never], NOW)
    assert t.status["attempts"] == 0
    assert (t.reason, t.status["error"]["type"]) == ("Evicted", "Evicted")
    assert "low on resource" in t.status["error"]["message"]


def test_kubelet_node_pressure_eviction_is_evicted():
    p = with_status(pod("p1", "2025-01-02T03:00:00Z", "terminated", None, 137), phase="Failed", reason="Evicted",
                    message="The node was low on resource: memory.")
    t = transitions.observe(task(), failed_job(), [p], NOW)
    assert t.reason == "Evicted" and t.status["attempts"] == 1


@pytest.mark.parametrize("limit, fragment", [("64Mi", "memory limit of 64Mi"), (None, "no memory limit set")])
def test_oom_killed_names_the_memory_limit(limit, fragment):
    p = pod("p1", "2025-01-02T03:00:00Z", "terminated", None, 137)
    p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = "OOMKilled"
    spec = {"resources": {"limits": {"memory": limit}}} if limit else {}
    t = transitions.observe(task(spec=spec), failed_job(), [p], NOW)
    assert (t.state, t.reason) == ("FAILURE", "OOMKilled")
    assert fragment in t.status["error"]["message"] and "exit code 137" in t.status["error"]["message"]
    assert t.status["error"]["type"] == "OOMKilled"


def test_deadline_keeps_the_last_attempts_exception():
    error = {"type": "ValueError", "message": "boom", "traceback": "Traceback...\nValueError: boom"}
    raised = pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=False, error=error), 1)
    # The deadline's own kill of the running retry is not the task's failure.
    killed = deleting(pod("p2", "2025-01-02T03:02:00Z", "terminated", None, 143, started="2025-01-02T03:02:10Z"))
    t = transitions.observe(task(spec={"timeoutSeconds": 5}), failed_job("DeadlineExceeded", 2), [raised, killed], NOW)
    assert (t.state, t.reason) == ("FAILURE", "DeadlineExceeded")
    assert t.status["error"] == error
    assert "timeoutSeconds=5" in t.message and "ValueError: boom" in t.message
    assert t.status["attempts"] == 2


def test_deadline_keeps_the_recorded_exception_when_the_pods_are_gone():
    error = {"type": "ValueError", "message": "boom", "traceback": "tb"}
    raised = pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=False, error=error), 1)
    first, end = record_then_finish([raised], failed_job("DeadlineExceeded"), [], spec={"timeoutSeconds": 5})
    assert end.reason == "DeadlineExceeded" and end.status["error"] == error


def test_deadline_job_failure_target_does_not_record_the_killed_pod():
    error = {"type": "ValueError", "message": "boom", "traceback": "tb"}
    raised = pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=False, error=error), 1)
    killed = deleting(pod("p2", "2025-01-02T03:02:00Z", "running", started="2025-01-02T03:02:10Z"))
    failing = job(("FailureTarget", "DeadlineExceeded"))
    t = transitions.observe(task("STARTED", spec={"timeoutSeconds": 5}), failing, [raised, killed], NOW)
    assert t.status["lastAttempt"]["error"] == error


def test_a_deleted_pod_is_pod_deleted():
    running = deleting(pod("p1", "2025-01-02T03:00:00Z", "running"))
    first, end = record_then_finish([running], failed_job(), [])
    assert (end.reason, end.status["attempts"]) == ("PodDeleted", 1)
    assert "deleted before the task finished" in end.status["error"]["message"]


def test_a_pod_gone_without_any_trace_is_pod_deleted_with_the_jobs_words():
    t = transitions.observe(task("STARTED", attempts=1), failed_job(message="Job has reached the specified backoff limit"),
                       [], NOW)
    assert t.reason == "PodDeleted"
    assert "backoff limit" in t.status["error"]["message"]


def test_a_failed_attempt_is_recorded_while_the_job_retries():
    error = {"type": "ValueError", "message": "boom", "traceback": "tb"}
    failed_pod = pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=False, error=error), 1)
    retry = pod("p2", "2025-01-02T03:02:00Z", "running", started="2025-01-02T03:02:10Z")
    t = transitions.observe(started(), job(), [failed_pod, retry], NOW, log_tail=("p1", "line 1\nline 2\n"))
    assert (t.state, t.reason) == ("STARTED", "Running")
    assert t.status["attempts"] == 2
    last = t.status["lastAttempt"]
    assert (last["pod"], last["reason"], last["exitCode"], last["error"]) == ("p1", "TaskRaised", 1, error)
    assert last["logTail"] == "line 1\nline 2\n"
    assert "attempt 2 running; the one before failed: ValueError: boom" == t.message
    assert t.status["message"] == t.message


def test_a_new_attempt_record_nulls_the_previous_ones_fields_in_the_patch():
    previous = {"pod": "p1", "reason": "TaskRaised", "message": "E: x", "exitCode": 1,
                "error": {"type": "E", "message": "x", "traceback": ""}, "logTail": "old log"}
    evicted = disrupted(deleting(pod("p2", "2025-01-02T03:02:00Z", "running")), "EvictionByEvictionAPI")
    t = transitions.observe(started(lastAttempt=previous), job(), [evicted], NOW)
    last = t.status["lastAttempt"]
    assert last["pod"] == "p2" and last["reason"] == "Evicted"
    # JSON merge patch: a key left out would keep p1's error and log under p2.
    assert last["error"] is None and last["logTail"] is None and last["exitCode"] is None


def test_which_pod_log_to_read():
    error = {"type": "E", "message": "x", "traceback": ""}
    failed_pod = pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=False, error=error), 1)
    assert transitions.pod_needing_log(started(), job(), [failed_pod]) == "p1"
    have = {"pod": "p1", "reason": "TaskRaised", "message": "E: x", "exitCode": 1, "logTail": "..."}
    assert transitions.pod_needing_log(started(lastAttempt=have), job(), [failed_pod]) is None
    # Read while being evicted (no exit code yet), read again once it has ended.
    early = {"pod": "p1", "reason": "Evicted", "message": "m", "logTail": "..."}
    ended = disrupted(deleting(pod("p1", "2025-01-02T03:00:00Z", "terminated", None, 143)), "EvictionByEvictionAPI")
    assert transitions.pod_needing_log(started(lastAttempt=early), job(), [ended]) == "p1"
    # Nothing failed, or the pod never ran: nothing to read.
    assert transitions.pod_needing_log(started(), job(), [pod("p1", "2025-01-02T03:00:00Z", "running")]) is None


def test_the_log_tail_outlives_the_pod():
    error = {"type": "E", "message": "x", "traceback": ""}
    failed_pod = pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=False, error=error), 1)
    first, end = record_then_finish([failed_pod], failed_job(), [], log=("p1", "last words\n"))
    assert end.status["lastAttempt"]["logTail"] == "last words\n"
    assert end.reason == "TaskRaised"


def test_unschedulable_stays_pending_with_the_schedulers_message():
    p = pod("p1", "2025-01-02T03:00:00Z", "waiting")
    p["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/1 nodes are available: 1 Insufficient memory."}]}
    t = transitions.observe(task("PENDING", reason="Pending", jobName="lt-t1"), job(), [p], NOW + timedelta(days=1))
    assert (t.state, t.reason) == ("PENDING", "Unschedulable")
    assert t.status["message"] == "0/1 nodes are available: 1 Insufficient memory."
    assert condition(t.status)["status"] == "Unknown"
    # Written once.
    seen = stored(t)
    assert transitions.observe(seen, job(), [p], NOW + timedelta(days=2)) is None


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError",
                                    "CreateContainerError", "RegistryUnavailable"])
def test_a_container_that_cannot_start_fails_after_the_bounded_wait(reason):
    created = "2025-01-02T03:00:00Z"
    p = waiting_pod("p1", created, reason, "kubelet says: no such image")
    early = transitions.observe(task(), job(), [p], datetime(2025, 1, 2, 3, 1, tzinfo=timezone.utc), start_timeout_seconds=120)
    assert (early.state, early.reason) == ("PENDING", reason)
    assert "kubelet says: no such image" in early.message and "2025-01-02T03:02:00Z" in early.message
    late = transitions.observe(task(), job(), [p], datetime(2025, 1, 2, 3, 2, tzinfo=timezone.utc), start_timeout_seconds=120)
    assert (late.state, late.reason) == ("FAILURE", reason)
    assert late.status["error"]["type"] == reason
    assert "kubelet says: no such image" in late.status["error"]["message"] and "120s" in late.message
    assert late.status["attempts"] == 0 and late.status["finishedAt"] == "2025-01-02T03:02:00Z"


@pytest.mark.parametrize("reason", ["InvalidImageName", "ErrImageNeverPull"])
def test_a_container_that_can_never_start_fails_at_once(reason):
    p = waiting_pod("p1", "2025-01-02T03:00:00Z", reason, "bad name")
    t = transitions.observe(task(), job(), [p], datetime(2025, 1, 2, 3, 0, 1, tzinfo=timezone.utc))
    assert (t.state, t.reason) == ("FAILURE", reason)


def test_container_creating_is_not_stuck():
    p = waiting_pod("p1", "2025-01-02T03:00:00Z", "ContainerCreating")
    t = transitions.observe(task(), job(), [p], NOW + timedelta(days=1), start_timeout_seconds=1)
    assert (t.state, t.reason) == ("PENDING", "Pending")


def test_status_texts_stay_within_the_crd_bounds():
    error = {"type": "T" * 1000, "message": "m" * 9000, "traceback": "t" * 9000 + "END"}
    p = pod("p1", "2025-01-02T03:00:00Z", "terminated", report(ok=False, error=error), 1)
    t = transitions.observe(task(), failed_job(), [p], NOW, log_tail=("p1", "x" * 100_000))
    assert len(t.status["error"]["type"]) <= 256 and len(t.status["error"]["message"]) <= 4096
    assert len(t.status["error"]["traceback"]) <= 4096 and t.status["error"]["traceback"].endswith("END")
    assert len(t.status["message"]) <= 1024 and t.status["message"].endswith("...[cut]")
    assert len(t.status["lastAttempt"]["message"]) <= 1024
    assert len(t.status["lastAttempt"]["logTail"].encode()) <= 2048


def test_the_job_of_a_task_that_could_not_start_is_stopped():
    failed = task("FAILURE", reason="ImagePullBackOff")
    assert transitions.job_to_stop(failed, job()) is True
    assert transitions.job_to_stop(failed, job(("Failed", "DeadlineExceeded"))) is False  # already over
    assert transitions.job_to_stop(failed, None) is False
    deleting_job = job()
    deleting_job["metadata"]["deletionTimestamp"] = "2025-01-02T03:04:00Z"
    assert transitions.job_to_stop(failed, deleting_job) is False
    # Other failures end with their Job; a running task keeps its Job.
    assert transitions.job_to_stop(task("FAILURE", reason="TaskRaised"), job()) is False
    assert transitions.job_to_stop(task("PENDING", reason="ImagePullBackOff"), job()) is False


def test_when_to_look_again_at_a_container_that_cannot_start():
    stuck = waiting_pod("p1", "2025-01-02T03:00:00Z", "ImagePullBackOff")
    at = datetime(2025, 1, 2, 3, 0, 40, tzinfo=timezone.utc)
    assert transitions.seconds_until_start_timeout([stuck], at, 60) == 20
    assert transitions.seconds_until_start_timeout([stuck], at + timedelta(minutes=5), 60) == 0
    assert transitions.seconds_until_start_timeout([pod("p1", "2025-01-02T03:00:00Z", "running")], at, 60) is None
    assert transitions.seconds_until_start_timeout([], at, 60) is None


def test_a_view_without_the_report_does_not_overwrite_the_recorded_attempt():
    error = {"type": "ValueError", "message": "boom", "traceback": "tb"}
    recorded = {"pod": "p1", "reason": "TaskRaised", "message": "ValueError: boom", "exitCode": 1,
                "error": error, "logTail": "log\n"}
    # The same pod as the operator's cache may show it: exit code, no termination message.
    slim = pod("p1", "2025-01-02T03:00:00Z", "terminated", None, 1)
    assert transitions.observe(started(lastAttempt=recorded), job(), [slim], NOW) is None
    end = transitions.observe(started(lastAttempt=recorded), failed_job(), [slim], NOW)
    assert end.reason == "TaskRaised" and end.status["error"] == error


def test_the_log_of_a_pod_taken_away_before_its_status_said_running_is_read():
    p = disrupted(deleting(pod("p1", "2025-01-02T03:00:00Z", "waiting")), "EvictionByEvictionAPI")
    assert transitions.pod_needing_log(started(), job(), [p]) == "p1"
    # A pod that failed without being taken away and never ran has no log to read.
    never = with_status(pod("p2", "2025-01-02T03:00:00Z", "waiting"), phase="Failed")
    assert transitions.pod_needing_log(started(), job(), [never]) is None


def test_a_pod_the_job_counted_failed_while_it_stops_is_one_attempt_not_two():
    """activeDeadlineSeconds: the Job controller deletes the pod and counts it failed at
    once, while its container still runs out its grace period (found: attempts 2 for one
    pod, written to the status and the event, and never corrected since attempts only grow)."""
    stopping = deleting(pod("p1", "2025-01-02T03:00:00Z", "running"))
    deadline = {"status": {"failed": 1, "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"}]}}
    assert transitions.count_attempts(task(), deadline, [stopping]) == 1
    # Not yet counted by the Job (deleted by a user): still the one attempt seen.
    assert transitions.count_attempts(task(), {"status": {}}, [stopping]) == 1
    # A second pod running while the first is gone and counted: two.
    assert transitions.count_attempts(task(), {"status": {"failed": 1}},
                                      [pod("p2", "2025-01-02T03:05:00Z", "running")]) == 2
