"""Pure parts of the publisher: URL handling, error classification, message properties."""

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pika
import pika.exceptions
import pytest

from lime_task_operator.publisher import (
    EventPublisher,
    PublishError,
    classify_error,
    connection_parameters,
    make_publisher,
    message_properties,
    redact_url,
)

URL = "amqp://lime:s3cret@127.0.0.1:5672/%2F"
SAFE = redact_url(URL)


def test_redact_url_hides_only_the_password():
    assert SAFE == "amqp://lime:***@127.0.0.1:5672/%2F"
    assert redact_url("amqp://127.0.0.1/") == "amqp://127.0.0.1/"


def test_connection_parameters_bound_the_timeouts():
    params = connection_parameters(URL, connect_timeout=3)
    assert params.socket_timeout == 3
    assert params.stack_timeout == 6
    assert params.connection_attempts == 1
    assert params.blocked_connection_timeout is not None
    assert params.credentials.username == "lime"


def test_connection_parameters_keep_timeouts_set_in_the_url():
    params = connection_parameters(URL + "?socket_timeout=12&connection_attempts=3", connect_timeout=3)
    assert params.socket_timeout == 12
    assert params.connection_attempts == 3


@pytest.mark.parametrize("url", ["http://host/", "rabbit", "amqp://host/?socket_timeout=abc"])
def test_a_bad_url_is_a_publish_error_without_the_password(url):
    with pytest.raises(PublishError) as caught:
        connection_parameters(url.replace("host", "u:pw@host"))
    assert caught.value.reason == "InvalidBrokerURL"
    assert "pw" not in str(caught.value)


def test_publisher_with_a_bad_url_starts_and_reports_on_publish():
    publisher = EventPublisher("http://u:pw@host/", "lime_task")  # must not raise: the operator keeps running
    with pytest.raises(PublishError) as caught:
        publisher.publish("core.task.a.b.success.v1", {}, "id", datetime.now(timezone.utc))
    assert caught.value.reason == "InvalidBrokerURL"
    assert "amqp://" in caught.value.message
    assert "pw" not in caught.value.message


@pytest.mark.parametrize(
    "exc,reason",
    [
        (pika.exceptions.ProbableAuthenticationError("x"), "BrokerAuthFailed"),
        (pika.exceptions.AuthenticationError("PLAIN"), "BrokerAuthFailed"),
        (pika.exceptions.ConnectionClosedByBroker(403, "ACCESS_REFUSED - Login was refused"), "BrokerAuthFailed"),
        (pika.exceptions.ProbableAccessDeniedError("x"), "BrokerAccessDenied"),
        (pika.exceptions.ConnectionClosedByBroker(530, "NOT_ALLOWED - vhost"), "BrokerAccessDenied"),
        (pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED - shutdown"), "BrokerUnreachable"),
        (pika.exceptions.AMQPConnectionError(ConnectionRefusedError(111, "Connection refused")), "BrokerUnreachable"),
        (pika.exceptions.StreamLostError("Transport indicated EOF"), "BrokerUnreachable"),
        (pika.exceptions.ConnectionBlockedTimeout(), "BrokerBlocked"),
        (pika.exceptions.NackError([]), "BrokerNacked"),
        (pika.exceptions.ChannelClosedByBroker(406, "PRECONDITION_FAILED - inequivalent arg 'type'"), "ExchangeMismatch"),
        (pika.exceptions.ChannelClosedByBroker(403, "ACCESS_REFUSED - configure"), "BrokerAccessDenied"),
        (pika.exceptions.ChannelClosedByBroker(541, "INTERNAL_ERROR"), "BrokerError"),
        (OSError("boom"), "BrokerError"),
    ],
)
def test_errors_are_classified_into_reasons(exc, reason):
    error = classify_error(exc, SAFE, "lime_task")
    assert error.reason == reason
    assert error.message and "s3cret" not in error.message


def test_unreachable_message_names_the_socket_error():
    exc = pika.exceptions.AMQPConnectionError(ConnectionRefusedError(111, "Connection refused"))
    assert "Connection refused" in classify_error(exc, SAFE, "lime_task").message


def test_exchange_mismatch_names_the_exchange():
    exc = pika.exceptions.ChannelClosedByBroker(406, "PRECONDITION_FAILED")
    assert "'team_events'" in classify_error(exc, SAFE, "team_events").message


def test_message_properties_are_persistent_json_with_id_and_timestamp():
    when = datetime(2024, 5, 1, 10, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    props = message_properties("uid.success", when)
    assert props.content_type == "application/json"
    assert props.delivery_mode == 2
    assert props.message_id == "uid.success"
    assert props.timestamp == int(when.timestamp())


def test_naive_timestamps_are_taken_as_utc():
    props = message_properties("m", datetime(1970, 1, 1, 0, 1, 0))
    assert props.timestamp == 60


def test_make_publisher_is_none_without_a_broker_url():
    assert make_publisher(SimpleNamespace(broker_url="", exchange="lime_task")) is None
    assert make_publisher(SimpleNamespace(broker_url="  ", exchange="lime_task")) is None


def test_make_publisher_uses_the_settings():
    publisher = make_publisher(SimpleNamespace(broker_url=URL, exchange="team_events"))
    assert isinstance(publisher, EventPublisher)
    assert publisher.exchange == "team_events"
    assert publisher.safe_url == SAFE
    publisher.close()  # never connected: closing is a no-op


def test_make_publisher_defaults_the_exchange():
    assert make_publisher(SimpleNamespace(broker_url=URL, exchange="")).exchange == "lime_task"
