"""A keyed work queue: the reconciler's scheduling, in the style of controller-runtime.

Why not one kopf handler per event: a task's state depends on three kinds of objects
(the LimeTask, its Job, its pods) whose events arrive on separate watches, and a burst
of them must lead to one decision on the latest state, never two concurrent ones.
Here a key is queued at most once, is never processed by two workers at once, and a
key nudged while being processed runs once more afterwards. Failures are retried with
a per-key exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Hashable

from . import metrics

log = logging.getLogger(__name__)

BACKOFF_START = 1.0
BACKOFF_MAX = 60.0


class Retry(Exception):
    """Raised by a handler: handle the key again after the queue's backoff.

    An expected, temporary condition (a broker outage, a quota, a conflict): logged as
    one line, without a traceback. ``delay`` overrides the backoff for this retry.
    """

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class WorkQueue:
    def __init__(self, name: str, handler: Callable[[Hashable], Awaitable[None]], workers: int) -> None:
        if workers < 1:
            raise ValueError(f"work queue {name!r} needs at least one worker, got {workers}")
        self.name = name
        self._handler = handler
        self._workers = workers
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._active: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task] = []
        self._passes = metrics.RECONCILES.labels(queue=name)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"{self.name}-worker-{i}") for i in range(self._workers)
        ]

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def nudge(self, key: Hashable) -> None:
        """Process `key` soon (once, however often it is nudged meanwhile)."""
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def nudge_later(self, key: Hashable, delay: float) -> None:
        """Process `key` after `delay` seconds; an earlier pending timer is replaced."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(max(0.0, delay), self._fire, key)

    def forget(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.nudge(key)

    def pending_retry(self, key: Hashable) -> bool:
        """Whether `key` waits for a timer (a backoff or a requested later look)."""
        return key in self._timers

    def backoff(self, key: Hashable) -> float:
        """The delay the next failure of `key` will wait (seconds)."""
        return min(BACKOFF_MAX, BACKOFF_START * 2 ** self._failures.get(key, 0))

    def attempt(self, key: Hashable) -> int:
        """1 + how many times in a row `key` has failed so far."""
        return self._failures.get(key, 0) + 1

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            self._passes.inc()
            try:
                await self._handler(key)
            except asyncio.CancelledError:
                raise
            except Retry as retry:
                metrics.RECONCILE_ERRORS.labels(kind="Retry").inc()
                delay = self.backoff(key) if retry.delay is None else retry.delay
                self._failures[key] = self._failures.get(key, 0) + 1
                log.info("%s of %s: %s; again in %.1fs", self.name, key, retry, delay)
                self.nudge_later(key, delay)
            except Exception as error:
                metrics.RECONCILE_ERRORS.labels(kind=type(error).__name__).inc()
                delay = self.backoff(key)
                self._failures[key] = self._failures.get(key, 0) + 1
                log.exception("%s of %s failed (attempt %d); retrying in %.0fs", self.name, key,
                              self._failures[key], delay)
                self.nudge_later(key, delay)
            else:
                self._failures.pop(key, None)
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.nudge(key)
