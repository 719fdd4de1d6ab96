"""The local node's pod status, built from what its processes did (as kubelet reports it)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

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


# -- restarts (restartPolicy Always / OnFailure) --------------------------------------------
T2 = T1 + timedelta(seconds=3)


def crashed(pid=1, code=1):
    return ContainerRun("main", "img").running(pid, T0).terminated(code, T1, "boom")


def test_backing_off_container_keeps_the_pod_running_and_reports_crash_loop():
    run = crashed().backing_off("back-off 10s restarting failed container=main pod=p_ns(u)")
    status = podstatus.build_status([run], PodOutcome(start_time=T0, restart_policy="Always"), T2)
    assert status["phase"] == "Running"
    cs = status["containerStatuses"][0]
    assert cs["state"]["waiting"] == {"reason": "CrashLoopBackOff",
                                      "message": "back-off 10s restarting failed container=main pod=p_ns(u)"}
    assert cs["state"]["running"] is None and cs["state"]["terminated"] is None
    assert cs["lastState"] == {"terminated": {
        "exitCode": 1, "reason": "Error", "message": "boom", "startedAt": "2026-01-02T03:04:05Z",
        "finishedAt": "2026-01-02T03:04:12Z", "containerID": "local://1"}}
    assert cs["restartCount"] == 0  # kubelet counts instances started again, not crashes
    assert cs["ready"] is False and cs["started"] is False
    cond = conditions(status)
    assert cond["Ready"]["status"] == "False" and cond["ContainersReady"]["status"] == "False"
    assert cond["Ready"]["reason"] == "ContainersNotReady"


def test_restarted_container_counts_the_restart_and_keeps_the_last_termination():
    run = crashed(pid=1).backing_off("waiting").running(2, T2)
    assert run.restart_count == 1
    cs = podstatus.build_status([run], PodOutcome(restart_policy="Always"), T2)["containerStatuses"][0]
    assert cs["restartCount"] == 1
    assert cs["state"]["running"] == {"startedAt": "2026-01-02T03:04:15Z"}
    assert cs["containerID"] == "local://2"
    assert cs["lastState"]["terminated"]["containerID"] == "local://1"
    # An immediate restart (no back-off) goes straight from terminated to running.
    again = run.terminated(3, T2, None).running(3, T2)
    assert again.restart_count == 2 and again.last_termination.exit_code == 3


def test_a_terminated_container_that_will_restart_keeps_the_pod_running():
    for policy in ("Always", "OnFailure"):
        assert podstatus.build_status([crashed()], PodOutcome(restart_policy=policy), T1)["phase"] == "Running"
    assert podstatus.build_status([crashed()], PodOutcome(restart_policy="Never"), T1)["phase"] == "Failed"


def test_only_on_failure_with_exit_0_or_never_ends_the_pod():
    ok = crashed(code=0)
    assert podstatus.build_status([ok], PodOutcome(restart_policy="OnFailure"), T1)["phase"] == "Succeeded"
    assert podstatus.build_status([ok], PodOutcome(restart_policy="Always"), T1)["phase"] == "Running"


def test_a_pod_stopped_by_the_node_is_terminal_whatever_the_policy():
    killed = ContainerRun("main").running(1, T0).terminated(143, T1, None)
    outcome = PodOutcome(restart_policy="Always", stopped=True)
    assert podstatus.build_status([killed], outcome, T1)["phase"] == "Failed"


def test_a_pod_ended_during_backoff_reports_its_last_exit():
    run = crashed(pid=7, code=2).backing_off("waiting")
    (final,) = podstatus.finalize_unstarted([run], T2)
    assert (final.state, final.exit_code, final.reason, final.pid) == ("terminated", 2, "Error", 7)
    status = podstatus.build_status([final], PodOutcome(restart_policy="Always", stopped=True), T2)
    assert status["phase"] == "Failed"
    assert status["containerStatuses"][0]["state"]["terminated"]["finishedAt"] == "2026-01-02T03:04:12Z"


def test_termination_of_a_running_container_is_an_error():
    with pytest.raises(ValueError, match="container 'main' is running, not terminated"):
        ContainerRun("main").running(1, T0).termination()


# -- resumed after the node agent restarted (podstatus.resumed_runs) -------------------------

CONTAINERS = [{"name": "main", "image": "img"}]
AT = T0 + timedelta(hours=1)


def running_status(restart_count=2, last=None):
    cs = {"name": "main", "restartCount": restart_count, "containerID": "local://4242",
          "state": {"running": {"startedAt": "2026-01-02T03:04:05Z"}}, "lastState": {}}
    if last:
        cs["lastState"] = {"terminated": last}
    return cs


def test_a_running_container_is_lost_and_restarted_with_a_count_one_higher():
    older = {"exitCode": 1, "reason": "Error", "startedAt": "2026-01-02T03:00:00Z",
             "finishedAt": "2026-01-02T03:01:00Z"}
    (run,) = podstatus.resumed_runs(CONTAINERS, [running_status(2, older)], "Always", AT)
    assert run.state == podstatus.WAITING and run.reason == "ContainerCreating"
    lost = run.last_termination
    assert (lost.exit_code, lost.reason, lost.pid) == (137, "NodeAgentRestarted", 4242)
    assert "node agent restarted" in lost.message
    assert (lost.started_at, lost.finished_at) == (T0, AT)
    # Before it starts: the count is unchanged and the pod is Running (it ran), not Ready.
    status = podstatus.build_status([run], PodOutcome(start_time=T0, restart_policy="Always"), AT)
    assert status["phase"] == "Running"
    cs = status["containerStatuses"][0]
    assert cs["restartCount"] == 2 and cs["ready"] is False
    assert cs["lastState"]["terminated"]["reason"] == "NodeAgentRestarted"
    # Started again: kubelet's count goes up, lastState keeps the lost instance.
    cs = podstatus.build_status([run.running(5151, AT)], PodOutcome(restart_policy="Always"), AT)["containerStatuses"][0]
    assert cs["restartCount"] == 3
    assert cs["state"]["running"] == {"startedAt": podstatus.rfc3339(AT)}
    assert cs["lastState"]["terminated"]["exitCode"] == 137
    assert cs["lastState"]["terminated"]["containerID"] == "local://4242"


def test_on_failure_restarts_a_lost_instance_too():
    (run,) = podstatus.resumed_runs(CONTAINERS, [running_status(0)], "OnFailure", AT)
    assert run.state == podstatus.WAITING and run.last_termination.exit_code == 137
    assert run.running(1, AT).restart_count == 1


def test_a_container_in_back_off_keeps_its_real_last_exit():
    crash = {"exitCode": 3, "reason": "Error", "message": "boom", "startedAt": "2026-01-02T03:04:05Z",
             "finishedAt": "2026-01-02T03:04:12Z", "containerID": "local://77"}
    cs = {"name": "main", "restartCount": 4, "lastState": {"terminated": crash},
          "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s ..."}}}
    (run,) = podstatus.resumed_runs(CONTAINERS, [cs], "Always", AT)
    assert run.state == podstatus.WAITING and run.reason == "ContainerCreating"
    assert run.last_termination == podstatus.Termination(3, "Error", "boom", T0, T1, 77)
    assert run.running(5, AT).restart_count == 5


def test_an_exited_container_is_restarted_only_if_the_policy_says_so():
    done = {"name": "main", "restartCount": 1, "lastState": {},
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": "2026-01-02T03:04:05Z",
                                     "finishedAt": "2026-01-02T03:04:12Z"}}}
    (again,) = podstatus.resumed_runs(CONTAINERS, [done], "Always", AT)
    assert again.state == podstatus.WAITING and again.last_termination.reason == "Completed"
    (kept,) = podstatus.resumed_runs(CONTAINERS, [done], "OnFailure", AT)
    assert (kept.state, kept.exit_code, kept.restart_count, kept.finished_at) == (podstatus.TERMINATED, 0, 1, T1)
    # Nothing left to run: the pod is Succeeded, as it would have been.
    assert podstatus.build_status([kept], PodOutcome(restart_policy="OnFailure"), AT)["phase"] == "Succeeded"


def test_under_never_a_lost_instance_is_not_run_again():
    (run,) = podstatus.resumed_runs(CONTAINERS, [running_status(0)], "Never", AT)
    assert (run.state, run.exit_code, run.reason) == (podstatus.TERMINATED, 137, "NodeAgentRestarted")
    assert podstatus.build_status([run], PodOutcome(restart_policy="Never"), AT)["phase"] == "Failed"


def test_containers_that_never_ran_start_fresh():
    containers = [{"name": "main", "image": "img"}, {"name": "side", "image": "img2"}]
    waiting = {"name": "main", "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
    runs = podstatus.resumed_runs(containers, [waiting], "Always", AT)
    assert runs == [ContainerRun("main", "img"), ContainerRun("side", "img2")]


def test_a_terminated_state_without_finished_at_is_a_clear_error():
    broken = {"name": "main", "state": {"terminated": {"exitCode": 1}}}
    with pytest.raises(ValueError, match="terminated container state without finishedAt"):
        podstatus.resumed_runs(CONTAINERS, [broken], "Always", AT)


def test_a_bad_timestamp_is_named():
    with pytest.raises(ValueError, match="not an RFC 3339 timestamp: 'yesterday'"):
        podstatus.parse_time("yesterday")
    assert podstatus.parse_time("2026-01-02T03:04:05Z") == T0
    assert podstatus.parse_time(None) is None
