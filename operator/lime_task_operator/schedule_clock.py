"""The schedules' clock, and its TEST-ONLY fast-forward hook.

Schedules run on wall-clock UTC. An integration test cannot wait minutes for each run
of a `* * * * *` schedule, so the operator reads one test-only setting:

    LIME_TASK_OPERATOR_TEST_ONLY_SCHEDULE_CLOCK="<anchor>:<speed>"

``anchor`` is a Unix time in seconds and ``speed`` a factor >= 1: the schedules then see
``anchor + (real - anchor) * speed``, so with speed 60 a minute of schedule time passes
in one real second. The anchor is fixed by the test, so an operator restarted (or a
second one started) with the same value sees the same, continuous time: "exactly one
task per due time across a restart" is tested on the real code path. Everything the
schedules write (lastScheduleTime, task names) is in that fast time; tasks, Jobs and
every other part of the operator keep real time. Never set it in production: the chart
has no value for it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Mapping, Optional

ENV_TEST_CLOCK = "LIME_TASK_OPERATOR_TEST_ONLY_SCHEDULE_CLOCK"


@dataclass(frozen=True)
class ScheduleClock:
    """``now()`` for schedule decisions (aware UTC) and ``real_seconds(s)``: how long to
    sleep for `s` seconds of schedule time. Default: the wall clock, speed 1."""

    anchor: float = 0.0
    speed: float = 1.0
    wall: Callable[[], float] = time.time

    def now(self) -> datetime:
        real = self.wall()
        return datetime.fromtimestamp(self.anchor + (real - self.anchor) * self.speed, timezone.utc)

    def real_seconds(self, schedule_seconds: float) -> float:
        return max(0.0, schedule_seconds / self.speed)

    @property
    def scaled(self) -> bool:
        return self.speed != 1.0


def from_environ(environ: Optional[Mapping[str, str]] = None) -> ScheduleClock:
    """The clock the settings ask for; ValueError naming the variable when its value is
    not ``<anchor seconds>:<speed >= 1>``."""
    env = os.environ if environ is None else environ
    text = (env.get(ENV_TEST_CLOCK) or "").strip()
    if not text:
        return ScheduleClock()
    anchor_text, _, speed_text = text.partition(":")
    try:
        anchor, speed = float(anchor_text), float(speed_text)
    except ValueError:
        raise ValueError(f"{ENV_TEST_CLOCK} must be '<anchor unix seconds>:<speed>', got {text!r}") from None
    if not (math.isfinite(anchor) and math.isfinite(speed)) or anchor < 0 or speed < 1:
        raise ValueError(f"{ENV_TEST_CLOCK}: anchor must be a Unix time >= 0 and speed a number >= 1, got {text!r}")
    return ScheduleClock(anchor, speed)
