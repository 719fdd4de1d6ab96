"""Task events on RabbitMQ: what they look like, and a helper to consume them.

When a task reaches SUCCESS or FAILURE the operator publishes one message to a durable
topic exchange (default ``lime_task``) with the routing key
``core.task.{task_name}.{success|failure}.v1``. This module is the single definition of
that contract, shared by the publisher (``lime_task_operator.events``) and by consumers:

* pure parts: :func:`routing_key`, :func:`event_message_id`, :func:`build_event_body`,
  :func:`pattern_for` and :class:`TaskEvent` (the parsed message a handler receives);
* I/O: :class:`EventConsumer` and :func:`consume`, which bind a handler to routing-key
  patterns with pika and acknowledge a message only after the handler returned.

The body format is documented in docs/events.md.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Optional

from . import values
from .constants import DEFAULT_EXCHANGE, ENV_BROKER_URL, ENV_EXCHANGE, TERMINAL_STATES
from .models import TASK_PATH_PATTERN

log = logging.getLogger(__name__)

ROUTING_KEY_PREFIX = "core.task"
EVENT_VERSION = "v1"
CONTENT_TYPE = "application/json"

# A routing-key pattern for one task name, or a set of names: dotted words, where a word
# may be the AMQP wildcards `*` (one word) or `#` (zero or more words).
_TASK_PATTERN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*|\*|#)(\.([A-Za-z_][A-Za-z0-9_]*|\*|#))*$")


# --------------------------------------------------------------------------------------
# Routing keys and message ids (pure)
# --------------------------------------------------------------------------------------


def _check_terminal(state: str) -> str:
    if state not in TERMINAL_STATES:
        raise ValueError(
            f"task state {state!r} has no event: only {' and '.join(TERMINAL_STATES)} "
            "tasks are published"
        )
    return state


def _check_task_name(task_name: str) -> str:
    if not isinstance(task_name, str) or not re.match(TASK_PATH_PATTERN, task_name):
        raise ValueError(
            f"task name {task_name!r} is not a dotted Python path such as "
            "'my_package.tasks.send_report'"
        )
    return task_name


def routing_key(task_name: str, state: str) -> str:
    """The routing key of the event for a task that ended in `state`.

    The task name keeps its dots, so its words are separate routing-key words and a
    consumer can bind to a whole package (``core.task.billing.#.failure.v1``).
    """
    _check_task_name(task_name)
    _check_terminal(state)
    return f"{ROUTING_KEY_PREFIX}.{task_name}.{state.lower()}.{EVENT_VERSION}"


def event_message_id(task_uid: str, state: str) -> str:
    """A message id that is the same every time the same outcome is published.

    The uid (not the name) is used because a task name can be reused after the task was
    deleted; the state is included so that a distinct outcome is never mistaken for a
    duplicate. Consumers drop messages whose id they have already handled.
    """
    if not isinstance(task_uid, str) or not task_uid.strip():
        raise ValueError("task uid is empty: the event message id is derived from metadata.uid")
    _check_terminal(state)
    return f"{task_uid}.{state.lower()}"


def pattern_for(
    failures: bool = False, successes: bool = False, task: Optional[str] = None
) -> list[str]:
    """Binding patterns for the events a consumer asks for.

    Neither `failures` nor `successes` means both. `task` narrows to one task name (or a
    pattern of names using the AMQP wildcards, e.g. ``billing.#``).
    """
    if task is None:
        name = "#"
    elif isinstance(task, str) and _TASK_PATTERN.match(task):
        name = task
    else:
        raise ValueError(
            f"task {task!r} is not a dotted task name (words may be '*' or '#' wildcards)"
        )
    states = []
    if successes or not failures:
        states.append("success")
    if failures or not successes:
        states.append("failure")
    return [f"{ROUTING_KEY_PREFIX}.{name}.{state}.{EVENT_VERSION}" for state in states]


def redact_url(url: str) -> str:
    """`url` with its password replaced by ``***``: safe for logs and status messages."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def resolve_broker_url(url: Optional[str] = None) -> str:
    """The explicit URL, else ``$LIME_TASK_BROKER_URL``; an error names both when neither is set."""
    value = url or os.environ.get(ENV_BROKER_URL, "")
    if not value.strip():
        raise ValueError(f"no broker URL: pass url=... or set {ENV_BROKER_URL} (amqp://user:pass@host:5672/vhost)")
    return value.strip()


def resolve_exchange(exchange: Optional[str] = None) -> str:
    """The explicit exchange, else ``$LIME_TASK_EXCHANGE``, else ``lime_task``."""
    return exchange or os.environ.get(ENV_EXCHANGE, "").strip() or DEFAULT_EXCHANGE


# --------------------------------------------------------------------------------------
# The event body (pure)
# --------------------------------------------------------------------------------------


def _rfc3339(value: Any) -> Optional[str]:
    """Timestamps come as strings from the API but as datetimes from kopf/pydantic users."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, str):
        return value
    raise ValueError(f"timestamp {value!r} is neither an RFC 3339 string nor a datetime")


def _required(obj: Mapping[str, Any], section: str, key: str) -> Any:
    part = obj.get(section) or {}
    value = part.get(key) if isinstance(part, Mapping) else None
    if value is None or value == "":
        raise ValueError(f"LimeTask has no {section}.{key}: cannot build its event")
    return value


def build_event_body(task_obj: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of the event for a finished LimeTask (the API's camelCase dict).

    Both `result` and `error` are always present (one of them null) so that consumers
    see one fixed shape. The body carries the task's uid so a consumer can tell two
    tasks apart that had the same name at different times.
    """
    if not isinstance(task_obj, Mapping):
        raise ValueError(f"expected the LimeTask as a dict, got {type(task_obj).__name__}")
    state = _check_terminal(_required(task_obj, "status", "state"))
    metadata = task_obj.get("metadata") or {}
    status = task_obj.get("status") or {}
    return {
        "id": _required(task_obj, "metadata", "name"),
        "uid": _required(task_obj, "metadata", "uid"),
        "task": _check_task_name(_required(task_obj, "spec", "task")),
        "app": _required(task_obj, "spec", "app"),
        "namespace": metadata.get("namespace"),
        "state": state,
        "reason": status.get("reason"),
        # As the task returned it: integral floats restored (lime_task.values).
        "result": values.status_result(status) if state == "SUCCESS" else None,
        "error": status.get("error") if state == "FAILURE" else None,
        "createdAt": _rfc3339(metadata.get("creationTimestamp")),
        "startedAt": _rfc3339(status.get("startedAt")),
        "finishedAt": _rfc3339(status.get("finishedAt")),
        "attempts": status.get("attempts"),
    }


# --------------------------------------------------------------------------------------
# The parsed event a handler receives (pure)
# --------------------------------------------------------------------------------------


def _parse_time(value: Any) -> Optional[datetime]:
    if value in (None, ""):
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"event timestamp {value!r} is not RFC 3339") from None


@dataclass(frozen=True)
class TaskEvent:
    """One task event as handed to a consumer's handler."""

    task_id: str
    task_name: str
    app: str
    state: str
    namespace: Optional[str] = None
    uid: Optional[str] = None
    reason: Optional[str] = None
    result: Any = None
    error: Optional[dict[str, Any]] = None
    created_at: Optional[datetime] = None
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    attempts: Optional[int] = None
    routing_key: str = ""
    message_id: Optional[str] = None
    timestamp: Optional[datetime] = None
    redelivered: bool = False
    body: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def succeeded(self) -> bool:
        return self.state == "SUCCESS"

    @classmethod
    def from_message(
        cls,
        body: bytes | str,
        routing_key: str = "",
        message_id: Optional[str] = None,
        timestamp: Optional[int] = None,
        redelivered: bool = False,
    ) -> "TaskEvent":
        """Parse a delivered message; ValueError names what is wrong with a bad one."""
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"event body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"event body is a JSON {type(data).__name__}, expected an object")
        missing = [key for key in ("id", "task", "app", "state") if not data.get(key)]
        if missing:
            raise ValueError(f"event body lacks {', '.join(missing)}")
        attempts = data.get("attempts")
        return cls(
            task_id=str(data["id"]),
            task_name=str(data["task"]),
            app=str(data["app"]),
            state=str(data["state"]),
            namespace=data.get("namespace"),
            uid=data.get("uid"),
            reason=data.get("reason"),
            result=data.get("result"),
            error=data.get("error"),
            created_at=_parse_time(data.get("createdAt")),
            started_at=_parse_time(data.get("startedAt")),
            finished_at=_parse_time(data.get("finishedAt")),
            attempts=int(attempts) if isinstance(attempts, int) else None,
            routing_key=routing_key,
            message_id=message_id,
            timestamp=(
                datetime.fromtimestamp(timestamp, tz=timezone.utc) if timestamp is not None else None
            ),
            redelivered=redelivered,
            body=data,
        )


# --------------------------------------------------------------------------------------
# Consuming (I/O)
# --------------------------------------------------------------------------------------


class ConsumerError(Exception):
    """The consumer could not connect, declare or bind; the message says what to fix."""


Handler = Callable[[TaskEvent], Any]


def dead_letter_names(queue: str) -> tuple[str, str]:
    """(exchange, queue) that receive the messages a handler of `queue` failed on."""
    return f"{queue}.dead-letter", f"{queue}.dead-letter"


class EventConsumer:
    """A queue bound to routing-key patterns on the events exchange.

    `queue` given: a durable queue of that name, which keeps events while no consumer
    runs (a service that must not miss events). No `queue`: a server-named exclusive
    queue that disappears with the connection (watching events live, as the CLI does).
    One consumer can `run()` several times while it stays open.

    A handler that raises gets its message rejected without requeue (requeueing would
    redeliver the same poison message forever). With `dead_letter=True` (named queues
    only) the broker moves such messages to the queue ``{queue}.dead-letter`` for later
    inspection; without it they are logged and dropped.

    Open it (``with EventConsumer(...) as consumer``) before the events you want are
    published: the binding must exist when the broker routes them.
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
        self.exchange = resolve_exchange(exchange)
        if queue is not None and not queue.strip():
            raise ValueError("queue name is empty: pass None for a temporary queue")
        if dead_letter and not queue:
            raise ValueError(
                "dead_letter needs a named queue: dead-lettered messages of a temporary "
                "queue would have no lasting place to go"
            )
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        self.queue_name = queue
        self.dead_letter = dead_letter
        self.prefetch = prefetch
        self.connect_timeout = connect_timeout
        self._connection = None
        self._channel = None
        self.queue: Optional[str] = None  # the actual queue name once open

    # -- setup ----------------------------------------------------------------------

    def open(self) -> "EventConsumer":
        import pika
        import pika.exceptions

        params = pika.URLParameters(self.url)
        params.socket_timeout = self.connect_timeout
        params.stack_timeout = self.connect_timeout
        try:
            self._connection = pika.BlockingConnection(params)
            self._channel = self._connection.channel()
            self._declare(self._channel)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self.close()
            raise ConsumerError(
                f"broker refused to set up the events queue: {exc.reply_code} {exc.reply_text} "
                "(a durable queue keeps the arguments it was created with: delete it to change "
                "dead_letter)"
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
        """Messages waiting in the queue (routed to it and not yet delivered)."""
        if self._channel is None:
            raise ConsumerError("the consumer is not open")
        return self._channel.queue_declare(self.queue, passive=True).method.message_count

    def close(self) -> None:
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

        Returns the number of events handled successfully or not (malformed messages
        that never reach the handler are not counted). With neither limit it runs until
        interrupted.
        """
        if self._channel is None:
            self.open()
        deadline = None if timeout is None else time.monotonic() + timeout
        handled = 0
        channel = self._channel
        try:
            # The inactivity tick (method None) lets the loop notice the deadline while idle.
            for method, properties, body in channel.consume(self.queue, inactivity_timeout=0.5):
                if max_messages is not None and handled >= max_messages:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if method is not None and self._deliver(channel, handler, method, properties, body):
                    handled += 1
                    if max_messages is not None and handled >= max_messages:
                        break
        finally:
            if channel.is_open:
                # Unacknowledged prefetched messages go back to the queue.
                channel.cancel()
        return handled

    def _deliver(self, channel, handler: Handler, method, properties, body: bytes) -> bool:
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
            return False
        try:
            handler(event)
        except Exception:
            where = "dead-lettered" if self.dead_letter else "dropped"
            log.exception("handler failed on event %s (%s); message %s", event.message_id, event.routing_key, where)
            channel.basic_reject(method.delivery_tag, requeue=False)
        else:
            channel.basic_ack(method.delivery_tag)
        return True


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

    Example: mail someone about every failure, keeping events while the service is down::

        consume(mail_failure, pattern_for(failures=True), queue="mailer", dead_letter=True)
    """
    with EventConsumer(
        patterns, url=url, exchange=exchange, queue=queue, dead_letter=dead_letter, prefetch=prefetch
    ) as consumer:
        return consumer.run(handler, max_messages=max_messages, timeout=timeout)
