"""The local node's pod status, built from what its processes did (as kubelet reports it)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from devcluster import podstatus
from devcluster.podstatus import ContainerRun, PodOutcome

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
T1 = T0 + timedelta(seconds=7)


def conditions(status):
    return {c["type"]: c for c in status["conditions"]}


def test_waiting_pod_is_pending_and_not_ready():
    status = podstatus.build_status([ContainerRun("main", "img")], PodOutcome(start_time=T0), T0)
    assert status["phase"] == "Pending"
    assert status["startTime"] == "2026-01-02T03:04:05Z"
    assert status["hostIP"] == status["podIP"] == "127.0.0.1"
    cs = status["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "ContainerCreating"
    assert cs["state"]["running"] is None and cs["state"]["terminated"] is None
    assert cs["ready"] is False and "containerID" not in cs
    cond = conditions(status)
    assert cond["PodReadyToStartContainers"]["status"] == "True"
    assert cond["Initialized"]["status"] == "True"
    assert cond["Ready"]["status"] == "False"
    assert cond["Ready"]["message"] == "containers with unready status: [main]"


def test_running_container_reports_pid_as_container_id_and_is_ready():
    run = ContainerRun("main", "img").running(4242, T0)
    status = podstatus.build_status([run], PodOutcome(start_time=T0), T0)
    assert status["phase"] == "Running"
    cs = status["containerStatuses"][0]
    assert cs["containerID"] == "local://4242"
    assert cs["state"]["running"] == {"startedAt": "2026-01-02T03:04:05Z"}
    assert cs["state"]["waiting"] is None
    assert cs["ready"] is True and cs["started"] is True
    assert conditions(status)["Ready"]["status"] == "True"
    assert conditions(status)["Ready"]["reason"] is None


def test_success_and_failure_phases():
    ok = ContainerRun("a").running(1, T0).terminated(0, T1, None)
    bad = ContainerRun("b").running(2, T0).terminated(3, T1, "boom")
    assert podstatus.build_status([ok], PodOutcome(), T1)["phase"] == "Succeeded"
    status = podstatus.build_status([ok, bad], PodOutcome(), T1)
    assert status["phase"] == "Failed"
    term = status["containerStatuses"][1]["state"]["terminated"]
    assert term == {"exitCode": 3, "reason": "Error", "message": "boom", "startedAt": "2026-01-02T03:04:05Z",
                    "finishedAt": "2026-01-02T03:04:12Z", "containerID": "local://2"}
    assert status["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    cond = conditions(status)
    assert cond["Ready"]["reason"] == "PodCompleted"
    assert cond["PodReadyToStartContainers"]["status"] == "False"


def test_sequential_containers_keep_the_pod_running_between_them():
    first = ContainerRun("a").running(1, T0).terminated(0, T1, None)
    assert podstatus.build_status([first, ContainerRun("b")], PodOutcome(), T1)["phase"] == "Running"


def test_forced_failure_with_reason_wins_over_container_states():
    run = ContainerRun("a").running(1, T0).terminated(143, T1, None)
    outcome = PodOutcome(failed=True, reason="DeadlineExceeded", message="too long")
    status = podstatus.build_status([run], outcome, T1)
    assert (status["phase"], status["reason"], status["message"]) == ("Failed", "DeadlineExceeded", "too long")


def test_unchanged_condition_keeps_its_transition_time():
    outcome = PodOutcome(start_time=T0)
    first = podstatus.build_status([ContainerRun("a")], outcome, T0)
    outcome.previous_conditions = {c["type"]: c for c in first["conditions"]}
    later = podstatus.build_status([ContainerRun("a").running(1, T1)], outcome, T1)
    cond = conditions(later)
    assert cond["Initialized"]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert cond["Ready"]["lastTransitionTime"] == "2026-01-02T03:04:12Z"


def test_containers_that_never_started_end_as_status_unknown():
    runs = podstatus.finalize_unstarted([ContainerRun("a").running(1, T0).terminated(0, T1, None),
                                         ContainerRun("b")], T1)
    assert runs[0].reason == "Completed"
    assert (runs[1].state, runs[1].exit_code, runs[1].reason) == ("terminated", 137, "ContainerStatusUnknown")


def test_signal_exit_codes_follow_the_runtime_convention():
    assert podstatus.exit_code_of(-15) == 143
    assert podstatus.exit_code_of(-9) == 137
    assert podstatus.exit_code_of(3) == 3


def test_termination_message_keeps_the_last_4096_bytes():
    data = b"x" * 5000 + b"END"
    msg = podstatus.termination_message(data, b"", "File", 1)
    assert len(msg) == 4096 and msg.endswith("END")


def test_fallback_to_logs_only_on_error_with_an_empty_file():
    logs = b"".join(f"line {i}\n".encode() for i in range(200))
    msg = podstatus.termination_message(b"", logs, "FallbackToLogsOnError", 2)
    assert msg.endswith("line 199\n") and "line 119\n" not in msg and len(msg.encode()) <= 2048
    assert podstatus.termination_message(b"", logs, "FallbackToLogsOnError", 0) is None
    assert podstatus.termination_message(b"", logs, "File", 2) is None
    assert podstatus.termination_message(b"own", logs, "FallbackToLogsOnError", 2) == "own"
