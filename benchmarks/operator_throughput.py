"""Operator throughput against a real cluster, with a no-operator baseline in the same run.

    python benchmarks/operator_throughput.py [--count 200] [--max-running 0] [--timeout 600]

Uses $LIME_TEST_KUBECONFIG if set, else starts (or reuses) the local dev cluster with
the devcluster code. In a fresh namespace it starts the operator (as in production:
`python -m lime_task_operator --namespace ...`), submits N LimeTasks running
`sample_tasks.tasks.add`, and records from watches, on this machine's clock:
create -> Job created and create -> SUCCESS per task (p50/p95), tasks per second
(first create to last SUCCESS) and the operator's peak RSS (VmHWM). Then it creates the
same N Jobs directly (the operator's Job builder, no owner) in another namespace and
times them to all Complete: the ratio of the two totals is the operator's overhead.

Bounded: each phase gives up after --timeout seconds and reports what it has. It
deletes its namespaces and stops the operator before exiting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kubernetes import client, config, watch  # noqa: E402

from lime_task.constants import GROUP, LABEL_TASK_ID, PLURAL, VERSION  # noqa: E402
from lime_task_operator.jobs import build_job  # noqa: E402
from lime_task_operator.settings import Settings  # noqa: E402

TASK = "sample_tasks.tasks.add"
EXTRA_ENV = {"PYTHONPATH": str(REPO / "examples")}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def kubeconfig_path() -> str:
    external = os.environ.get("LIME_TEST_KUBECONFIG")
    if external:
        return external
    from devcluster import testing

    return str(testing.bring_up_cluster().kubeconfig)


class Recorder:
    """Watches a namespace and notes the first time each condition is seen."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.job_seen: dict[str, float] = {}
        self.job_complete: dict[str, float] = {}
        self.task_done: dict[str, float] = {}
        self.task_state: dict[str, str] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, tasks: bool) -> None:
        self._threads.append(threading.Thread(target=self._watch_jobs, daemon=True))
        if tasks:
            self._threads.append(threading.Thread(target=self._watch_tasks, daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch_jobs(self) -> None:
        batch = client.BatchV1Api(self.api_client)
        while not self._stop.is_set():
            for event in watch.Watch().stream(batch.list_namespaced_job, self.namespace, timeout_seconds=5):
                now = time.time()
                job = event["object"]
                key = (job.metadata.labels or {}).get(LABEL_TASK_ID) or job.metadata.name
                self.job_seen.setdefault(key, now)
                if any(c.type == "Complete" and c.status == "True" for c in (job.status.conditions or [])):
                    self.job_complete.setdefault(key, now)
                if self._stop.is_set():
                    return

    def _watch_tasks(self) -> None:
        custom = client.CustomObjectsApi(self.api_client)
        while not self._stop.is_set():
            stream = watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, VERSION,
                                          self.namespace, PLURAL, timeout_seconds=5)
            for event in stream:
                now = time.time()
                obj = event["object"]
                state = (obj.get("status") or {}).get("state")
                name = obj["metadata"]["name"]
                if state:
                    self.task_state[name] = state
                if state in ("SUCCESS", "FAILURE"):
                    self.task_done.setdefault(name, now)
                if self._stop.is_set():
                    return


def create_namespace(core: client.CoreV1Api, name: str) -> None:
    core.create_namespace({"metadata": {"name": name, "labels": {"limetask.dev/benchmark": "true"}}})
    deadline = time.monotonic() + 60
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            return
        except client.ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start_operator(kubeconfig: str, namespace: str, max_running: int, log_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIME_TASK_OPERATOR_")}
    env.update(KUBECONFIG=kubeconfig,
               LIME_TASK_OPERATOR_DEFAULT_IMAGE="lime-task-runner:bench",
               LIME_TASK_OPERATOR_EXTRA_ENV=json.dumps(EXTRA_ENV),
               LIME_TASK_OPERATOR_MAX_RUNNING=str(max_running))
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "lime_task_operator", "--namespace", namespace,
                             "--liveness", f"http://127.0.0.1:{port}/healthz"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"operator exited: {log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return proc
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"operator not ready: {log_path.read_text()[-3000:]}")
            time.sleep(0.2)


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def run_operator_phase(api_client, kubeconfig, namespace, count, max_running, timeout, log_path):
    custom = client.CustomObjectsApi(api_client)
    recorder = Recorder(api_client, namespace)
    recorder.start(tasks=True)
    proc = start_operator(kubeconfig, namespace, max_running, log_path)
    created: dict[str, float] = {}
    try:
        def create(i: int) -> None:
            name = f"bench-{i:05d}"
            body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LimeTask",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"task": TASK, "app": "bench", "args": [i, 1]}}
            started = time.time()
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
            created[name] = started

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(create, range(count)))
        finished = wait_until(lambda: len(recorder.task_done) >= count, timeout)
        rss = peak_rss_kib(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        recorder.stop()
    to_job = [recorder.job_seen[n] - t for n, t in created.items() if n in recorder.job_seen]
    to_done = [recorder.task_done[n] - t for n, t in created.items() if n in recorder.task_done]
    successes = sum(1 for s in recorder.task_state.values() if s == "SUCCESS")
    total = (max(recorder.task_done.values()) - min(created.values())) if recorder.task_done else float("nan")
    return dict(finished=finished, to_job=to_job, to_done=to_done, successes=successes, total=total, rss_kib=rss)


def run_direct_phase(api_client, namespace, count, timeout):
    batch = client.BatchV1Api(api_client)
    recorder = Recorder(api_client, namespace)
    recorder.start(tasks=False)
    settings = Settings(default_image="lime-task-runner:bench", extra_env=EXTRA_ENV)
    bodies = []
    for i in range(count):
        name = f"bench-{i:05d}"
        fake_task = {"metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
                     "spec": {"task": TASK, "app": "bench", "args": [i, 1]}}
        job = build_job(fake_task, settings)
        del job["metadata"]["ownerReferences"]  # no LimeTask here: nothing owns them
        bodies.append(job)
    started = time.time()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda body: batch.create_namespaced_job(namespace, body), bodies))
    finished = wait_until(lambda: len(recorder.job_complete) >= count, timeout)
    recorder.stop()
    total = (max(recorder.job_complete.values()) - started) if recorder.job_complete else float("nan")
    return dict(finished=finished, total=total, complete=len(recorder.job_complete))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="tasks (and direct Jobs) to run")
    parser.add_argument("--max-running", type=int, default=0, help="operator MAX_RUNNING (0 = unlimited)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per phase before giving up")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")

    kubeconfig = kubeconfig_path()
    api_client = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api_client)
    subprocess.run([str(Path.home() / ".cache/lime-task/bin/kubectl"), "--kubeconfig", kubeconfig, "apply",
                    "--server-side", "--force-conflicts", "-f", str(REPO / "crds/limetask.yaml")],
                   check=True, capture_output=True)
    suffix = uuid.uuid4().hex[:6]
    op_ns, direct_ns = f"bench-op-{suffix}", f"bench-direct-{suffix}"
    log_path = Path(f"/tmp/{op_ns}-operator.log")
    create_namespace(core, op_ns)
    create_namespace(core, direct_ns)
    try:
        print(f"operator phase: {args.count} tasks in {op_ns} (operator log {log_path})", flush=True)
        op = run_operator_phase(api_client, kubeconfig, op_ns, args.count, args.max_running, args.timeout, log_path)
        print(f"direct phase: {args.count} Jobs in {direct_ns}", flush=True)
        direct = run_direct_phase(api_client, direct_ns, args.count, args.timeout)
    finally:
        for ns in (op_ns, direct_ns):
            try:
                core.delete_namespace(ns, propagation_policy="Background")
            except client.ApiException:
                pass

    print()
    print(f"tasks                      {args.count} (SUCCESS {op['successes']}, all finished: {op['finished']})")
    print(f"create -> Job created      p50 {percentile(op['to_job'], 50):.2f}s  p95 {percentile(op['to_job'], 95):.2f}s")
    print(f"create -> SUCCESS          p50 {percentile(op['to_done'], 50):.2f}s  p95 {percentile(op['to_done'], 95):.2f}s")
    print(f"operator total             {op['total']:.1f}s  ({args.count / op['total']:.2f} tasks/s)")
    print(f"operator peak RSS (VmHWM)  {op['rss_kib'] / 1024:.1f} MiB")
    print(f"direct Jobs total          {direct['total']:.1f}s  ({direct['complete']} Complete, all: {direct['finished']})")
    print(f"overhead ratio             {op['total'] / direct['total']:.2f}x (operator total / direct total)")
    return 0 if op["finished"] and direct["finished"] else 1


if __name__ == "__main__":
    sys.exit(main())
