"""Task start latency on a node that runs containers, beside a raw Job in the same run.

    python benchmarks/node_latency.py [--count 20] [--timeout 120]

On an idle cluster with the images present, in one fresh namespace, one at a time:

- through the operator: --count `sample_tasks.tasks.add` LimeTasks (the tasks image, as
  the operator's default image); from the create call to the task's STARTED (the
  operator's write once the pod runs) and to SUCCESS;
- a raw Job: --count Jobs whose one container runs the same image and interpreter
  (`python -c "import sample_tasks.tasks"`), with the task pods' security context; from
  the create call to the pod Running (what STARTED stands for) and to Succeeded.

Times are taken on this machine's clock by watches (Kubernetes timestamps have 1-second
steps). Bounded: each object gives up after --timeout seconds; the namespace is deleted
and the operator stopped before exiting. Runs on the local cluster, or on
LIME_TEST_KUBECONFIG + LIME_TEST_IMAGES.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from _common import TASK, cluster_with_crd, create_namespace, delete_namespaces, summary, task_body
from kubernetes import client, watch

from devcluster import testing
from lime_task.constants import GROUP, PLURAL, VERSION

RUNNING_STATES = ("STARTED", "SUCCESS", "FAILURE")


class FirstSeen:
    """Per-object times (time.time()) at which a watch first saw each named condition."""

    def __init__(self) -> None:
        self.times: dict[tuple[str, str], float] = {}
        self.changed = threading.Condition()

    def see(self, name: str, what: str) -> None:
        with self.changed:
            self.times.setdefault((name, what), time.time())
            self.changed.notify_all()

    def wait(self, name: str, what: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while (name, what) not in self.times:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)
            return self.times[(name, what)]


def watch_forever(stream_fn, *args, on_event) -> threading.Thread:
    def loop() -> None:
        while True:
            try:
                for event in watch.Watch().stream(stream_fn, *args, timeout_seconds=60):
                    on_event(event["object"])
            except Exception:  # noqa: BLE001 - a broken watch is restarted
                time.sleep(0.2)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def raw_job(name: str, image: str) -> dict:
    container = {
        "name": "task", "image": image, "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-c", "import sample_tasks.tasks"],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": True},
    }
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": {"bench-job": name}}, "spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": False,
            "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "runAsNonRoot": True,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container]}}},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    cluster = cluster_with_crd()
    image = cluster.images["tasks"]
    namespace = f"bench-node-{uuid.uuid4().hex[:6]}"
    seen = FirstSeen()
    with cluster.api_client() as api:
        core, batch, custom = client.CoreV1Api(api), client.BatchV1Api(api), client.CustomObjectsApi(api)
        create_namespace(core, namespace)
        log = Path(tempfile.gettempdir()) / f"{namespace}-operator.log"
        operator = testing.OperatorProcess(namespace, testing.operator_env(cluster.env(), cluster.images), log).start()
        try:
            def on_task(obj: dict) -> None:
                state = (obj.get("status") or {}).get("state")
                if state in RUNNING_STATES:
                    seen.see(obj["metadata"]["name"], "started")
                if state in ("SUCCESS", "FAILURE"):
                    seen.see(obj["metadata"]["name"], state)

            def on_pod(pod) -> None:
                job = (pod.metadata.labels or {}).get("bench-job")
                if job and pod.status.phase in ("Running", "Succeeded", "Failed"):
                    seen.see(job, "running")
                if job and pod.status.phase in ("Succeeded", "Failed"):
                    seen.see(job, pod.status.phase)

            watch_forever(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, on_event=on_task)
            watch_forever(core.list_namespaced_pod, namespace, on_event=on_pod)
            time.sleep(1)  # both watches established before the first create

            task_started, task_done, failed = [], [], 0
            for i in range(args.count):
                name = f"t-{i:03d}"
                t0 = time.time()
                custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                       task_body(namespace, name, [2, 3], task=TASK))
                started = seen.wait(name, "started", args.timeout)
                done = seen.wait(name, "SUCCESS", args.timeout)
                if started is None or done is None:
                    failed += 1
                    continue
                task_started.append(started - t0)
                task_done.append(done - t0)
            job_running, job_done = [], []
            for i in range(args.count):
                name = f"raw-{i:03d}"
                t0 = time.time()
                batch.create_namespaced_job(namespace, raw_job(name, image))
                running = seen.wait(name, "running", args.timeout)
                done = seen.wait(name, "Succeeded", args.timeout)
                if running is None or done is None:
                    failed += 1
                    continue
                job_running.append(running - t0)
                job_done.append(done - t0)
        finally:
            operator.stop()
            delete_namespaces(core, [namespace])
    print(f"node: {'local kubelet' if cluster.local else 'external cluster'}, image {image}, "
          f"{args.count} of each, one at a time")
    print(f"LimeTask create -> STARTED   {summary(task_started)}")
    print(f"raw Job  create -> Running   {summary(job_running)}")
    print(f"LimeTask create -> SUCCESS   {summary(task_done)}")
    print(f"raw Job  create -> Succeeded {summary(job_done)}")
    if failed:
        print(f"{failed} objects did not get there within {args.timeout:.0f}s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
