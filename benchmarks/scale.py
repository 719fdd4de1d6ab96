"""Operator start-up beside many existing tasks (issue #9): does it serve, how fast, at what cost.

For 1k, 5k and 10k finished LimeTasks already present in the namespace (written
directly, status included, as an operator would have left them: devcluster.seeding),
starts the operator as production does (`python -m lime_task_operator --namespace NS`)
and prints:

- start → ready: process start until its health endpoint answers 200 (every informer
  has applied its first list);
- ready → new task SUCCESS: a task created right after, until its SUCCESS is seen;
- RSS after the new task finished, and the peak; CPU seconds used up to ready;
- the baseline measured in the same run: the same operator with 0 existing tasks.

`--counts 1000,5000,10000` (default) and `--keep` (leave the namespace for inspection).
Stops by itself; deletes its namespace.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import _common
from kubernetes import client

from devcluster import seeding


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int, key: str = "VmRSS:") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return -1


def measure(cluster, namespace: str, existing: int, log_dir: Path) -> dict[str, float]:
    started = time.monotonic()
    proc = _common.start_operator(cluster, namespace, log_dir / f"operator-{existing}.log")
    ready = time.monotonic() - started
    cpu_ready = cpu_seconds(proc.pid)
    try:
        with cluster.api_client() as api_client:
            custom = client.CustomObjectsApi(api_client)
            name = f"new-{uuid.uuid4().hex[:8]}"
            created = time.monotonic()
            custom.create_namespaced_custom_object(
                "limetask.dev", "v1alpha1", namespace, "limetasks",
                _common.task_body(namespace, name, [2, 3]))
            state = None
            while time.monotonic() - created < 120:
                state = (custom.get_namespaced_custom_object("limetask.dev", "v1alpha1", namespace, "limetasks",
                                                             name).get("status") or {}).get("state")
                if state in ("SUCCESS", "FAILURE"):
                    break
                time.sleep(0.05)
            first = time.monotonic() - created
        return {"existing": existing, "ready": ready, "first": first, "state": state or "none",
                "rss": rss_kib(proc.pid) / 1024, "peak": rss_kib(proc.pid, "VmHWM:") / 1024, "cpu": cpu_ready}
    finally:
        proc.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,5000,10000")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    counts = sorted(int(c) for c in args.counts.split(","))

    cluster = _common.cluster_with_crd()
    namespace = f"bench-scale-{uuid.uuid4().hex[:6]}"
    log_dir = Path(tempfile.mkdtemp(prefix="lime-scale-"))
    rows = []
    with cluster.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        _common.create_namespace(core, namespace)
        try:
            rows.append(measure(cluster, namespace, 0, log_dir))  # baseline: nothing present
            have = 0
            for count in counts:
                t0 = time.monotonic()
                seeding.create_finished(api_client, namespace, [f"old-{i:05d}" for i in range(have, count)])
                print(f"seeded {count - have} finished tasks in {time.monotonic() - t0:.0f}s", file=sys.stderr)
                have = count
                # Everything the "new" tasks of earlier rounds left counts as existing too.
                rows.append(measure(cluster, namespace, count, log_dir))
        finally:
            if not args.keep:
                _common.delete_namespaces(core, [namespace])

    print(f"operator start-up beside existing finished LimeTasks (one namespace; logs in {log_dir})")
    print(f"{'existing':>9} {'start->ready':>13} {'ready->new SUCCESS':>19} {'CPU to ready':>13} "
          f"{'RSS':>9} {'peak RSS':>9}  state")
    for row in rows:
        print(f"{row['existing']:>9} {row['ready']:>12.2f}s {row['first']:>18.2f}s {row['cpu']:>12.2f}s "
              f"{row['rss']:>7.0f}Mi {row['peak']:>7.0f}Mi  {row['state']}")
    base = rows[0]
    for row in rows[1:]:
        per = (row["rss"] - base["rss"]) * 1024 / row["existing"]
        print(f"  {row['existing']}: {per:.1f} KiB RSS per existing task over the 0-task baseline")
    return 0 if all(row["state"] == "SUCCESS" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
