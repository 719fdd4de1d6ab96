"""When the local node restarts a container that exited, and how long it waits (kubelet's rules)."""

from __future__ import annotations

import pytest

from devcluster import restarts


@pytest.mark.parametrize("policy, exit_code, restart", [
    ("Always", 0, True),
    ("Always", 1, True),
    ("OnFailure", 0, False),
    ("OnFailure", 137, True),
    ("Never", 1, False),
    ("Never", 0, False),
])
def test_restart_policy_decides_by_exit_code(policy, exit_code, restart):
    assert restarts.should_restart(policy, exit_code) is restart


def test_unknown_restart_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="restartPolicy must be one of Always, OnFailure, Never, got 'Sometimes'"):
        restarts.should_restart("Sometimes", 1)


def test_a_crash_loop_waits_0_then_10_doubling_to_300_seconds():
    backoff, waits = None, []
    for _ in range(9):
        restart = restarts.next_restart(backoff, ran_seconds=0.1)
        waits.append(restart.delay)
        backoff = restart.backoff
    assert waits == [0, 10, 20, 40, 80, 160, 300, 300, 300]


def test_a_long_run_resets_the_backoff():
    # kubelet forgets the back-off entry of an instance that lived more than 10 minutes.
    assert restarts.next_restart(300.0, ran_seconds=601) == restarts.Restart(0.0, 10.0)
    assert restarts.next_restart(300.0, ran_seconds=599) == restarts.Restart(300.0, 300.0)
    assert restarts.next_restart(40.0, ran_seconds=599) == restarts.Restart(40.0, 80.0)


@pytest.mark.parametrize("seconds, text", [(10, "10s"), (40, "40s"), (60, "1m0s"), (160, "2m40s"), (300, "5m0s")])
def test_durations_print_like_go(seconds, text):
    assert restarts.go_duration(seconds) == text


def test_backoff_message_reads_like_kubelets():
    assert restarts.backoff_message(20, "main", "web-7d4", "shop", "1234-abcd") == (
        "back-off 20s restarting failed container=main pod=web-7d4_shop(1234-abcd)")


# -- the node agent restarted: what happens to a pod it finds bound to it ----------------

@pytest.mark.parametrize("policy, started, action", [
    ("Always", True, restarts.RESTART),
    ("OnFailure", True, restarts.RESTART),  # the lost instance counts as killed (137)
    ("Never", True, restarts.FAIL),  # its process is gone; a task must never run twice
    ("Always", False, restarts.RUN),
    ("OnFailure", False, restarts.RUN),
    ("Never", False, restarts.RUN),  # nothing of it ran yet
])
def test_after_an_agent_restart_started_pods_restart_in_place_unless_never(policy, started, action):
    assert restarts.after_agent_restart(policy, started) == action


@pytest.mark.parametrize("started", [True, False])
def test_after_an_agent_restart_an_unknown_policy_is_a_clear_error(started):
    with pytest.raises(ValueError, match="restartPolicy must be one of Always, OnFailure, Never, got 'Twice'"):
        restarts.after_agent_restart("Twice", started)
