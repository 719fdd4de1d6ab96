"""Publishing task events to RabbitMQ with publisher confirms.

The operator calls :meth:`EventPublisher.publish` from a worker thread (it blocks until
the broker confirmed or refused the message) and records the confirmation in the task's
status; a task whose status has no confirmed event is published again later. That makes
delivery at-least-once across broker and operator restarts, and the stable message id
(``lime_task.events.event_message_id``) lets consumers drop the rare duplicate.

Every failure surfaces as :class:`PublishError` with a CamelCase ``reason`` the operator
copies into the task's ``EventPublished`` condition, and a message without the password.

Unroutable messages: events are published with ``mandatory=False``. An event that no
queue is bound to is confirmed and dropped by the broker, which is the publish/subscribe
contract of a topic exchange (nobody asked for it). Deployments that must keep such
events can give the exchange an ``alternate-exchange`` policy in RabbitMQ; no code
change is needed.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions

from lime_task import timestamps
from lime_task.constants import DEFAULT_EXCHANGE
from lime_task.events import CONTENT_TYPE, redact_url

log = logging.getLogger(__name__)

APP_ID = "lime-task-operator"
# A dead broker must fail a publish in seconds, not the OS's minutes: the operator's
# retry loop, not the socket, decides how long to wait.
DEFAULT_CONNECT_TIMEOUT = 5.0
# RabbitMQ blocks publishers under a memory or disk alarm; fail instead of hanging.
DEFAULT_BLOCKED_TIMEOUT = 30.0

_AMQP_ACCESS_REFUSED = 403
_AMQP_NOT_FOUND = 404
_AMQP_PRECONDITION_FAILED = 406
_AMQP_NOT_ALLOWED = 530


class PublishError(Exception):
    """An event could not be published; `reason` is CamelCase for the task's condition.

    Reasons: ``InvalidBrokerURL``, ``BrokerUnreachable``, ``BrokerAuthFailed``,
    ``BrokerAccessDenied``, ``BrokerBlocked``, ``ExchangeMismatch``, ``BrokerNacked``,
    ``BrokerError``. All of them are worth retrying later except that a wrong URL or
    credentials keep failing until the settings are fixed.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"PublishError({self.reason!r}, {self.message!r})"


def connection_parameters(url: str, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> pika.URLParameters:
    """pika parameters for `url`, with bounded timeouts unless the URL sets its own.

    Raises PublishError(InvalidBrokerURL) for a URL pika cannot use.
    """
    safe = redact_url(url)
    scheme = urlsplit(url).scheme
    if scheme not in ("amqp", "amqps"):
        raise PublishError("InvalidBrokerURL", f"broker URL {safe!r} must start with amqp:// or amqps://")
    try:
        params = pika.URLParameters(url)
    except Exception as exc:  # pika raises ValueError, TypeError ... for bad query values
        raise PublishError("InvalidBrokerURL", f"broker URL {safe!r} is not valid: {exc}") from None
    given = parse_qs(urlsplit(url).query)
    if "socket_timeout" not in given:
        params.socket_timeout = connect_timeout
    if "stack_timeout" not in given:
        params.stack_timeout = connect_timeout * 2
    if "blocked_connection_timeout" not in given:
        params.blocked_connection_timeout = DEFAULT_BLOCKED_TIMEOUT
    if "connection_attempts" not in given:
        params.connection_attempts = 1
    params.client_properties = {"connection_name": APP_ID}
    return params


def classify_error(exc: BaseException, safe_url: str, exchange: str) -> PublishError:
    """Turn a pika exception into a PublishError with a reason and a helpful message."""
    if isinstance(exc, PublishError):
        return exc
    if isinstance(exc, (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError)):
        return PublishError(
            "BrokerAuthFailed",
            f"broker at {safe_url} rejected the credentials: check the user and password in the broker Secret",
        )
    if isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
        return PublishError(
            "BrokerAccessDenied",
            f"broker at {safe_url} refused access to the virtual host: check the vhost in the URL and the user's permissions",
        )
    if isinstance(exc, pika.exceptions.ConnectionClosedByBroker):
        if exc.reply_code == _AMQP_ACCESS_REFUSED:
            return PublishError("BrokerAuthFailed", f"broker at {safe_url} refused the login: {exc.reply_text}")
        if exc.reply_code == _AMQP_NOT_ALLOWED:
            return PublishError("BrokerAccessDenied", f"broker at {safe_url} refused access: {exc.reply_text}")
        return PublishError("BrokerUnreachable", f"broker at {safe_url} closed the connection: {exc.reply_code} {exc.reply_text}")
    if isinstance(exc, pika.exceptions.ConnectionBlockedTimeout):
        return PublishError(
            "BrokerBlocked",
            f"broker at {safe_url} blocked publishing (memory or disk alarm) for longer than {DEFAULT_BLOCKED_TIMEOUT:g}s",
        )
    if isinstance(exc, pika.exceptions.NackError):
        return PublishError("BrokerNacked", f"broker at {safe_url} did not accept the event (negative acknowledgement)")
    if isinstance(exc, pika.exceptions.ChannelClosedByBroker):
        if exc.reply_code == _AMQP_PRECONDITION_FAILED:
            return PublishError(
                "ExchangeMismatch",
                f"exchange {exchange!r} exists with other settings than a durable topic exchange: {exc.reply_text}",
            )
        if exc.reply_code == _AMQP_ACCESS_REFUSED:
            return PublishError(
                "BrokerAccessDenied", f"broker user may not declare or write exchange {exchange!r}: {exc.reply_text}"
            )
        return PublishError("BrokerError", f"broker closed the channel: {exc.reply_code} {exc.reply_text}")
    if isinstance(exc, pika.exceptions.AMQPConnectionError):
        detail = _connection_error_detail(exc)
        return PublishError("BrokerUnreachable", f"cannot reach the broker at {safe_url}: {detail}")
    if isinstance(exc, (pika.exceptions.AMQPError, OSError)):
        return PublishError("BrokerError", f"broker at {safe_url} failed: {exc!r}")
    return PublishError("BrokerError", f"unexpected error publishing to {safe_url}: {exc!r}")


def _connection_error_detail(exc: BaseException) -> str:
    """pika wraps the socket error several layers deep; the innermost says what happened."""
    inner: Any = exc
    for _ in range(10):  # bounded: these wrappers never nest deeper than a few levels
        if getattr(inner, "exception", None) is not None:  # connector phase errors
            inner = inner.exception
        elif getattr(inner, "exceptions", None):  # connection workflow: the last attempt's error
            inner = inner.exceptions[-1]
        elif inner.args and isinstance(inner.args[0], BaseException):
            inner = inner.args[0]
        else:
            break
    if isinstance(inner, OSError) and inner.strerror:
        text = inner.strerror
    elif isinstance(inner, TimeoutError):
        text = "connection timed out"
    else:
        text = str(inner) or type(inner).__name__
    return redact_url(text)


def amqp_timestamp(timestamp: datetime) -> int:
    """AMQP timestamps are whole seconds since the epoch; a naive datetime is taken as UTC."""
    return timestamps.to_epoch_seconds(timestamp)


def message_properties(message_id: str, timestamp: datetime) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type=CONTENT_TYPE,
        content_encoding="utf-8",
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=message_id,
        timestamp=amqp_timestamp(timestamp),
        app_id=APP_ID,
    )


class EventPublisher:
    """One connection and one confirm-mode channel, shared by the operator's threads.

    pika connections are not thread-safe, so a lock serialises all use. The connection
    is opened lazily and dropped on any error; the next publish opens a new one, so the
    publisher recovers by itself when the broker comes back.
    """

    def __init__(self, url: str, exchange: str, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        if not exchange or not exchange.strip():
            raise ValueError("exchange name is empty")
        self.exchange = exchange
        self.safe_url = redact_url(url)
        self._lock = threading.Lock()
        self._connection: Optional[pika.BlockingConnection] = None
        self._channel = None
        # A bad URL is reported on each publish (as a PublishError the operator turns
        # into a condition), not raised here: the operator must start and run tasks.
        self._params: Optional[pika.URLParameters] = None
        self._url_error: Optional[PublishError] = None
        try:
            self._params = connection_parameters(url, connect_timeout)
        except PublishError as exc:
            self._url_error = exc
            log.error("events are not published: %s", exc.message)

    def publish(self, routing_key: str, body: dict, message_id: str, timestamp: datetime) -> None:
        """Publish one event and wait for the broker's confirm; PublishError otherwise."""
        if self._url_error is not None:
            raise self._url_error
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        properties = message_properties(message_id, timestamp)
        with self._lock:
            reused = self._connection is not None
            try:
                self._publish_once(routing_key, payload, properties)
                return
            except (pika.exceptions.StreamLostError, pika.exceptions.ConnectionWrongStateError,
                    pika.exceptions.ChannelWrongStateError, pika.exceptions.ConnectionClosed,
                    pika.exceptions.AMQPHeartbeatTimeout) as exc:
                self._drop()
                if not reused:
                    raise self._error(exc, message_id) from None
                # A connection that sat idle may have been closed by the broker (heartbeat)
                # without us noticing; the message did not go out on it, so try once on a
                # fresh connection before reporting an outage.
                log.info("event connection to %s was stale (%r); reconnecting", self.safe_url, exc)
            except Exception as exc:
                self._drop()
                raise self._error(exc, message_id) from None
            try:
                self._publish_once(routing_key, payload, properties)
            except Exception as exc:
                self._drop()
                raise self._error(exc, message_id) from None

    def _publish_once(self, routing_key: str, payload: bytes, properties: pika.BasicProperties) -> None:
        channel = self._ensure_channel()
        channel.basic_publish(
            exchange=self.exchange,
            routing_key=routing_key,
            body=payload,
            properties=properties,
            mandatory=False,
        )

    def _ensure_channel(self):
        if self._connection is not None and self._connection.is_open and self._channel is not None and self._channel.is_open:
            # Read what the broker sent while we were idle (heartbeats, a close) so a dead
            # connection shows up now rather than half-way through a publish.
            self._connection.process_data_events(time_limit=0)
            return self._channel
        self._drop()
        connection = pika.BlockingConnection(self._params)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        except Exception:
            _close_quietly(connection)
            raise
        self._connection, self._channel = connection, channel
        log.info("connected to the event broker at %s (exchange %r)", self.safe_url, self.exchange)
        return channel

    def _error(self, exc: BaseException, message_id: str) -> PublishError:
        error = classify_error(exc, self.safe_url, self.exchange)
        log.warning("event %s not published: %s (%s)", message_id, error.message, error.reason)
        return error

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            _close_quietly(connection)

    def close(self) -> None:
        with self._lock:
            self._drop()


def _close_quietly(connection: pika.BlockingConnection) -> None:
    try:
        if connection.is_open:
            connection.close()
    except Exception:  # the connection is being discarded because it already failed
        log.debug("error while closing a broken broker connection", exc_info=True)


def make_publisher(settings: Any) -> Optional[EventPublisher]:
    """The publisher for the operator's settings, or None when events are disabled."""
    url = (getattr(settings, "broker_url", "") or "").strip()
    if not url:
        return None
    exchange = (getattr(settings, "exchange", "") or "").strip() or DEFAULT_EXCHANGE
    return EventPublisher(url, exchange)

