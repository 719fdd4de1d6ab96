"""benchmarks/node_latency.py: the raw Job it compares with, and its first-seen clock."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import node_latency  # noqa: E402


def test_raw_job_runs_the_image_as_task_pods_do():
    job = node_latency.raw_job("raw-001", "localhost/lime-task-tasks:abc")
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 65532 and pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == "localhost/lime-task-tasks:abc"
    assert container["imagePullPolicy"] != "Always"
    assert job["spec"]["template"]["metadata"]["labels"] == {"bench-job": "raw-001"}


def test_first_seen_keeps_the_first_time_and_waits_bounded():
    seen = node_latency.FirstSeen()
    seen.see("a", "started")
    first = seen.times[("a", "started")]
    seen.see("a", "started")
    assert seen.wait("a", "started", 0.1) == first
    t0 = time.monotonic()
    assert seen.wait("b", "started", 0.2) is None
    assert 0.15 < time.monotonic() - t0 < 2
    threading.Timer(0.1, seen.see, ("c", "done")).start()
    assert seen.wait("c", "done", 5) is not None
