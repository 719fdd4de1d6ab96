"""Consuming task events: bind a handler to routing-key patterns on the events exchange.

The contract (routing keys, message ids, the body and its parsed form `TaskEvent`) is
:mod:`lime_task.events`; this module is the I/O on top of it, with pika.

Threads. pika's `BlockingConnection` is not thread-safe, and it answers the broker's
heartbeats only while its own thread is inside `process_data_events`. A handler run on
that thread and slower than the heartbeat timeout (60 s by default, often less) loses
the connection, and its event, never acknowledged, is delivered again. So
:meth:`EventConsumer.run` keeps the connection on the calling thread (the *connection
thread*, which does nothing but pika I/O) and gives each event to one *handler thread*.
When the handler returns, the handler thread asks the connection thread to acknowledge
(or reject) the message with `connection.add_callback_threadsafe`, the one thread-safe
method of a `BlockingConnection` (pika's documented pattern for acknowledging from
another thread: its ``basic_consume_ack_threaded`` example). A handler may therefore
take any time; events are handled one at a time, in delivery order.

Reconnecting. `run()` does not reconnect on its own: a lost connection ends it with a
:class:`ConsumerError` saying so, and whatever was not acknowledged goes back to the
queue. Calling `run()` again (or restarting the service) opens a new connection and
declares the queue again. This keeps the one retry policy with the caller (a supervisor,
or Kubernetes restarting the pod) and never hides a gap: a temporary queue loses the
events published while nobody was connected, a named queue keeps them.
"""

from __future__ import annotations

import logging
import queue as _queue
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterable, Optional

import pika
import pika.exceptions

from .events import TaskEvent, pattern_for, redact_url, resolve_broker_url, resolve_exchange

__all__ = [
    "ConsumerError",
    "EventConsumer",
    "Handler",
    "TaskEvent",
    "consume",
    "dead_letter_names",
    "describe_broker_error",
    "pattern_for",
]

log = logging.getLogger(__name__)

Handler = Callable[[TaskEvent], Any]

# How long the connection thread waits for I/O before it looks at the deadline again
# (seconds). It wakes at once for a delivery or a finished handler, so this only bounds
# how late a `timeout` is noticed while idle.
TICK_SECONDS = 0.5

# RabbitMQ closes a channel with 406 PRECONDITION_FAILED and this text when a delivery
# stayed unacknowledged longer than its `consumer_timeout` (default 30 minutes since
# RabbitMQ 3.8.15; https://www.rabbitmq.com/docs/consumers#acknowledgement-timeout).
_ACK_TIMEOUT_TEXT = "delivery acknowledgement"


class ConsumerError(Exception):
    """The consumer could not connect, declare or bind, or lost its connection while
    running; the message says what happened and what to do."""


def dead_letter_names(queue: str) -> tuple[str, str]:
    """(exchange, queue) that receive the messages a handler of `queue` failed on."""
    return f"{queue}.dead-letter", f"{queue}.dead-letter"


def describe_broker_error(error: BaseException, url: str) -> str:
    """One sentence for a pika error met while consuming (the password never appears).

    `error` is any exception pika raises (`pika.exceptions.AMQPError` and subclasses);
    `url` is the broker URL, shown redacted.
    """
    where = redact_url(url)
    exc = pika.exceptions
    if isinstance(error, exc.ChannelClosedByBroker):
        if error.reply_code == 406 and _ACK_TIMEOUT_TEXT in str(error.reply_text):
            return (
                "the broker closed the events channel because an event stayed unacknowledged "
                f"longer than its consumer_timeout ({error.reply_code} {error.reply_text}): raise "
                "consumer_timeout in rabbitmq.conf for handlers that take that long, and use "
                "prefetch=1 so that no event waits behind a slow one"
            )
        return f"the broker closed the events channel: {error.reply_code} {error.reply_text}"
    if isinstance(error, exc.ConnectionClosedByBroker):
        return f"the broker at {where} closed the connection: {error.reply_code} {error.reply_text}"
    if isinstance(error, exc.AMQPHeartbeatTimeout):
        return f"the connection to the broker at {where} timed out (no heartbeat from the broker): {error}"
    if isinstance(error, exc.StreamLostError):
        return f"lost the connection to the broker at {where}: {error}"
    if isinstance(error, (exc.ConnectionWrongStateError, exc.ChannelWrongStateError)):
        return f"the connection to the broker at {where} is closed: {error}"
    if isinstance(error, exc.AMQPConnectionError):
        return f"the connection to the broker at {where} failed: {error!r}"
    return f"broker error on {where}: {error!r}"


# What a handler thread reports back for one event.
_DONE, _RAISED, _CRASHED = "done", "raised", "crashed"


@dataclass
class _Delivery:
    event: TaskEvent
    delivery_tag: int


class _HandlerThread:
    """The thread that runs the user's handler, one event at a time.

    It never touches the channel: it reports each outcome to the connection thread with
    `add_callback_threadsafe`. A daemon thread, so that a handler still running when the
    caller gives up (interrupt, lost connection) cannot keep the process alive.
    """

    def __init__(self, connection, handler: Handler, report: Callable[..., None]) -> None:
        self._connection = connection
        self._handler = handler
        self._report = report
        self._inbox: _queue.SimpleQueue = _queue.SimpleQueue()
        self._idle = threading.Event()  # no handler running or about to run
        self._idle.set()
        self._thread = threading.Thread(target=self._loop, name="lime-task-event-handler", daemon=True)
        self._thread.start()

    def submit(self, delivery: _Delivery) -> None:
        self._idle.clear()
        self._inbox.put(delivery)

    def wait_idle(self) -> None:
        """Returns once the handler given the last event has returned (at once if none runs)."""
        self._idle.wait()

    def stop(self) -> None:
        """Ends the thread after the current handler; does not wait for it."""
        self._inbox.put(None)

    def _loop(self) -> None:
        while (delivery := self._inbox.get()) is not None:
            outcome, error = _DONE, None
            try:
                self._handler(delivery.event)
            except Exception as exc:
                outcome, error = _RAISED, exc
            except BaseException as exc:  # handed to the caller's thread, re-raised there
                outcome, error = _CRASHED, exc
            self._idle.set()
            try:
                self._connection.add_callback_threadsafe(partial(self._report, delivery, outcome, error))
            except Exception:
                # The connection closed meanwhile (the caller stopped): the broker has
                # put the unacknowledged message back in the queue.
                log.debug("event %s handled after its connection closed", delivery.event.message_id)
            if outcome == _CRASHED:
                return


class _Run:
    """The state of one `run()`, touched only on the connection thread."""

    def __init__(self, max_messages: Optional[int], deadline: Optional[float]) -> None:
        self.max_messages = max_messages
        self.deadline = deadline
        self.waiting: list[_Delivery] = []  # delivered, not yet given to the handler
        self.busy = False  # a handler is running
        self.handled = 0
        self.crash: Optional[BaseException] = None
        self.cancelled_by_broker = False

    def may_start(self) -> bool:
        if self.busy or self.crash is not None or self.cancelled_by_broker:
            return False
        if self.max_messages is not None and self.handled >= self.max_messages:
            return False
        return self.deadline is None or time.monotonic() < self.deadline

    def finished(self) -> bool:
        if self.crash is not None or self.cancelled_by_broker:
            return True
        if self.busy:  # a running handler is always allowed to finish and be acknowledged
            return False
        if self.max_messages is not None and self.handled >= self.max_messages:
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline

    def wait_seconds(self) -> float:
        if self.deadline is None or self.busy:
            return TICK_SECONDS
        return max(0.0, min(TICK_SECONDS, self.deadline - time.monotonic()))


class EventConsumer:
    """A queue bound to routing-key patterns on the events exchange.

    `patterns`: routing-key patterns (:func:`lime_task.events.pattern_for` builds them).
    `url`: the broker URL, else ``$LIME_TASK_BROKER_URL``; pika URL options apply, e.g.
    ``?heartbeat=30``. `exchange`: else ``$LIME_TASK_EXCHANGE``, else ``lime_task``.

    `queue` given: a durable queue of that name, which keeps events while no consumer
    runs (a service that must not miss events). No `queue`: a server-named exclusive
    queue that disappears with the connection (watching events live, as the CLI does).
    One consumer can `run()` several times while it stays open.

    The handler runs on a thread of its own (see the module docstring), so it may take
    any time: the connection keeps answering heartbeats meanwhile. A message is
    acknowledged only after its handler returned. `prefetch` (default 10) bounds how
    many delivered, unacknowledged events this consumer holds; give ``prefetch=1`` to
    handlers that take minutes, so that waiting events go to other consumers of the same
    queue and none waits long enough to hit the broker's ``consumer_timeout``.

    A handler that raises gets its message rejected without requeue (requeueing would
    redeliver the same poison message forever). With `dead_letter=True` (named queues
    only) the broker moves such messages to the queue ``{queue}.dead-letter`` for later
    inspection; without it they are logged and dropped.

    Delivery is at least once: an event can arrive twice (the publisher's rare
    duplicate, or a redelivery after this process died or lost its connection inside a
    handler). Both copies have the same `message_id`; a handler that must not act twice
    remembers the ids it handled::

        seen = set()                       # or a table with a unique key, shared by replicas

        def handle(event):
            if event.message_id in seen:
                return                     # a duplicate: acknowledged, not acted on
            act_on(event)
            seen.add(event.message_id)     # after acting: a failed attempt is not "seen"

    Open it (``with EventConsumer(...) as consumer``) before the events you want are
    published: the binding must exist when the broker routes them.

    Raises `ValueError` for bad arguments (at construction) and :class:`ConsumerError`
    for anything the broker or the connection does (at `open()`, `run()`, `pending()`).
    """

    def __init__(
        self,
        patterns: Iterable[str],
        *,
        url: Optional[str] = None,
        exchange: Optional[str] = None,
        queue: Optional[str] = None,
        dead_letter: bool = False,
        prefetch: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        self.patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        if not self.patterns:
            raise ValueError("no routing-key patterns to bind: use pattern_for(...) to build some")
        self.url = resolve_broker_url(url)
        try:
            pika.URLParameters(self.url)
        except Exception as exc:  # pika raises ValueError and others for unusable options
            raise ValueError(f"the broker URL {redact_url(self.url)} is not usable: {exc}") from None
        self.exchange = resolve_exchange(exchange)
        if queue is not None and not queue.strip():
            raise ValueError("queue name is empty: pass None for a temporary queue")
        if dead_letter and not queue:
            raise ValueError(
                "dead_letter needs a named queue: dead-lettered messages of a temporary "
                "queue would have no lasting place to go"
            )
        if not isinstance(prefetch, int) or isinstance(prefetch, bool) or not 1 <= prefetch <= 65535:
            # basic.qos prefetch-count is an AMQP short (16 bits); 0 would mean unbounded.
            raise ValueError(f"prefetch must be a whole number from 1 to 65535, got {prefetch!r}")
        self.queue_name = queue
        self.dead_letter = dead_letter
        self.prefetch = prefetch
        self.connect_timeout = connect_timeout
        self._connection = None
        self._channel = None
        self._run: Optional[_Run] = None  # the run() in progress, if any
        self.queue: Optional[str] = None  # the actual queue name once open

    # -- setup ----------------------------------------------------------------------

    def open(self) -> "EventConsumer":
        """Connect, declare the exchange and queue, bind the patterns; returns self."""
        params = pika.URLParameters(self.url)  # checked in __init__
        params.socket_timeout = self.connect_timeout
        params.stack_timeout = self.connect_timeout
        try:
            self._connection = pika.BlockingConnection(params)
            self._channel = self._connection.channel()
            self._channel.add_on_cancel_callback(self._on_broker_cancel)
            self._declare(self._channel)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self.close()
            hint = (
                " (a durable queue keeps the arguments it was created with: delete it to change dead_letter)"
                if exc.reply_code == 406
                else ""
            )
            raise ConsumerError(
                f"broker refused to set up the events queue: {exc.reply_code} {exc.reply_text}{hint}"
            ) from None
        except pika.exceptions.AMQPError as exc:
            self.close()
            raise ConsumerError(f"cannot connect to the broker at {redact_url(self.url)}: {exc!r}") from None
        return self

    def _declare(self, channel) -> None:
        channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        arguments = {}
        if self.dead_letter:
            dlx, dlq = dead_letter_names(self.queue_name)
            channel.exchange_declare(dlx, exchange_type="fanout", durable=True)
            channel.queue_declare(dlq, durable=True)
            channel.queue_bind(dlq, dlx)
            arguments["x-dead-letter-exchange"] = dlx
        if self.queue_name:
            result = channel.queue_declare(self.queue_name, durable=True, arguments=arguments)
        else:
            # Exclusive: the broker deletes it with the connection. Not auto-delete as well,
            # which would delete it the moment one run() ends and break the next run().
            result = channel.queue_declare("", exclusive=True)
        self.queue = result.method.queue
        for pattern in self.patterns:
            channel.queue_bind(self.queue, self.exchange, routing_key=pattern)
        channel.basic_qos(prefetch_count=self.prefetch)

    def pending(self) -> int:
        """Messages waiting in the queue (routed to it and not yet delivered).

        A message that was handed back a moment ago (by a `run()` that ended) may be
        counted a moment later: the broker requeues asynchronously.
        """
        if self._channel is None:
            raise ConsumerError("the consumer is not open")
        try:
            return self._channel.queue_declare(self.queue, passive=True).method.message_count
        except pika.exceptions.AMQPError as exc:
            self.close()
            raise ConsumerError(describe_broker_error(exc, self.url)) from None

    def close(self) -> None:
        """Close the connection; the broker puts unacknowledged messages back in the queue."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # closing a broken connection must not hide the real error
                log.debug("error while closing the consumer connection", exc_info=True)

    def __enter__(self) -> "EventConsumer":
        return self.open() if self._connection is None else self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- consuming ------------------------------------------------------------------

    def run(
        self,
        handler: Handler,
        max_messages: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> int:
        """Hand events to `handler` until `max_messages` were handled or `timeout` seconds passed.

        Returns the number of events handled, successfully or not (malformed messages
        that never reach the handler are not counted). With neither limit it runs until
        interrupted. `timeout` stops the taking of new events: a handler already running
        is allowed to finish, and its event is acknowledged. Events delivered to this
        consumer but not handled go back to the queue.

        Raises :class:`ConsumerError` when the connection or channel is lost, once a
        handler that was running has returned (the consumer is then closed; calling
        `run()` again reconnects), and re-raises, in
        the caller's thread, a `BaseException` that is not an `Exception` (e.g.
        `SystemExit`) raised by the handler; that event goes back to the queue.
        """
        if max_messages is not None and max_messages < 0:
            raise ValueError(f"max_messages must be 0 or more, got {max_messages}")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be 0 or more seconds, got {timeout}")
        if max_messages == 0:
            return 0
        if self._channel is None:
            self.open()
        connection, channel = self._connection, self._channel
        state = _Run(max_messages, None if timeout is None else time.monotonic() + timeout)
        worker = _HandlerThread(connection, handler, partial(self._settle, channel, state))

        def on_message(channel, method, properties, body: bytes) -> None:
            try:
                event = TaskEvent.from_message(
                    body,
                    routing_key=method.routing_key,
                    message_id=properties.message_id,
                    timestamp=properties.timestamp,
                    redelivered=method.redelivered,
                )
            except ValueError as exc:
                log.error("dropping malformed event %s (%s): %s", properties.message_id, method.routing_key, exc)
                channel.basic_reject(method.delivery_tag, requeue=False)
                return
            state.waiting.append(_Delivery(event, method.delivery_tag))
            self._dispatch(state, worker)

        self._run = state
        try:
            consumer_tag = channel.basic_consume(self.queue, on_message_callback=on_message)
            while not state.finished():
                self._dispatch(state, worker)
                connection.process_data_events(time_limit=state.wait_seconds())
            if state.crash is None and not state.cancelled_by_broker:
                channel.basic_cancel(consumer_tag)  # pika requeues what it had not dispatched yet
                for delivery in state.waiting:  # delivered to us, never handled: back to the queue
                    channel.basic_nack(delivery.delivery_tag, requeue=True)
        except pika.exceptions.AMQPError as exc:
            self.close()
            # One handler at a time, also across a reconnect: when run() raises, no handler
            # of this consumer still works on an event the broker is redelivering.
            worker.wait_idle()
            raise ConsumerError(
                f"{describe_broker_error(exc, self.url)}. Events not acknowledged go back to the "
                "queue; run() again to reconnect"
            ) from None
        except BaseException:
            # Interrupted (KeyboardInterrupt arrives on this thread): closing puts every
            # unacknowledged message, including one whose handler still runs, back.
            self.close()
            raise
        finally:
            worker.stop()
            self._run = None
        if state.crash is not None:
            self.close()  # the crashed event is not acknowledged: the broker redelivers it
            raise state.crash
        if state.cancelled_by_broker:
            self.close()
            worker.wait_idle()
            raise ConsumerError(
                f"the broker cancelled the consumer of queue {self.queue!r} (was the queue deleted?); "
                "run() again to declare it anew"
            )
        return state.handled

    def _on_broker_cancel(self, *_frame) -> None:
        # RabbitMQ cancels a consumer whose queue was deleted (consumer cancel notification).
        if self._run is not None:
            self._run.cancelled_by_broker = True

    @staticmethod
    def _dispatch(state: _Run, worker: _HandlerThread) -> None:
        if state.waiting and state.may_start():
            state.busy = True
            worker.submit(state.waiting.pop(0))

    def _settle(self, channel, state: _Run, delivery: _Delivery, outcome: str, error: Optional[BaseException]) -> None:
        """On the connection thread: acknowledge or reject one handled event."""
        state.busy = False
        event = delivery.event
        if outcome == _CRASHED:
            state.crash = error
            return
        state.handled += 1
        if outcome == _RAISED:
            where = "dead-lettered" if self.dead_letter else "dropped"
            log.error(
                "handler failed on event %s (%s); message %s",
                event.message_id,
                event.routing_key,
                where,
                exc_info=error,
            )
            channel.basic_reject(delivery.delivery_tag, requeue=False)
        else:
            channel.basic_ack(delivery.delivery_tag)


def consume(
    handler: Handler,
    patterns: Iterable[str],
    *,
    url: Optional[str] = None,
    exchange: Optional[str] = None,
    queue: Optional[str] = None,
    dead_letter: bool = False,
    max_messages: Optional[int] = None,
    timeout: Optional[float] = None,
    prefetch: int = 10,
) -> int:
    """Bind `handler` to `patterns` and run it; see :class:`EventConsumer`.

    Returns the number of events handled. Example: mail someone about every failure,
    keeping events while the service is down::

        consume(mail_failure, pattern_for(failures=True), queue="mailer", dead_letter=True)
    """
    with EventConsumer(
        patterns, url=url, exchange=exchange, queue=queue, dead_letter=dead_letter, prefetch=prefetch
    ) as consumer:
        return consumer.run(handler, max_messages=max_messages, timeout=timeout)
