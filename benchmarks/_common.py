"""Helpers shared by the benchmark scripts: cluster access, the operator process, watches.

Not a library: the benchmarks run as scripts (`python benchmarks/NAME.py`), which puts
this directory on sys.path, so they import it as `_common`. Times are taken on this
machine's clock (time.time()) by watches, because Kubernetes timestamps have 1-second
steps, too coarse for latencies of about a second.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kubernetes import client, watch  # noqa: E402

from devcluster import testing  # noqa: E402
from lime_task.constants import GROUP, LABEL_TASK_ID, PLURAL, VERSION  # noqa: E402

TASK = "sample_tasks.tasks.add"
DEFAULT_IMAGE = "lime-task-runner:bench"
# The local node runs task pods as host processes: the sample tasks come from the checkout.
EXTRA_ENV = {"PYTHONPATH": str(REPO / "examples")}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values (a phase that timed out prints 'nan')."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float], unit: str = "s") -> str:
    """'p50 …  p95 …  max …  (n)': the line format of every latency the benchmarks print."""
    return (f"p50 {percentile(values, 50):6.2f}{unit}  p95 {percentile(values, 95):6.2f}{unit}  "
            f"max {max(values) if values else float('nan'):6.2f}{unit}  (n={len(values)})")


def cluster_with_crd() -> testing.Cluster:
    """$LIME_TEST_KUBECONFIG (any cluster), else the local dev cluster (started if down),
    with the LimeTask CRD applied: the test fixtures' bring-up."""
    cluster = testing.bring_up_cluster()
    cluster.apply_crd()
    return cluster


def create_namespace(core: client.CoreV1Api, name: str) -> None:
    """A namespace labelled as a benchmark's, ready for pods."""
    testing.create_namespace(core, name, {"limetask.dev/benchmark": "true"})


# How long delete_namespaces waits for the namespaces to be gone (seconds).
NAMESPACE_GONE_TIMEOUT = 180


def delete_namespaces(core: client.CoreV1Api, names: Iterable[str]) -> None:
    """Delete the namespaces and wait until they are gone (at most
    NAMESPACE_GONE_TIMEOUT): tearing down a burst's Jobs and pods takes the node and the
    control plane tens of seconds of CPU, which must not land in the next run's figures."""
    names = list(names)
    for name in names:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except client.ApiException:
            pass  # already gone, or the cluster is down: nothing left to clean
    deadline = time.monotonic() + NAMESPACE_GONE_TIMEOUT
    left = names
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = [name for name in left if _namespace_exists(core, name)]
    if left:
        print(f"namespaces still terminating after {NAMESPACE_GONE_TIMEOUT}s: {', '.join(left)}", file=sys.stderr)


def _namespace_exists(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespace(name)
    except client.ApiException as error:
        return error.status != 404
    except Exception:  # noqa: BLE001 - the cluster went away: nothing to wait for
        return False
    return True


def start_operator(cluster: testing.Cluster, namespace: str, log_path: Path,
                   max_running: int = 0, metrics_port: int = 0) -> testing.OperatorProcess:
    """The operator as in production (`python -m lime_task_operator --namespace NS`),
    events disabled (no broker URL), returned once its liveness endpoint answers;
    with `metrics_port`, serving its Prometheus metrics there. On a node that runs
    containers (the cluster has images) its tasks run the tasks image."""
    if cluster.images:
        env = testing.operator_env(cluster.env(), cluster.images, MAX_RUNNING=max_running,
                                   METRICS_PORT=metrics_port)
    else:
        env = testing.operator_env(cluster.env(), DEFAULT_IMAGE=DEFAULT_IMAGE, MAX_RUNNING=max_running,
                                   METRICS_PORT=metrics_port)
    log_path.unlink(missing_ok=True)
    return testing.OperatorProcess(namespace, env, log_path).start()


def task_settings(cluster: testing.Cluster):
    """The operator settings a benchmark's raw Jobs are built with, as the operator builds
    its own: the tasks image on a node that runs containers, else the host-process node's
    placeholder image and the checkout's sample tasks on PYTHONPATH."""
    sys.path.insert(0, str(REPO / "operator"))
    from lime_task_operator.settings import Settings

    if cluster.images:
        return Settings(default_image=cluster.images["tasks"])
    return Settings(default_image=DEFAULT_IMAGE, extra_env=EXTRA_ENV)


def operator_counters(port: int) -> dict[str, float]:
    """The operator's Prometheus counters on 127.0.0.1:`port`, by sample name with its
    labels (e.g. ``limetask_reconcile_total{queue="reconcile"}``); {} when unreachable."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    counters = {}
    for line in text.splitlines():
        if line.startswith("limetask_") and "_total" in line.split(" ", 1)[0]:
            name, value = line.rsplit(" ", 1)
            counters[name] = float(value)
    return counters


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class Recorder:
    """Watches a namespace and notes, per task, the first time each thing is seen.

    Keys are task names (the Job's and pod's task-id label); without that label (Jobs
    created directly) the Job's own name. Watches restart every few seconds so that
    `stop()` takes effect promptly; a restart relists, and `setdefault` keeps the first
    sighting, so relisting never moves a time.
    """

    WATCH_SECONDS = 5

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.job_seen: dict[str, float] = {}
        self.job_complete: dict[str, float] = {}
        self.pod_running: dict[str, float] = {}
        self.pod_finished: dict[str, float] = {}
        self.pod_name: dict[str, str] = {}
        self.task_done: dict[str, float] = {}
        self.task_state: dict[str, str] = {}
        self.task_state_seen: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, tasks: bool, pods: bool = False) -> None:
        targets: list[Callable[[], None]] = [self._watch_jobs]
        if tasks:
            targets.append(self._watch_tasks)
        if pods:
            targets.append(self._watch_pods)
        for target in targets:
            thread = threading.Thread(target=target, daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _stream(self, list_fn: Callable, *args):
        while not self._stop.is_set():
            for event in watch.Watch().stream(list_fn, *args, timeout_seconds=self.WATCH_SECONDS):
                yield time.time(), event["object"]
                if self._stop.is_set():
                    return

    def _watch_jobs(self) -> None:
        batch = client.BatchV1Api(self.api_client)
        for now, job in self._stream(batch.list_namespaced_job, self.namespace):
            key = (job.metadata.labels or {}).get(LABEL_TASK_ID) or job.metadata.name
            self.job_seen.setdefault(key, now)
            if any(c.type == "Complete" and c.status == "True" for c in (job.status.conditions or [])):
                self.job_complete.setdefault(key, now)

    def _watch_pods(self) -> None:
        core = client.CoreV1Api(self.api_client)
        for now, pod in self._stream(core.list_namespaced_pod, self.namespace):
            key = (pod.metadata.labels or {}).get(LABEL_TASK_ID)
            if not key:
                continue
            self.pod_name.setdefault(key, pod.metadata.name)
            if pod.status.phase == "Running":
                self.pod_running.setdefault(key, now)
            elif pod.status.phase in ("Succeeded", "Failed"):
                self.pod_finished.setdefault(key, now)

    def _watch_tasks(self) -> None:
        custom = client.CustomObjectsApi(self.api_client)
        for now, obj in self._stream(custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL):
            state = (obj.get("status") or {}).get("state")
            name = obj["metadata"]["name"]
            if state:
                self.task_state[name] = state
                self.task_state_seen.setdefault(name, {}).setdefault(state, now)
            if state in ("SUCCESS", "FAILURE"):
                self.task_done.setdefault(name, now)


def task_body(namespace: str, name: str, args: list, task: str = TASK, app: str = "bench") -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LimeTask",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"task": task, "app": app, "args": args}}

