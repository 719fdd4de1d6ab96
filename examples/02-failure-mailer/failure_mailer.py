"""A small service that "mails" one line per failed task.

It binds a durable queue to every failure event (``core.task.#.failure.v1``) and, for
each event, sends a one-line mail. Here "sending" is printing: swap `print_mail` for
your SMTP or chat client. Run it with::

    LIME_TASK_BROKER_URL=amqp://guest:guest@127.0.0.1:24672/%2F python failure_mailer.py --to ops@example.com

Why a named queue with ``dead_letter=True``: the queue keeps failures that happen while
the mailer is down (it gets them when it comes back), and a mail that cannot be sent
(the handler raised) is parked in ``failure-mailer.dead-letter`` instead of being lost
or retried in a tight loop.

Why the message-id check: events are at-least-once (a broker or operator crash at the
wrong moment can publish an event twice, with the same message id). A mailer that
remembers the ids it handled sends one mail per failure, not two.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import OrderedDict
from typing import Callable, Optional

from lime_task.consumer import ConsumerError, consume
from lime_task.events import TaskEvent, pattern_for

log = logging.getLogger("failure_mailer")

DEFAULT_QUEUE = "failure-mailer"
DEFAULT_RECIPIENT = "ops@example.com"


def mail_line(event: TaskEvent, recipient: str) -> str:
    """The one line that is "mailed" for a failed task (pure, so it is unit-tested)."""
    error = event.error or {}
    what = error.get("type") or event.reason or "unknown error"
    message = (error.get("message") or "").strip().splitlines()
    detail = f"{what}: {message[0]}" if message else what
    return (
        f"To: {recipient} | Subject: task {event.task_name} failed for app {event.app} "
        f"(task {event.task_id}, reason {event.reason}, attempts {event.attempts}): {detail}"
    )


def print_mail(line: str) -> None:
    """The stand-in for an SMTP client."""
    print(line, flush=True)


class FailureMailer:
    """The event handler: one mail per failed task, duplicates (same message id) dropped.

    The ids are kept in memory, the last `remember` of them: enough for the duplicates
    a restart of the operator or the broker can cause, which arrive close together. A
    mailer that runs as several processes would keep them in a shared store instead.
    """

    def __init__(self, send: Callable[[str], None] = print_mail, recipient: str = DEFAULT_RECIPIENT,
                 remember: int = 10_000) -> None:
        self.send = send
        self.recipient = recipient
        self.remember = remember
        self._seen: OrderedDict[str, None] = OrderedDict()

    def __call__(self, event: TaskEvent) -> None:
        if event.succeeded:  # the binding only asks for failures; be safe if it is widened
            return
        if event.message_id and event.message_id in self._seen:
            log.info("duplicate event %s for task %s: already mailed", event.message_id, event.task_id)
            return
        # Send first, remember after: if sending raises, the message is dead-lettered
        # and a replay of it must not be taken for a duplicate.
        self.send(mail_line(event, self.recipient))
        if event.message_id:
            self._seen[event.message_id] = None
            while len(self._seen) > self.remember:
                self._seen.popitem(last=False)


def run(mailer: FailureMailer, *, queue: str = DEFAULT_QUEUE, url: Optional[str] = None,
        exchange: Optional[str] = None, max_messages: Optional[int] = None,
        timeout: Optional[float] = None) -> int:
    """Consume failure events with `mailer` until stopped; returns the number handled.

    `url` defaults to $LIME_TASK_BROKER_URL and `exchange` to $LIME_TASK_EXCHANGE, else
    ``lime_task`` (see docs/events.md).
    """
    return consume(
        mailer,
        pattern_for(failures=True),
        url=url,
        exchange=exchange,
        queue=queue,
        dead_letter=True,
        max_messages=max_messages,
        timeout=timeout,
    )


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Mail one line per failed Lime Task.")
    parser.add_argument("--to", default=DEFAULT_RECIPIENT, help="recipient of the mails")
    parser.add_argument("--queue", default=DEFAULT_QUEUE, help="durable queue name (shared by replicas)")
    parser.add_argument("--exchange", default=None, help="events exchange (default: $LIME_TASK_EXCHANGE, else lime_task)")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # pika logs several ERROR lines per failed connection attempt; the error below says it once.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    try:
        run(FailureMailer(recipient=options.to), queue=options.queue, exchange=options.exchange)
    except (ValueError, ConsumerError) as error:  # no broker URL, broker unreachable...
        print(f"failure_mailer: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
