"""Latency of a single task on an idle system, and where it goes.

    python benchmarks/task_latency.py [--count 20] [--timeout 120] [--runner-count 20]

Part 1, through the operator: in a fresh namespace it starts the operator (as in
production, `python -m lime_task_operator --namespace ...`, events disabled: they go out
after SUCCESS and delay nothing measured here) and sends --count `sample_tasks.tasks.add`
tasks one after another, each once the previous one finished. Watches on this machine's
clock give, per task, from the create call: the Job created, the pod Running, the task
STARTED (the operator's write), the pod Succeeded (the node's report), the Job Complete
(the Job controller's) and the task SUCCESS. The runner's own log lines (it logs
with milliseconds, on the same machine's clock) give when the runner had started and
loaded the task, and how long it ran from there to its exit; the pod's container
startedAt/finishedAt give the same to the second.

Part 2, the runner alone: `python -m lime_task.runner` for the same task as a plain
subprocess, --runner-count times, against a bare interpreter (`python -c pass`) and
against the runner with the kubernetes client imported first (the library imports it
lazily, only to send or read tasks): the start-up cost every task pod pays.

Bounded: each task gives up after --timeout seconds (the run stops there and reports
what it has), each subprocess after 60 s. Loopback only; the namespace is deleted and
the operator stopped before exiting.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from _common import (EXTRA_ENV, TASK, Recorder, cluster_with_crd, create_namespace, delete_namespaces, percentile,
                     start_operator, summary, task_body, wait_until)
from kubernetes import client

from lime_task.constants import ENV_TASK, ENV_TERMINATION_PATH, GROUP, PLURAL, VERSION

# The runner's log format (lime_task.runner._configure_logging): local time, milliseconds.
RUNNER_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) \w+ lime_task\.runner: (.*)$")
SUBPROCESS_TIMEOUT = 60.0


def runner_log_times(log: str) -> tuple[Optional[float], Optional[float]]:
    """(first, last) runner log line as epoch seconds: "running ..." is logged once the
    task is loaded, "exit code ..." just before the process exits."""
    stamps = []
    for line in log.splitlines():
        match = RUNNER_LINE.match(line.strip())
        if match:
            seconds = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
            stamps.append(seconds + int(match.group(2)) / 1000)
    return (stamps[0], stamps[-1]) if stamps else (None, None)


@dataclass
class TaskTimes:
    """One task's milestones, seconds after its create call (None: not seen)."""

    name: str
    job: Optional[float] = None
    pod_running: Optional[float] = None
    started: Optional[float] = None
    success: Optional[float] = None
    runner_loaded: Optional[float] = None
    runner_exit: Optional[float] = None
    pod_finished: Optional[float] = None
    job_complete: Optional[float] = None
    container_seconds: Optional[float] = None
    state: Optional[str] = None
    problems: list[str] = field(default_factory=list)


def _since(t0: float, value: Optional[float]) -> Optional[float]:
    return None if value is None else value - t0


def container_seconds(pod: client.V1Pod) -> Optional[float]:
    for status in pod.status.container_statuses or []:
        terminated = status.state.terminated if status.state else None
        if terminated and terminated.started_at and terminated.finished_at:
            return (terminated.finished_at - terminated.started_at).total_seconds()
    return None


def run_one(api_client: client.ApiClient, recorder: Recorder, namespace: str, index: int,
            timeout: float) -> TaskTimes:
    custom = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    name = f"lat-{index:04d}"
    times = TaskTimes(name)
    t0 = time.time()
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, task_body(namespace, name, [index, 1]))
    if not wait_until(lambda: name in recorder.task_done, timeout, step=0.02):
        times.problems.append(f"not finished after {timeout:.0f}s (state {recorder.task_state.get(name)})")
    # The watches may deliver the Job/pod events a moment after the task's.
    wait_until(lambda: name in recorder.job_complete and name in recorder.pod_finished, 5, step=0.02)
    seen = recorder.task_state_seen.get(name, {})
    times.state = recorder.task_state.get(name)
    times.job = _since(t0, recorder.job_seen.get(name))
    times.pod_running = _since(t0, recorder.pod_running.get(name))
    times.started = _since(t0, seen.get("STARTED"))
    times.pod_finished = _since(t0, recorder.pod_finished.get(name))
    times.job_complete = _since(t0, recorder.job_complete.get(name))
    times.success = _since(t0, recorder.task_done.get(name))
    pod_name = recorder.pod_name.get(name)
    if pod_name is None:
        times.problems.append("no pod seen")
        return times
    pod = core.read_namespaced_pod(pod_name, namespace)
    times.container_seconds = container_seconds(pod)
    log = core.read_namespaced_pod_log(pod_name, namespace, container="task")
    loaded, exited = runner_log_times(log)
    if loaded is None:
        times.problems.append(f"no runner log lines in pod {pod_name}'s log: {log[-300:]!r}")
    times.runner_loaded, times.runner_exit = _since(t0, loaded), _since(t0, exited)
    return times


def run_operator_part(api_client, cluster, count: int, timeout: float) -> list[TaskTimes]:
    core = client.CoreV1Api(api_client)
    namespace = f"bench-lat-{uuid.uuid4().hex[:6]}"
    log_path = Path(f"/tmp/{namespace}-operator.log")
    create_namespace(core, namespace)
    recorder = Recorder(api_client, namespace)
    results: list[TaskTimes] = []
    try:
        recorder.start(tasks=True, pods=True)
        print(f"part 1: {count} tasks one after another in {namespace} (operator log {log_path})", flush=True)
        operator = start_operator(cluster, namespace, log_path)
        try:
            for index in range(count):
                times = run_one(api_client, recorder, namespace, index, timeout)
                results.append(times)
                if times.problems:
                    print(f"  {times.name}: {'; '.join(times.problems)}", flush=True)
                if times.success is None:
                    break  # bounded: a stuck task ends the run, with what it has
        finally:
            operator.stop()
    finally:
        recorder.stop()
        delete_namespaces(core, [namespace])
    return results


def _values(results: list[TaskTimes], attribute: str) -> list[float]:
    return [v for v in (getattr(t, attribute) for t in results) if v is not None]


def _differences(results: list[TaskTimes], later: str, earlier: str) -> list[float]:
    pairs = ((getattr(t, later), getattr(t, earlier)) for t in results)
    return [a - b for a, b in pairs if a is not None and b is not None]


def print_operator_part(results: list[TaskTimes]) -> None:
    successes = sum(1 for t in results if t.state == "SUCCESS")
    print()
    print(f"tasks                                {len(results)} (SUCCESS {successes})")
    print("from the create call:")
    print(f"  Job created                        {summary(_values(results, 'job'))}")
    print(f"  pod Running (pod watch)            {summary(_values(results, 'pod_running'))}")
    print(f"  task STARTED (operator's write)    {summary(_values(results, 'started'))}")
    print(f"  runner loaded the task (its log)   {summary(_values(results, 'runner_loaded'))}")
    print(f"  runner exited (its log)            {summary(_values(results, 'runner_exit'))}")
    print(f"  pod Succeeded (pod watch)          {summary(_values(results, 'pod_finished'))}")
    print(f"  Job Complete (Job watch)           {summary(_values(results, 'job_complete'))}")
    print(f"  task SUCCESS                       {summary(_values(results, 'success'))}")
    print("where it goes (between consecutive milestones):")
    print(f"  create -> Job created              {summary(_values(results, 'job'))}")
    print(f"  Job -> pod Running                 {summary(_differences(results, 'pod_running', 'job'))}")
    print(f"  pod Running -> runner loaded       {summary(_differences(results, 'runner_loaded', 'pod_running'))}")
    print(f"  runner loaded -> runner exited     {summary(_differences(results, 'runner_exit', 'runner_loaded'))}")
    print(f"  runner exited -> pod Succeeded     {summary(_differences(results, 'pod_finished', 'runner_exit'))}")
    print(f"  pod Succeeded -> Job Complete      {summary(_differences(results, 'job_complete', 'pod_finished'))}")
    print(f"  Job Complete -> task SUCCESS       {summary(_differences(results, 'success', 'job_complete'))}")
    print(f"  container startedAt->finishedAt    {summary(_values(results, 'container_seconds'))}"
          "  (whole seconds)")


# ------------------------------------------------------------------ part 2: the runner alone

RUNNER_ARGV = [sys.executable, "-m", "lime_task.runner"]
# The same runner, after `import kubernetes` (what lime_task.kube imports): what every
# task pod would pay if the library imported the client eagerly.
WITH_KUBERNETES_ARGV = [sys.executable, "-c",
                        "import kubernetes, runpy; runpy.run_module('lime_task.runner', run_name='__main__')"]
BARE_ARGV = [sys.executable, "-c", "pass"]


def runner_env(termination_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_TASK, "LIME_TASK_APP_FACTORY")}
    env.update(EXTRA_ENV)
    env[ENV_TASK] = json.dumps({"id": "bench", "task": TASK, "app": "bench", "args": [2, 3], "kwargs": {},
                                "namespace": "bench"})
    env[ENV_TERMINATION_PATH] = str(termination_path)
    return env


def time_process(argv: list[str], env: dict[str, str], termination_path: Optional[Path]) -> float:
    """Wall time of one run; a run that fails (or reports no success) stops the benchmark."""
    if termination_path is not None:
        termination_path.write_text("")
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {result.returncode}: {result.stdout[-500:]}"
                           f"{result.stderr[-500:]}")
    if termination_path is not None and not json.loads(termination_path.read_text() or "{}").get("ok"):
        raise RuntimeError(f"{' '.join(argv)} reported no success: {termination_path.read_text()[:300]!r}")
    return elapsed


def runner_imports_kubernetes(env: dict[str, str]) -> bool:
    """Whether `python -m lime_task.runner` imports the kubernetes client (-X importtime
    lists every module imported, on stderr)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "lime_task.runner"], env=env,
                            capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    return any(line.rstrip().endswith((" kubernetes", " kubernetes.client")) for line in result.stderr.splitlines())


def run_runner_part(count: int) -> dict[str, list[float]]:
    print(f"part 2: the runner as a subprocess, {count} runs per variant (interleaved)", flush=True)
    with tempfile.TemporaryDirectory(prefix="lime-bench-") as tmp:
        termination = Path(tmp) / "termination-log"
        env = runner_env(termination)
        variants = {"bare interpreter (python -c pass)": (BARE_ARGV, None),
                    "python -m lime_task.runner": (RUNNER_ARGV, termination),
                    "  same, kubernetes imported first": (WITH_KUBERNETES_ARGV, termination)}
        times: dict[str, list[float]] = {label: [] for label in variants}
        for label, (argv, path) in variants.items():
            time_process(argv, env, path)  # warm the page cache and .pyc files first
        for _ in range(count):
            for label, (argv, path) in variants.items():
                times[label].append(time_process(argv, env, path))
        times["imports kubernetes"] = [1.0 if runner_imports_kubernetes(env) else 0.0]
    return times


def print_runner_part(times: dict[str, list[float]]) -> None:
    print()
    for label, values in times.items():
        if label == "imports kubernetes":
            continue
        print(f"  {label:<36} p50 {percentile(values, 50):.3f}s  p95 {percentile(values, 95):.3f}s  (n={len(values)})")
    runner = percentile(times["python -m lime_task.runner"], 50)
    bare = percentile(times["bare interpreter (python -c pass)"], 50)
    eager = percentile(times["  same, kubernetes imported first"], 50)
    print(f"  runner's own start-up (p50 runner - bare)   {runner - bare:.3f}s")
    print(f"  cost of importing kubernetes (p50 diff)     {eager - runner:.3f}s")
    print(f"  python -m lime_task.runner imports kubernetes: {'yes' if times['imports kubernetes'][0] else 'no'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20, help="tasks sent one after another through the operator")
    parser.add_argument("--timeout", type=float, default=120, help="seconds one task may take before the run stops")
    parser.add_argument("--runner-count", type=int, default=20, help="runs of each runner variant (part 2)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.runner_count < 1:
        parser.error("--count and --runner-count must be at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")

    cluster = cluster_with_crd()
    api_client = cluster.api_client()
    results = run_operator_part(api_client, cluster, args.count, args.timeout)
    runner = run_runner_part(args.runner_count)
    print_operator_part(results)
    print_runner_part(runner)
    complete = len(results) == args.count and all(t.state == "SUCCESS" and not t.problems for t in results)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
