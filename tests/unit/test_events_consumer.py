"""The consumer's pure parts: argument checks, broker error messages, the run state."""

from __future__ import annotations

import time

import pika.exceptions
import pytest

from lime_task import consumer, events
from lime_task.consumer import ConsumerError, EventConsumer, describe_broker_error
from lime_task.events import pattern_for

URL = "amqp://user:s3cret@broker.example:5672/%2F"


def test_the_consumer_names_are_importable_from_lime_task_events_too():
    # README and examples use `from lime_task.events import consume, pattern_for`.
    from lime_task.events import ConsumerError as FromEvents
    from lime_task.events import consume

    assert consume is consumer.consume and FromEvents is ConsumerError
    assert events.EventConsumer is EventConsumer
    assert events.dead_letter_names is consumer.dead_letter_names
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        events.nothing_here  # noqa: B018 - the lookup is the test


@pytest.mark.parametrize("prefetch", [0, -1, 65536, 1.5, True, "10"])
def test_prefetch_must_be_a_bounded_whole_number(prefetch):
    with pytest.raises(ValueError, match="prefetch must be a whole number from 1 to 65535"):
        EventConsumer(pattern_for(), url=URL, prefetch=prefetch)


def test_a_broker_url_pika_cannot_use_is_refused_at_construction_without_the_password():
    with pytest.raises(ValueError, match="is not usable") as caught:
        EventConsumer(pattern_for(), url=URL + "?heartbeat=soon")
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)


@pytest.mark.parametrize("kwargs,message", [({"max_messages": -1}, "max_messages"), ({"timeout": -2}, "timeout")])
def test_run_refuses_negative_limits_before_connecting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EventConsumer(pattern_for(), url=URL).run(lambda event: None, **kwargs)


def test_run_of_zero_messages_returns_without_connecting():
    assert EventConsumer(pattern_for(), url=URL).run(lambda event: None, max_messages=0) == 0


def test_pending_on_a_closed_consumer_is_a_consumer_error():
    with pytest.raises(ConsumerError, match="not open"):
        EventConsumer(pattern_for(), url=URL).pending()


# -- what a pika error becomes -------------------------------------------------------------


@pytest.mark.parametrize(
    "error,expected",
    [
        (pika.exceptions.StreamLostError("Stream connection lost: ConnectionResetError(104)"),
         "lost the connection to the broker at amqp://user:***@broker.example:5672/%2F"),
        (pika.exceptions.AMQPHeartbeatTimeout("No activity for 120 seconds"), "no heartbeat from the broker"),
        (pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED - broker forced connection closure"),
         "closed the connection: 320 CONNECTION_FORCED"),
        (pika.exceptions.ChannelClosedByBroker(404, "NOT_FOUND - no queue 'q'"),
         "closed the events channel: 404 NOT_FOUND"),
        (pika.exceptions.ChannelClosedByBroker(
            406, "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. Timeout value used: 1800000 ms"),
         "longer than its consumer_timeout"),
        (pika.exceptions.ConnectionWrongStateError("Connection is closed"), "is closed"),
        (pika.exceptions.ChannelWrongStateError("Channel is closed."), "is closed"),
        (pika.exceptions.IncompatibleProtocolError("StreamLostError"), "connection to the broker at"),
        (pika.exceptions.UnexpectedFrameError("frame"), "broker error on"),
    ],
)
def test_every_pika_error_gets_a_sentence_without_the_password(error, expected):
    message = describe_broker_error(error, URL)
    assert expected in message
    assert "s3cret" not in message


def test_a_refused_declaration_hints_at_deleting_the_queue_only_for_changed_arguments(monkeypatch):
    def refuse(code, text):
        def connect(params):
            raise pika.exceptions.ChannelClosedByBroker(code, text)

        return connect

    monkeypatch.setattr(consumer.pika, "BlockingConnection", refuse(406, "PRECONDITION_FAILED - inequivalent arg"))
    with pytest.raises(ConsumerError, match="delete it to change dead_letter"):
        EventConsumer(pattern_for(), url=URL, queue="q").open()
    monkeypatch.setattr(consumer.pika, "BlockingConnection", refuse(403, "ACCESS_REFUSED - no access"))
    with pytest.raises(ConsumerError) as caught:
        EventConsumer(pattern_for(), url=URL, queue="q").open()
    assert "403 ACCESS_REFUSED" in str(caught.value) and "delete it" not in str(caught.value)


# -- the state of one run() ----------------------------------------------------------------


def test_a_running_handler_always_finishes_even_after_the_deadline():
    run = consumer._Run(max_messages=None, deadline=time.monotonic() - 1)
    run.busy = True
    assert not run.finished() and not run.may_start()
    assert run.wait_seconds() == consumer.TICK_SECONDS  # keep serving the connection meanwhile
    run.busy = False
    assert run.finished()


def test_no_handler_starts_past_max_messages_or_after_a_crash_or_a_cancel():
    run = consumer._Run(max_messages=2, deadline=None)
    assert run.may_start() and not run.finished()
    run.handled = 2
    assert not run.may_start() and run.finished()
    crashed = consumer._Run(max_messages=None, deadline=None)
    crashed.crash = SystemExit(3)
    assert not crashed.may_start() and crashed.finished()
    cancelled = consumer._Run(max_messages=None, deadline=None)
    cancelled.cancelled_by_broker = True
    assert not cancelled.may_start() and cancelled.finished()


def test_the_idle_wait_never_passes_the_deadline():
    run = consumer._Run(max_messages=None, deadline=time.monotonic() + 0.2)
    assert 0 < run.wait_seconds() <= 0.2
    assert consumer._Run(max_messages=None, deadline=None).wait_seconds() == consumer.TICK_SECONDS
