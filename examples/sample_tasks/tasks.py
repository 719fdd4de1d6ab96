"""Sample tasks, one per behaviour the runner and the operator must handle.

Every task takes the application object first, as all Lime Tasks do.
"""

import asyncio
import time

from lime_task import task


@task
def add(app, a, b):
    """Success with a small summary, the way tasks should report."""
    return {"app": app.name, "sum": a + b, "description": f"added {a} and {b}"}


@task
def hello(app, name):
    return f"hello {name} from {app.name}"


@task
def fail(app, message):
    """A task that raises: exit code 1, reason TaskRaised, retried up to `retries`."""
    raise ValueError(message)


@task
def sleep(app, seconds):
    """Runs for a while: for timeouts, cancellation and concurrency limits."""
    time.sleep(seconds)
    return {"slept": seconds}


@task
async def async_add(app, a, b):
    await asyncio.sleep(0)
    return {"app": app.name, "sum": a + b}


def not_a_task(app):
    """Importable but not decorated: the runner must refuse it (exit 3)."""
    raise AssertionError("not_a_task must never run")


@task
def flaky(app, until):
    """Fails while the clock is before `until` (seconds since the epoch), then succeeds.

    Attempts run in separate pods that share nothing but the clock, so a retry is told
    apart from the first attempt by time: send it with `until` a few seconds ahead and
    `retries` >= 1; the Job controller waits at least 10 s before a retry.
    Returns ``{"failedUntil": until, "ranAt": <epoch seconds>}``.
    """
    now = time.time()
    if now < until:
        raise RuntimeError(f"fails on purpose until {until:.3f} (now {now:.3f})")
    return {"failedUntil": until, "ranAt": now}


@task
def huge_result(app):
    """A result larger than the 4096-byte termination message: exit 4, InvalidResult."""
    return {"data": "x" * 10_000}


@task
def unserialisable(app):
    """A result that is not JSON: exit 4, InvalidResult."""
    return {"values": {1, 2, 3}}
