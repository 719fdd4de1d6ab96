"""Operator throughput against a real cluster, with a no-operator baseline in the same run.

    python benchmarks/operator_throughput.py [--count 200] [--max-running 0] [--timeout 600]
                                             [--no-direct] [--raw times.json]

Uses $LIME_TEST_KUBECONFIG if set, else starts (or reuses) the local dev cluster with
the devcluster code. In a fresh namespace it starts the operator (as in production:
`python -m lime_task_operator --namespace ...`), submits N LimeTasks running
`sample_tasks.tasks.add`, and records from watches, on this machine's clock:
create -> Job created and create -> SUCCESS per task (p50/p95), tasks per second
(first create to last SUCCESS) and the operator's peak RSS (VmHWM). Then it creates the
same N Jobs directly (the operator's Job builder, no owner) in another namespace and
times them to all Complete: the ratio of the two totals is the operator's overhead.

Cost per task (issue #16): the operator's CPU seconds from ready to the last SUCCESS,
divided by N; and from the API server's own `apiserver_request_total`, read before and
after the operator phase: LimeTask writes (PATCH/PUT of limetasks and their status),
the 409s among them, and Events created. Those counters are cluster-wide: run the
benchmark on an otherwise idle cluster. It prints the controller-manager's rate flags.

Floors under the operator's CPU, measured in the same run: a bare process
(_watch_floor.py) receives and parses the same watch events beside the operator and
nothing else (the watch floor); one request made alone through the operator's own client,
times the operator's requests per task (the request floor). What the operator spends
above both is its own work: decisions, cache, thread hand-offs, metrics and logging.

Bounded: each phase gives up after --timeout seconds and reports what it has. It
deletes its namespaces and stops the operator before exiting.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import (TASK, Recorder, cluster_with_crd, create_namespace, delete_namespaces, operator_counters,
                     peak_rss_kib, start_operator, summary, task_body, task_settings, wait_until)
from kubernetes import client

from devcluster import testing
from lime_task.constants import GROUP, PLURAL, VERSION
from lime_task_operator.jobs import build_job


def apiserver_requests(api_client) -> dict[tuple[str, str, str, str], float]:
    """apiserver_request_total by (resource, subresource, verb, code), from /metrics."""
    method, url, headers, body, _ = api_client.param_serialize(
        method="GET", resource_path="/metrics", header_params={"Accept": "text/plain"}, auth_settings=["BearerToken"])
    data = api_client.call_api(method, url, header_params=headers).read().decode()
    counts: dict[tuple[str, str, str, str], float] = {}
    for line in data.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        key = (labels.get("resource", ""), labels.get("subresource", ""), labels.get("verb", ""),
               labels.get("code", ""))
        counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def request_delta(before, after, resource: str, verbs: tuple[str, ...], code: str | None = None) -> float:
    total = 0.0
    for key, value in after.items():
        if key[0] == resource and key[2] in verbs and (code is None or key[3] == code):
            total += value - before.get(key, 0.0)
    return total


def controller_manager_flags(state_dir: Path | None) -> str:
    """This cluster's controller-manager's rate flags, read from its command line: the
    one whose --kubeconfig lies in the cluster's state directory (other local clusters
    may run on the same machine)."""
    for entry in Path("/proc").iterdir():
        try:
            argv = [a.decode() for a in (entry / "cmdline").read_bytes().split(b"\0")]
        except OSError:
            continue
        if not argv or not argv[0].endswith("kube-controller-manager"):
            continue
        pairs = dict(_pairs(argv))
        if state_dir is None or not pairs.get("--kubeconfig", "").startswith(str(state_dir) + "/"):
            continue
        keep = [f"{flag}={pairs[flag]}" for flag in ("--kube-api-qps", "--kube-api-burst", "--concurrent-job-syncs")
                if flag in pairs]
        return " ".join(keep) or "(defaults: --kube-api-qps=20 --kube-api-burst=30 --concurrent-job-syncs=5)"
    return "(not a local cluster: unknown)"


def local_process(name: str, api_client) -> int | None:
    """The pid of this cluster's `name` (kube-apiserver, etcd) when it runs on this
    machine: the API server listening on the kubeconfig's port, and the etcd it uses.
    None for a remote cluster (its CPU is then not reported)."""
    port = urlsplit(api_client.configuration.host).port
    argvs = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argvs[int(entry.name)] = [a.decode() for a in (entry / "cmdline").read_bytes().split(b"\0")]
            except OSError:
                continue
    apiserver = next((pid for pid, argv in argvs.items() if argv and argv[0].endswith("kube-apiserver")
                      and f"--secure-port={port}" in _flags(argv)), None)
    if name == "kube-apiserver" or apiserver is None:
        return apiserver
    etcd_url = next((value for flag, value in _pairs(argvs[apiserver]) if flag == "--etcd-servers"), "")
    return next((pid for pid, argv in argvs.items() if argv and argv[0].endswith(name)
                 and any(value == etcd_url for flag, value in _pairs(argv) if flag == "--listen-client-urls")), None)


def _pairs(argv: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for i, arg in enumerate(argv):
        if arg.startswith("--"):
            if "=" in arg:
                pairs.append(tuple(arg.split("=", 1)))
            elif i + 1 < len(argv):
                pairs.append((arg, argv[i + 1]))
    return pairs


def _flags(argv: list[str]) -> set[str]:
    return {f"{flag}={value}" for flag, value in _pairs(argv)}


def control_plane_cpu(pids: dict[str, int | None]) -> dict[str, float]:
    """CPU seconds so far of each local control-plane process found."""
    return {name: cpu_seconds(pid) for name, pid in pids.items() if pid is not None and Path(f"/proc/{pid}").exists()}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_operator_phase(api_client, cluster, namespace, count, max_running, timeout, log_path):
    custom = client.CustomObjectsApi(api_client)
    recorder = Recorder(api_client, namespace)
    recorder.start(tasks=True)
    metrics_port = testing.free_loopback_port()
    operator = start_operator(cluster, namespace, log_path, max_running, metrics_port)
    floor = WatchFloor(cluster, namespace)
    cpu_start = cpu_seconds(operator.pid)
    counters_before = operator_counters(metrics_port)
    control_plane = {name: local_process(name, api_client) for name in ("kube-apiserver", "etcd")}
    control_start = control_plane_cpu(control_plane)
    requests_before = apiserver_requests(api_client)
    created: dict[str, float] = {}
    created_done: dict[str, float] = {}
    try:
        def create(i: int) -> None:
            name = f"bench-{i:05d}"
            started = time.time()
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                   task_body(namespace, name, [i, 1]))
            created[name] = started
            created_done[name] = time.time()

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(create, range(count)))
        finished = wait_until(lambda: len(recorder.task_done) >= count, timeout)
        rss = peak_rss_kib(operator.pid)
        cpu = cpu_seconds(operator.pid) - cpu_start
        watch_floor = floor.stop()
        control = {name: value - control_start.get(name, 0.0) for name, value in control_plane_cpu(control_plane).items()}
        counters = counter_delta(counters_before, operator_counters(metrics_port))
        time.sleep(2)  # the last event confirmations
        requests_after = apiserver_requests(api_client)
        # The operator's own Kubernetes Events (on LimeTasks), not the Job controller's,
        # the scheduler's or the kubelet's, which the cluster-wide counter includes.
        own_events = sum(1 for e in client.CoreV1Api(api_client).list_namespaced_event(namespace).items
                         if e.involved_object.kind == "LimeTask")
    finally:
        floor.stop()
        operator.stop()
        recorder.stop()
    request_cpu = request_floor(api_client, namespace, next(iter(created), None))
    to_job = [recorder.job_seen[n] - t for n, t in created.items() if n in recorder.job_seen]
    to_done = [recorder.task_done[n] - t for n, t in created.items() if n in recorder.task_done]
    successes = sum(1 for s in recorder.task_state.values() if s == "SUCCESS")
    total = (max(recorder.task_done.values()) - min(created.values())) if recorder.task_done else float("nan")
    submitted = (max(created_done.values()) - min(created.values())) if created else float("nan")
    raw = {n: dict(created=t, job=recorder.job_seen.get(n), done=recorder.task_done.get(n),
                   states=recorder.task_state_seen.get(n, {})) for n, t in created.items()}
    writes = request_delta(requests_before, requests_after, "limetasks", ("PATCH", "UPDATE", "APPLY"))
    conflicts = request_delta(requests_before, requests_after, "limetasks", ("PATCH", "UPDATE", "APPLY"), "409")
    events = request_delta(requests_before, requests_after, "events", ("POST", "CREATE"))
    return dict(control=control, counters=counters, own_events=own_events, finished=finished, to_job=to_job, to_done=to_done, successes=successes, total=total, rss_kib=rss,
                submitted=submitted, raw=raw, cpu=cpu, watch_floor=watch_floor, request_cpu=request_cpu, writes=writes, conflicts=conflicts, events=events)


class WatchFloor:
    """benchmarks/_watch_floor.py watching `namespace` beside the operator: what merely
    receiving and parsing the same watch events costs a Python process here."""

    def __init__(self, cluster, namespace: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_watch_floor.py")), namespace],
                                     env=cluster.env(), stdout=subprocess.PIPE, text=True)
        self.result: dict | None = None
        if self.proc.stdout.readline().strip() != "ready":  # its initial lists are done
            raise RuntimeError("the watch floor process did not start")

    def stop(self) -> dict:
        """{"cpu_seconds": s, "events": {plural: n}} (the first call's answer)."""
        if self.result is None:
            self.proc.terminate()
            out, _ = self.proc.communicate(timeout=30)
            self.result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"cpu_seconds": float("nan"), "events": {}}
        return self.result


def request_floor(api_client, namespace: str, name: str | None, count: int = 50) -> float:
    """CPU seconds of one API request made alone through the operator's own client
    (lime_task_operator.kube, on an event loop of its own), on this thread's clock: a
    merge patch of an annotation on a finished task, `count` times, after the operator
    stopped (so these writes are not in its counts)."""
    if name is None:
        return float("nan")
    import asyncio
    import inspect

    from lime_task_operator.kube import Kube

    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"

    async def measure() -> float:
        kube = Kube(api_client)
        try:
            async def patch(i: int) -> None:
                answer = kube._request("PATCH", path, body={"metadata": {"annotations": {"bench/floor": str(i)}}},
                                       content_type="application/merge-patch+json")
                if inspect.isawaitable(answer):  # a blocking client: an operator before 0.3, for before/after runs
                    await answer
            await patch(-1)  # the connection is open before the clock starts
            start = time.thread_time()
            for i in range(count):
                await patch(i)
            return (time.thread_time() - start) / count
        finally:
            if hasattr(kube, "close"):
                await kube.close()

    return asyncio.run(measure())


def counter_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: value - before.get(name, 0.0) for name, value in after.items() if value != before.get(name, 0.0)}


def operator_requests(counters: dict[str, float]) -> tuple[float, str]:
    """(total, 'POST jobs 200, PATCH limetasks/status 600, ...') from the operator's own
    limetask_kubernetes_api_requests_total."""
    by_call: dict[str, float] = {}
    for name, value in counters.items():
        if name.startswith("limetask_kubernetes_api_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', name))
            call = f"{labels.get('verb')} {labels.get('resource')}"
            by_call[call] = by_call.get(call, 0.0) + value
    parts = ", ".join(f"{call} {value:.0f}" for call, value in sorted(by_call.items(), key=lambda kv: -kv[1]))
    return sum(by_call.values()), parts


def run_direct_phase(api_client, cluster, namespace, count, timeout):
    batch = client.BatchV1Api(api_client)
    recorder = Recorder(api_client, namespace)
    recorder.start(tasks=False)
    settings = task_settings(cluster)
    bodies = []
    for i in range(count):
        name = f"bench-{i:05d}"
        fake_task = {"metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
                     "spec": {"task": TASK, "app": "bench", "args": [i, 1]}}
        job = build_job(fake_task, settings)
        del job["metadata"]["ownerReferences"]  # no LimeTask here: nothing owns them
        bodies.append(job)
    control_plane = {name: local_process(name, api_client) for name in ("kube-apiserver", "etcd")}
    control_start = control_plane_cpu(control_plane)
    started = time.time()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda body: batch.create_namespaced_job(namespace, body), bodies))
    submitted = time.time() - started
    finished = wait_until(lambda: len(recorder.job_complete) >= count, timeout)
    control = {name: value - control_start.get(name, 0.0) for name, value in control_plane_cpu(control_plane).items()}
    recorder.stop()
    total = (max(recorder.job_complete.values()) - started) if recorder.job_complete else float("nan")
    return dict(finished=finished, total=total, complete=len(recorder.job_complete), submitted=submitted,
                control=control)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="tasks (and direct Jobs) to run")
    parser.add_argument("--max-running", type=int, default=0, help="operator MAX_RUNNING (0 = unlimited)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per phase before giving up")
    parser.add_argument("--no-direct", action="store_true",
                        help="skip the direct-Jobs baseline (when comparing operator changes)")
    parser.add_argument("--raw", type=Path, help="also write per-task times (JSON, epoch seconds) to this file")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")

    cluster = cluster_with_crd()
    api_client = cluster.api_client()
    core = client.CoreV1Api(api_client)
    suffix = uuid.uuid4().hex[:6]
    op_ns, direct_ns = f"bench-op-{suffix}", f"bench-direct-{suffix}"
    log_path = Path(f"/tmp/{op_ns}-operator.log")
    create_namespace(core, op_ns)
    create_namespace(core, direct_ns)
    try:
        print(f"operator phase: {args.count} tasks in {op_ns} (operator log {log_path})", flush=True)
        op = run_operator_phase(api_client, cluster, op_ns, args.count, args.max_running, args.timeout, log_path)
        direct = None
        if not args.no_direct:
            print(f"direct phase: {args.count} Jobs in {direct_ns}", flush=True)
            direct = run_direct_phase(api_client, cluster, direct_ns, args.count, args.timeout)
    finally:
        delete_namespaces(core, (op_ns, direct_ns))
    if args.raw:
        args.raw.write_text(json.dumps(op["raw"], indent=1))

    print()
    print(f"tasks                      {args.count} (SUCCESS {op['successes']}, all finished: {op['finished']})")
    print(f"submission (4 threads)     {op['submitted']:.1f}s  (first create sent to last create answered)")
    print(f"create -> Job created      {summary(op['to_job'])}")
    print(f"create -> SUCCESS          {summary(op['to_done'])}")
    print(f"operator total             {op['total']:.1f}s  ({args.count / op['total']:.2f} tasks/s)")
    print(f"operator peak RSS (VmHWM)  {op['rss_kib'] / 1024:.1f} MiB")
    print(f"operator CPU per task      {op['cpu'] * 1000 / args.count:.1f} ms  ({op['cpu']:.2f}s from ready to the end)")
    requests, by_call = operator_requests(op["counters"])
    floor_ms = op["watch_floor"]["cpu_seconds"] * 1000 / args.count
    floor_events = sum(op["watch_floor"]["events"].values())
    request_ms = op["request_cpu"] * 1000 * requests / args.count
    print(f"  watch floor              {floor_ms:.1f} ms  (a bare process receiving and parsing the same "
          f"{floor_events / args.count:.1f} watch events per task, nothing else: "
          f"{op['watch_floor']['cpu_seconds'] * 1e6 / max(floor_events, 1):.0f} us per event)")
    print(f"  request floor            {request_ms:.1f} ms  ({requests / args.count:.2f} requests per task x "
          f"{op['request_cpu'] * 1e6:.0f} us, one request made alone through the operator's client)")
    print(f"  the rest                 {op['cpu'] * 1000 / args.count - floor_ms - request_ms:.1f} ms  "
          f"(decisions, cache, thread hand-offs, metrics, logging)")
    passes = op["counters"].get('limetask_reconcile_total{queue="reconcile"}', 0.0)
    print(f"operator API requests/task {requests / args.count:.2f}  ({by_call or 'no metrics'}; watches not counted)")
    watched = {re.search(r'resource="([^"]*)"', name).group(1): value for name, value in op["counters"].items()
               if name.startswith("limetask_watch_events_total{")}
    print(f"reconcile passes per task  {passes / args.count:.2f}  (watch events per task: "
          + ", ".join(f"{resource} {value / args.count:.2f}" for resource, value in sorted(watched.items())) + ")")
    print(f"LimeTask writes per task   {op['writes'] / args.count:.2f}  (409s per task {op['conflicts'] / args.count:.3f})")
    print(f"Events per task            {op['own_events'] / args.count:.2f} by the operator (KUBE_EVENTS default), "
          f"{op['events'] / args.count:.2f} in the cluster (Job controller, scheduler, kubelet included)")
    print(f"controller-manager         {controller_manager_flags(cluster.kubeconfig.parent if cluster.local else None)}")
    print(f"node                       {'kubelet (pods in containers)' if cluster.images else 'host-process (pods as processes)'}")
    if direct is None:
        return 0 if op["finished"] else 1
    print(f"direct Jobs total          {direct['total']:.1f}s  ({direct['complete']} Complete, all: {direct['finished']}; "
          f"submission {direct['submitted']:.1f}s)")
    print(f"overhead ratio             {op['total'] / direct['total']:.2f}x (operator total / direct total)")
    # What the operator's own CPU explains of the difference: on this machine's cores, its
    # CPU seconds displace that much of everyone else's work.
    cores = os.cpu_count() or 1
    print(f"operator CPU / run         {op['cpu'] / (cores * op['total']) * 100:.1f}% of {cores} cores "
          f"(the difference of the totals is {(op['total'] - direct['total']) / direct['total'] * 100:.0f}%)")
    for name in sorted(set(op["control"]) & set(direct["control"])):
        print(f"{name + ' CPU per task':<26} {op['control'][name] * 1000 / args.count:.1f} ms with the operator, "
              f"{direct['control'][name] * 1000 / args.count:.1f} ms for the direct Jobs")
    return 0 if op["finished"] and direct["finished"] else 1


if __name__ == "__main__":
    sys.exit(main())
