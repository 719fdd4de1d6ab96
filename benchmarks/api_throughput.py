"""What the HTTP API's extra hop costs: POST /v1/tasks and GET /v1/tasks/{id} through
the API against the same create and get done directly on the API server, in one run.

    python benchmarks/api_throughput.py [--clients 8] [--requests 50]

In a fresh namespace it creates a ServiceAccount, a bound token for the API's audience
(`kubectl create token --audience lime-task-api`), and starts the API as in production
(`python -m lime_task_api --config ...`, one uvicorn process) on a free loopback port,
with that identity mapped to one app. Then --clients threads each send
--requests tasks, then read each of them once:

- through the API: one keep-alive HTTP connection per client, Bearer token (TokenReview
  once, then its cached verdict: tokenCacheSeconds, 10 s by default);
- directly: the library's own path (lime_task.sending.build_spec + lime_task.kube
  create_task / get_task) on one shared Kubernetes client, as the API itself uses.

It prints requests per second and p50/p95/max latency per operation and path, and the
ratios. No operator runs (the tasks stay PENDING): only the request path is measured.
Bounded: every request times out after 60 s; loopback only; the namespace is deleted
and the API stopped before exiting.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import _common
from _common import REPO, summary

sys.path.insert(0, str(REPO / "tests" / "integration"))

TASK = "sample_tasks.tasks.add"
APP = "bench"
REQUEST_TIMEOUT = 60


@dataclass
class Phase:
    """Latencies (seconds) of one operation on one path, and its wall time."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed > 0 else float("nan")

    def line(self) -> str:
        failed = f"  errors {len(self.errors)} (first: {self.errors[0]})" if self.errors else ""
        return f"{self.name:<12} {self.rate:8.1f} req/s  " + summary([v * 1000 for v in self.latencies], "ms") + failed


def run_phase(name: str, clients: int, per_client: Callable[[int], Callable[[int], None]], requests: int) -> Phase:
    """`clients` threads; thread c calls per_client(c)(i) for i in range(requests),
    timing each call. Exceptions are counted, not raised."""
    phase = Phase(name)
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def worker(number: int) -> None:
        call = per_client(number)
        barrier.wait()
        for index in range(requests):
            started = time.perf_counter()
            try:
                call(index)
            except Exception as error:  # noqa: BLE001 - reported in the summary
                with lock:
                    phase.errors.append(f"{type(error).__name__}: {error}"[:200])
                continue
            with lock:
                phase.latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=worker, args=(number,), daemon=True) for number in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT * requests)
    phase.elapsed = time.perf_counter() - started
    return phase


class HttpClient:
    """One keep-alive connection to the API (http.client), JSON in and out."""

    def __init__(self, port: int, token: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body=None, expect: int = 200) -> dict:
        data = None if body is None else json.dumps(body)
        self.connection.request(method, path, body=data, headers=self.headers)
        response = self.connection.getresponse()
        payload = response.read()
        if response.status != expect:
            raise RuntimeError(f"{method} {path}: {response.status} {payload[:200]!r}")
        return json.loads(payload)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (threads)")
    parser.add_argument("--requests", type=int, default=50, help="tasks each client sends (then reads)")
    options = parser.parse_args(argv)
    if not 1 <= options.clients <= 64 or not 1 <= options.requests <= 1000:
        parser.error("--clients must be 1..64 and --requests 1..1000")

    from kubernetes import client as k8s

    from _api_helpers import ApiProcess, service_account_token
    from lime_task import kube
    from lime_task.sending import build_spec, build_task_object, new_task_id
    from lime_task_api.kube import connect

    cluster = _common.cluster_with_crd()
    core = k8s.CoreV1Api(cluster.api_client())
    namespace = f"bench-api-{uuid.uuid4().hex[:6]}"
    _common.create_namespace(core, namespace)
    work = Path(tempfile.mkdtemp(prefix="lime-api-bench-"))
    api = None
    try:
        token = service_account_token(cluster, namespace, "bench-client")
        identity = f"system:serviceaccount:{namespace}:bench-client"
        api = ApiProcess(cluster.env(), {"namespace": namespace, "audiences": ["lime-task-api"],
                                         "identities": {identity: [APP]}}, work).start()
        print(f"namespace {namespace}; {options.clients} clients x {options.requests} tasks; API on {api.url}")

        created_http: list[list[str]] = [[] for _ in range(options.clients)]
        created_direct: list[list[str]] = [[] for _ in range(options.clients)]
        body = {"task": TASK, "args": [1, 2]}

        def http_post(number: int):
            http = HttpClient(api.port, token)
            return lambda index: created_http[number].append(http.call("POST", "/v1/tasks", body, 201)["id"])

        def http_get(number: int):
            http = HttpClient(api.port, token)
            return lambda index: http.call("GET", f"/v1/tasks/{created_http[number][index]}")

        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        connection = connect(pool_size=max(16, options.clients * 2))

        def direct_post(number: int):
            def post(index: int) -> None:
                spec = build_spec(TASK, APP, [1, 2])
                created = kube.create_task(connection, namespace, build_task_object(spec, new_task_id(), namespace))
                created_direct[number].append(created["metadata"]["name"])
            return post

        def direct_get(number: int):
            return lambda index: kube.get_task(connection, namespace, created_direct[number][index])

        # Warm both paths (imports, TLS sessions, the token's TokenReview) before timing.
        HttpClient(api.port, token).call("GET", "/v1/tasks?limit=1")
        kube.list_tasks(connection, namespace)

        phases = [
            run_phase("POST direct", options.clients, direct_post, options.requests),
            run_phase("POST api", options.clients, http_post, options.requests),
            run_phase("GET direct", options.clients, direct_get, options.requests),
            run_phase("GET api", options.clients, http_get, options.requests),
        ]
        print(f"{'':<12} {'rate':>14}  latency")
        for phase in phases:
            print(phase.line())
        by_name = {phase.name: phase for phase in phases}
        for operation in ("POST", "GET"):
            direct, via = by_name[f"{operation} direct"], by_name[f"{operation} api"]
            p50 = _common.percentile(via.latencies, 50) / _common.percentile(direct.latencies, 50)
            print(f"{operation}: through the API {via.rate / direct.rate:.2f}x the direct rate, p50 latency {p50:.2f}x")
        return 1 if any(phase.errors for phase in phases) else 0
    finally:
        if api is not None:
            api.stop()
        _common.delete_namespaces(core, [namespace])


if __name__ == "__main__":
    sys.exit(main())
