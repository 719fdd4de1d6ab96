"""The floor under the operator's CPU: receiving the watch events of a burst, nothing else.

    python benchmarks/_watch_floor.py NAMESPACE   (started by operator_throughput.py)

Lists and then watches the three streams the operator watches in NAMESPACE (LimeTasks,
and the Jobs and pods labelled as the operator's), each in its own thread, through the
same transport as the operator (the kubernetes client's configuration and urllib3 pool,
the API server's newline-delimited JSON, the standard library's decoder), and for each
event only parses it and counts it: no views, no cache, no decisions, no writes. On
SIGTERM it prints one line of JSON, ``{"cpu_seconds": …, "events": {plural: n}}``: its
CPU from the end of its initial lists to the signal, which is what any Python watcher of
these streams pays on this machine, measured in the same run as the operator.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time

import kubernetes
import urllib3

from lime_task.constants import GROUP, LABEL_MANAGED_BY, MANAGED_BY, PLURAL, VERSION

LABELLED = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
STREAMS = ((f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{PLURAL}", ""),
           ("/apis/batch/v1/namespaces/{ns}/jobs", LABELLED),
           ("/api/v1/namespaces/{ns}/pods", LABELLED))


def main(namespace: str) -> None:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    api = kubernetes.client.ApiClient()
    counts = {path.rsplit("/", 1)[1]: 0 for path, _ in STREAMS}
    listed = threading.Barrier(len(STREAMS) + 1)

    def get(path: str, query: list[tuple[str, str]], stream: bool):
        method, url, headers, _, _ = api.param_serialize(
            method="GET", resource_path=path, query_params=query,
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        return api.rest_client.pool_manager.request(
            method, url, headers=headers, preload_content=not stream,
            timeout=urllib3.Timeout(connect=10, read=600))

    def watch(path: str, selector: str) -> None:
        plural = path.rsplit("/", 1)[1]
        query = [("labelSelector", selector)] if selector else []
        version = json.loads(get(path, query, False).data)["metadata"]["resourceVersion"]
        listed.wait()
        response = get(path, query + [("watch", "1"), ("resourceVersion", version)], True)
        pending = b""
        for chunk in response.stream(64 * 1024):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if line.strip():
                    json.loads(line)
                    counts[plural] += 1

    for path, selector in STREAMS:
        threading.Thread(target=watch, args=(path.format(ns=namespace), selector), daemon=True).start()
    listed.wait()
    start = time.process_time()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    print(json.dumps({"cpu_seconds": time.process_time() - start, "events": counts}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
