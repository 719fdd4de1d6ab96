"""benchmarks/api_throughput.py's measuring loop, without a cluster."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import api_throughput  # noqa: E402


def test_run_phase_times_every_call_and_counts_failures_apart():
    calls = []

    def per_client(number):
        def call(index):
            calls.append((number, index))
            if index == 2:
                raise RuntimeError("refused")
            time.sleep(0.01)
        return call

    phase = api_throughput.run_phase("POST api", clients=3, per_client=per_client, requests=4)
    assert sorted(calls) == [(n, i) for n in range(3) for i in range(4)]
    assert len(phase.latencies) == 9 and len(phase.errors) == 3
    assert all(latency >= 0.01 for latency in phase.latencies)
    assert phase.errors[0] == "RuntimeError: refused"
    assert 0 < phase.rate <= 9 / 0.02
    line = phase.line()
    assert line.startswith("POST api") and "req/s" in line and "errors 3" in line


def test_a_phase_without_time_has_no_rate():
    assert api_throughput.Phase("GET api").rate != api_throughput.Phase("GET api").rate  # NaN
