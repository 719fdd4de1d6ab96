"""The reconciler's keyed work queue: coalescing, per-key exclusion, retry on failure."""

import asyncio

import pytest

from lime_task_operator import workqueue
from lime_task_operator.workqueue import WorkQueue


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_nudges_of_a_queued_key_coalesce():
    async def scenario():
        seen = []

        async def handler(key):
            seen.append(key)

        q = WorkQueue("t", handler, workers=2)
        for _ in range(5):
            q.nudge("a")
        q.nudge("b")
        q.start()
        while len(seen) < 2 or q.depth:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        await q.stop()
        return seen

    assert sorted(run(scenario())) == ["a", "b"]


def test_a_key_is_never_processed_twice_at_once_and_reruns_if_nudged_meanwhile():
    async def scenario():
        active, overlaps, runs = set(), [], []
        release = asyncio.Event()

        async def handler(key):
            if key in active:
                overlaps.append(key)
            active.add(key)
            runs.append(key)
            if len(runs) == 1:
                await release.wait()
            active.discard(key)

        q = WorkQueue("t", handler, workers=4)
        q.start()
        q.nudge("a")
        await asyncio.sleep(0.05)
        q.nudge("a")  # while the first run is still busy
        q.nudge("a")
        await asyncio.sleep(0.05)
        release.set()
        while len(runs) < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        await q.stop()
        return overlaps, runs

    overlaps, runs = run(scenario())
    assert overlaps == []
    assert runs == ["a", "a"]


def test_a_failing_key_is_retried_with_backoff(monkeypatch):
    monkeypatch.setattr(workqueue, "BACKOFF_START", 0.01)

    async def scenario():
        calls = []

        async def handler(key):
            calls.append(key)
            if len(calls) < 3:
                raise RuntimeError("API unavailable")

        q = WorkQueue("t", handler, workers=1)
        q.start()
        q.nudge("a")
        while len(calls) < 3:
            await asyncio.sleep(0.01)
        await q.stop()
        return calls

    assert run(scenario()) == ["a", "a", "a"]


def test_forget_cancels_a_pending_timer():
    async def scenario():
        calls = []

        async def handler(key):
            calls.append(key)

        q = WorkQueue("t", handler, workers=1)
        q.start()
        q.nudge_later("a", 0.05)
        q.forget("a")
        await asyncio.sleep(0.15)
        await q.stop()
        return calls

    assert run(scenario()) == []


def test_needs_a_worker():
    with pytest.raises(ValueError, match="at least one worker"):
        WorkQueue("t", None, workers=0)


def test_each_pass_is_counted_once_under_the_queues_name():
    from lime_task_operator import metrics

    def passes():
        return metrics.REGISTRY.get_sample_value("limetask_reconcile_total", {"queue": "counted"}) or 0.0

    async def scenario():
        async def handler(key):
            pass

        q = WorkQueue("counted", handler, workers=1)
        for _ in range(3):
            q.nudge("a")  # coalesced: one pass
        q.nudge("b")
        q.start()
        while q.depth or q._active:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.02)
        await q.stop()

    before = passes()
    run(scenario())
    assert passes() - before == 2
