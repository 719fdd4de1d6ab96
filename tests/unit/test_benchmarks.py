"""The benchmarks' pure parts: what would silently print wrong figures if it drifted.

task_latency.py reads the runner's own log lines to split a task's time; if the runner's
log format (or its clock, local time) changed, those rows would go empty or shift by
hours. One test runs the real runner as a subprocess and parses its output.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _common  # noqa: E402
import task_latency  # noqa: E402


def test_percentile_is_nearest_rank_and_nan_without_values():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert _common.percentile(values, 50) == 3.0
    assert _common.percentile(values, 95) == 5.0
    assert _common.percentile(values, 0) == 1.0
    assert _common.percentile([], 50) != _common.percentile([], 50)  # NaN


def test_summary_names_the_count_and_survives_no_values():
    assert "(n=3)" in _common.summary([1.0, 2.0, 3.0])
    assert "nan" in _common.summary([])


def test_runner_log_times_takes_the_first_and_last_runner_line_with_milliseconds():
    log = "\n".join([
        "some other output",
        "2026-11-26 12:00:00,250 INFO lime_task.runner: running sample_tasks.tasks.add for app a (task t)",
        "2026-11-26 12:00:00,300 INFO other.logger: not the runner",
        "2026-11-26 12:00:01,005 INFO lime_task.runner: exit code 0 (SUCCESS)",
    ])
    first, last = task_latency.runner_log_times(log)
    assert last - first == pytest.approx(0.755, abs=1e-6)
    assert first == pytest.approx(time.mktime(time.strptime("2026-11-26 12:00:00", "%Y-%m-%d %H:%M:%S")) + 0.25)


def test_runner_log_times_without_runner_lines_is_none():
    assert task_latency.runner_log_times("Traceback (most recent call last):\n  boom") == (None, None)


def test_the_real_runners_log_parses_to_this_machines_clock(tmp_path):
    termination = tmp_path / "termination-log"
    env = task_latency.runner_env(termination)
    before = time.time()
    result = subprocess.run([sys.executable, "-m", "lime_task.runner"], env=env, capture_output=True, text=True,
                            timeout=60)
    after = time.time()
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(termination.read_text()) == {"ok": True, "result": {"app": "bench", "sum": 5,
                                                                           "description": "added 2 and 3"}}
    first, last = task_latency.runner_log_times(result.stdout)
    assert first is not None, result.stdout
    # Log stamps are truncated to milliseconds: allow that much before the start.
    assert before - 0.001 <= first <= last <= after


def test_runner_env_replaces_an_inherited_task_and_app_factory(monkeypatch, tmp_path):
    monkeypatch.setenv("LIME_TASK", '{"stale": true}')
    monkeypatch.setenv("LIME_TASK_APP_FACTORY", "nowhere:make")
    env = task_latency.runner_env(tmp_path / "t")
    assert json.loads(env["LIME_TASK"])["task"] == _common.TASK
    assert "LIME_TASK_APP_FACTORY" not in env
    assert env["PYTHONPATH"] == _common.EXTRA_ENV["PYTHONPATH"] and os.path.isdir(env["PYTHONPATH"])


def test_control_plane_flags_are_read_in_both_spellings_and_the_operators_requests_summed():
    import operator_throughput

    argv = ["kube-apiserver", "--etcd-servers", "http://127.0.0.1:2379", "--secure-port=6443", "--v", "1"]
    assert "--secure-port=6443" in operator_throughput._flags(argv)
    assert ("--etcd-servers", "http://127.0.0.1:2379") in operator_throughput._pairs(argv)
    counters = {'limetask_kubernetes_api_requests_total{code="200",resource="limetasks/status",verb="PATCH"}': 5.0,
                'limetask_kubernetes_api_requests_total{code="409",resource="limetasks/status",verb="PATCH"}': 1.0,
                'limetask_kubernetes_api_requests_total{code="201",resource="jobs",verb="POST"}': 2.0,
                'limetask_reconcile_total{queue="reconcile"}': 9.0}
    assert operator_throughput.operator_requests(counters) == (8.0, "PATCH limetasks/status 6, POST jobs 2")
