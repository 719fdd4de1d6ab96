"""Admission: which waiting tasks may start now under MAX_RUNNING / MAX_RUNNING_PER_APP.

Pure: the reconciler passes a snapshot of every task it knows and gets back the ones
that may get a Job now. A task counts as running from its Job's creation until its
terminal state, so a Job that is still waiting for a node already holds its slot.

Order: waiting tasks start in creation order. One app at its own limit does not block
the others (no head-of-line blocking across apps); within an app the order is strict.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Hashable, Iterable


@dataclass(frozen=True)
class Entry:
    key: Hashable
    app: str
    # Sortable creation order (creationTimestamp first, then a tie-breaker).
    order: tuple
    # Has a Job (or one is being created) and is not terminal.
    running: bool
    # Not terminal and has no Job yet.
    waiting: bool


def admit(entries: Iterable[Entry], max_running: int, max_running_per_app: int) -> list[Hashable]:
    """The keys of the waiting entries that may start now, in the order to start them.

    A limit of 0 means unlimited.
    """
    entries = list(entries)
    running = [e for e in entries if e.running]
    total = len(running)
    per_app = Counter(e.app for e in running)
    admitted: list[Hashable] = []
    for entry in sorted((e for e in entries if e.waiting), key=lambda e: e.order):
        if max_running and total >= max_running:
            break
        if max_running_per_app and per_app[entry.app] >= max_running_per_app:
            continue
        admitted.append(entry.key)
        total += 1
        per_app[entry.app] += 1
    return admitted


def queue_message(max_running: int, max_running_per_app: int, app: str) -> str:
    """Why a task waits, for its Succeeded condition."""
    limits = []
    if max_running:
        limits.append(f"MAX_RUNNING={max_running}")
    if max_running_per_app:
        limits.append(f"MAX_RUNNING_PER_APP={max_running_per_app} for app {app!r}")
    return "waiting for a free slot (" + ", ".join(limits) + ")"
