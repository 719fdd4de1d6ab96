"""Kill the operator with SIGKILL in the middle of a batch, start it again: every task
still ends SUCCESS, with exactly one Job and one run each."""

from __future__ import annotations

import time

import pytest

from ._operator_helpers import Api, state

pytestmark = pytest.mark.integration

BATCH = 20


def _wait_for_jobs(api: Api, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        count = len(api.jobs())
        if count >= at_least:
            return count
        assert time.monotonic() < deadline, f"only {count} Jobs after {timeout}s"
        time.sleep(0.05)


def test_sigkill_mid_batch_then_restart_finishes_every_task_once(operator, namespace, api):
    # A limit makes the batch last long enough to be killed in the middle of it, with
    # tasks in every phase: done, running, with a Job but no status yet, queued.
    proc = operator(namespace, MAX_RUNNING=6)
    names = [api.create("sample_tasks.tasks.sleep", 0.5, name=f"b{i:02d}-{namespace[-6:]}") for i in range(BATCH)]
    _wait_for_jobs(api, 3)
    proc.kill()
    # While it is down, more tasks arrive (found by the restarted operator's listing).
    names += [api.create("sample_tasks.tasks.add", i, 1, name=f"late{i}-{namespace[-6:]}") for i in range(3)]
    proc.start()
    _wait_for_jobs(api, 10, timeout=120)
    proc.kill()  # and once more, later in the batch
    proc.start()

    deadline = time.monotonic() + 240
    while True:
        tasks = {t["metadata"]["name"]: t for t in api.tasks()}
        if len(tasks) == len(names) and all(state(t) in ("SUCCESS", "FAILURE") for t in tasks.values()):
            break
        assert time.monotonic() < deadline, f"unfinished: {[(n, state(t)) for n, t in tasks.items() if state(t) not in ('SUCCESS', 'FAILURE')]}"
        time.sleep(0.3)

    assert sorted(tasks) == sorted(names)
    failures = {n: t["status"] for n, t in tasks.items() if state(t) != "SUCCESS"}
    assert failures == {}
    jobs_by_task: dict[str, list[str]] = {}
    for job in api.jobs():
        jobs_by_task.setdefault(job.metadata.labels["limetask.dev/task-id"], []).append(job.metadata.name)
    assert jobs_by_task == {n: [f"lt-{n}"] for n in names}
    for name, task in tasks.items():
        assert task["status"]["attempts"] == 1, (name, task["status"])
        assert len(api.pods(name)) == 1, name
