"""Mail one line for each failed run of one LimeTaskSchedule (the nightly report).

The original Lime Task's advice for scheduled tasks: build an event handler that reacts
when one fails. This consumer binds a durable queue to the failure events of the
schedule's task function only (``core.task.<task>.failure.v1``) and keeps the events of
that schedule's runs: a run's task id is ``<schedule>-<minutes>`` (or
``<schedule>-manual-xxxxx`` for ``lime-task schedule run-now``), which
``lime_task.schedules.belongs_to_schedule`` recognises, so the same task function sent
by hand or by another schedule mails nobody. Run it with::

    LIME_TASK_BROKER_URL=amqp://... python report_failures.py --schedule nightly-report \\
        --task sample_tasks.tasks.fail --to reports@example.com
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Optional

from lime_task.events import ConsumerError, TaskEvent, consume, pattern_for
from lime_task.schedules import belongs_to_schedule

log = logging.getLogger("report_failures")


def mail_line(event: TaskEvent, schedule: str, recipient: str) -> str:
    """The line "mailed" for a failed run (pure, unit-tested)."""
    error = event.error or {}
    first = (error.get("message") or "").strip().splitlines()
    what = error.get("type") or event.reason or "unknown error"
    detail = f"{what}: {first[0]}" if first else what
    return (f"To: {recipient} | Subject: schedule {schedule}: run {event.task_id} failed "
            f"(reason {event.reason}, attempts {event.attempts}): {detail}")


class RunFailureMailer:
    """The handler: one mail per failed run of `schedule`; other tasks' failures and
    repeated deliveries (the same message id) are dropped."""

    def __init__(self, schedule: str, send: Callable[[str], None] = print, recipient: str = "ops@example.com") -> None:
        self.schedule, self.send, self.recipient = schedule, send, recipient
        self._seen: set[str] = set()

    def __call__(self, event: TaskEvent) -> None:
        if event.succeeded or not belongs_to_schedule(self.schedule, event.task_id):
            return
        if event.message_id and event.message_id in self._seen:
            return
        self.send(mail_line(event, self.schedule, self.recipient))
        if event.message_id:
            self._seen.add(event.message_id)


def run(mailer: RunFailureMailer, task: str, *, queue: Optional[str] = None, url: Optional[str] = None,
        exchange: Optional[str] = None, max_messages: Optional[int] = None, timeout: Optional[float] = None) -> int:
    """Consume the failures of `task` with `mailer`; the number of events handled."""
    return consume(mailer, pattern_for(failures=True, task=task), url=url, exchange=exchange,
                   queue=queue or f"{mailer.schedule}-failures", dead_letter=True,
                   max_messages=max_messages, timeout=timeout)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Mail one line per failed run of a LimeTaskSchedule.")
    parser.add_argument("--schedule", default="nightly-report", help="the LimeTaskSchedule's name")
    parser.add_argument("--task", default="sample_tasks.tasks.fail", help="its taskTemplate.task")
    parser.add_argument("--to", default="ops@example.com", help="recipient of the mails")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    try:
        run(RunFailureMailer(options.schedule, recipient=options.to), options.task)
    except (ValueError, ConsumerError) as error:
        print(f"report_failures: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
