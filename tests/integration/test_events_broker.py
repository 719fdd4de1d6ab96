"""The publisher and the consumer helper against a real RabbitMQ.

Every test uses its own exchange and queue names, so tests cannot see each other's
messages even though they share one broker.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

import pika
import pytest

from devcluster.testing import free_loopback_port
from lime_task.consumer import ConsumerError, EventConsumer, consume, dead_letter_names
from lime_task.events import TaskEvent, build_event_body, event_message_id, pattern_for, routing_key
from lime_task_operator.publisher import EventPublisher, PublishError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def unique(prefix: str) -> str:
    return f"test.{prefix}.{uuid.uuid4().hex[:10]}"


def finished_task(task: str, state: str, **status) -> dict:
    uid = str(uuid.uuid4())
    return {
        "metadata": {"name": str(uuid.uuid4()), "namespace": "events-test", "uid": uid,
                     "creationTimestamp": "2024-05-01T10:00:00Z"},
        "spec": {"task": task, "app": "my-app"},
        "status": {"state": state, "attempts": 1, "startedAt": "2024-05-01T10:00:01Z",
                   "finishedAt": "2024-05-01T10:00:02Z",
                   "result": {"n": 1} if state == "SUCCESS" else None,
                   "error": {"type": "ValueError", "message": "bad"} if state == "FAILURE" else None,
                   **status},
    }


def publish_task(publisher: EventPublisher, obj: dict) -> str:
    """Publish a finished task's event the way the operator does; returns its message id."""
    state = obj["status"]["state"]
    message_id = event_message_id(obj["metadata"]["uid"], state)
    publisher.publish(routing_key(obj["spec"]["task"], state), build_event_body(obj), message_id,
                      datetime.now(timezone.utc))
    return message_id


@pytest.fixture
def exchange() -> str:
    return unique("exchange")


@pytest.fixture
def amqp(broker):
    """A plain pika channel for the test's own declarations and checks."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = connection.channel()
    yield channel
    connection.close()


@pytest.fixture
def publisher(broker, exchange):
    pub = EventPublisher(broker.url, exchange)
    yield pub
    pub.close()


@pytest.fixture
def cleanup(amqp):
    """Names of exchanges and queues the test declared durable, deleted afterwards."""
    names = {"exchanges": [], "queues": []}
    yield names
    for queue in names["queues"]:
        amqp.queue_delete(queue)
    for exchange in names["exchanges"]:
        amqp.exchange_delete(exchange)


def bound_queue(amqp, exchange: str, pattern: str = "#") -> str:
    # The exchange the publisher declares: a durable topic exchange.
    amqp.exchange_declare(exchange, exchange_type="topic", durable=True)
    queue = amqp.queue_declare("", exclusive=True).method.queue
    amqp.queue_bind(queue, exchange, routing_key=pattern)
    return queue


def with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    return urlunsplit((parts.scheme, f"{user}:{password}@{host}", parts.path, parts.query, ""))


# -- publishing -------------------------------------------------------------------------


def test_publisher_delivers_a_persistent_confirmed_json_event(publisher, exchange, amqp, cleanup):
    cleanup["exchanges"].append(exchange)
    queue = bound_queue(amqp, exchange)
    obj = finished_task("pkg.tasks.report", "SUCCESS")
    when = datetime(2024, 5, 1, 10, 0, 2, tzinfo=timezone.utc)

    publisher.publish("core.task.pkg.tasks.report.success.v1", build_event_body(obj),
                      event_message_id(obj["metadata"]["uid"], "SUCCESS"), when)

    method, properties, body = amqp.basic_get(queue, auto_ack=True)
    assert method is not None, "the confirmed event is not in the bound queue"
    assert method.exchange == exchange
    assert method.routing_key == "core.task.pkg.tasks.report.success.v1"
    assert properties.delivery_mode == 2
    assert properties.content_type == "application/json"
    assert properties.message_id == f"{obj['metadata']['uid']}.success"
    assert properties.timestamp == int(when.timestamp())
    assert properties.app_id == "lime-task-operator"
    assert json.loads(body) == build_event_body(obj)
    assert amqp.basic_get(queue, auto_ack=True)[0] is None, "published more than once"


def test_publisher_declares_a_durable_topic_exchange(publisher, exchange, amqp, cleanup):
    cleanup["exchanges"].append(exchange)
    publish_task(publisher, finished_task("pkg.tasks.report", "FAILURE"))
    # Re-declaring with other settings fails if the publisher declared it differently.
    amqp.exchange_declare(exchange, exchange_type="topic", durable=True)


def test_an_event_nobody_listens_to_is_confirmed_and_dropped(publisher, exchange, cleanup):
    cleanup["exchanges"].append(exchange)
    # mandatory=False: no PublishError although no queue is bound (see docs/events.md).
    publish_task(publisher, finished_task("pkg.tasks.report", "SUCCESS"))


def test_one_publisher_is_safe_to_share_between_threads(publisher, exchange, amqp, cleanup):
    cleanup["exchanges"].append(exchange)
    queue = bound_queue(amqp, exchange)
    ids: list[str] = []
    errors: list[BaseException] = []

    def worker():
        try:
            for _ in range(10):
                ids.append(publish_task(publisher, finished_task("pkg.tasks.bulk", "SUCCESS")))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    received = []
    while True:
        method, properties, _ = amqp.basic_get(queue, auto_ack=True)
        if method is None:
            break
        received.append(properties.message_id)
    assert sorted(received) == sorted(ids) and len(ids) == 40


def test_exchange_of_another_type_is_an_exchange_mismatch(broker, exchange, amqp, cleanup):
    cleanup["exchanges"].append(exchange)
    amqp.exchange_declare(exchange, exchange_type="fanout", durable=True)
    publisher = EventPublisher(broker.url, exchange)
    try:
        with pytest.raises(PublishError) as caught:
            publish_task(publisher, finished_task("pkg.tasks.report", "SUCCESS"))
    finally:
        publisher.close()
    assert caught.value.reason == "ExchangeMismatch"
    assert exchange in caught.value.message


# -- bad settings give a clear error, not a hang ------------------------------------------


@pytest.mark.timeout(30)
def test_nothing_listening_is_broker_unreachable(exchange):
    url = f"amqp://lime:not-this@127.0.0.1:{free_loopback_port()}/%2F"
    publisher = EventPublisher(url, exchange)
    with pytest.raises(PublishError) as caught:
        publish_task(publisher, finished_task("pkg.tasks.report", "SUCCESS"))
    assert caught.value.reason == "BrokerUnreachable"
    assert "refused" in caught.value.message.lower()
    assert "not-this" not in caught.value.message


@pytest.mark.timeout(30)
def test_wrong_credentials_are_broker_auth_failed_and_the_password_is_never_logged(broker, exchange, caplog):
    password = "wrong-" + uuid.uuid4().hex
    publisher = EventPublisher(with_credentials(broker.url, "nobody", password), exchange)
    with caplog.at_level(logging.DEBUG):
        for _ in range(2):  # the second attempt reconnects and fails the same way
            with pytest.raises(PublishError) as caught:
                publish_task(publisher, finished_task("pkg.tasks.report", "SUCCESS"))
            assert caught.value.reason == "BrokerAuthFailed"
    assert "credentials" in caught.value.message
    assert password not in caught.value.message
    assert password not in caplog.text
    assert "BrokerAuthFailed" in caplog.text


@pytest.mark.timeout(30)
def test_unknown_virtual_host_is_broker_access_denied(broker, exchange):
    parts = urlsplit(broker.url)
    url = urlunsplit((parts.scheme, parts.netloc, "/no-such-vhost-" + uuid.uuid4().hex[:6], "", ""))
    publisher = EventPublisher(url, exchange)
    with pytest.raises(PublishError) as caught:
        publish_task(publisher, finished_task("pkg.tasks.report", "SUCCESS"))
    assert caught.value.reason == "BrokerAccessDenied"


# -- consuming ----------------------------------------------------------------------------


def test_a_failures_consumer_sees_only_failures(broker, publisher, exchange, cleanup):
    cleanup["exchanges"].append(exchange)
    seen: list[TaskEvent] = []
    with EventConsumer(pattern_for(failures=True), url=broker.url, exchange=exchange) as consumer:
        tasks = [finished_task("pkg.tasks.a", "SUCCESS"), finished_task("pkg.tasks.a", "FAILURE"),
                 finished_task("other.tasks.b", "SUCCESS"), finished_task("other.tasks.b", "FAILURE")]
        ids = [publish_task(publisher, obj) for obj in tasks]
        handled = consumer.run(seen.append, max_messages=2, timeout=30)
        # Every publish was confirmed (routed) before run: whatever is left is in the queue.
        left = consumer.pending()
    assert handled == 2
    assert left == 0, "a success event was routed to a failures-only consumer"
    assert [event.message_id for event in seen] == [ids[1], ids[3]]
    assert [event.task_name for event in seen] == ["pkg.tasks.a", "other.tasks.b"]
    assert all(event.state == "FAILURE" and event.error == {"type": "ValueError", "message": "bad"}
               for event in seen)
    assert seen[0].routing_key == "core.task.pkg.tasks.a.failure.v1"
    assert seen[0].task_id == tasks[1]["metadata"]["name"]
    assert seen[0].app == "my-app" and seen[0].attempts == 1


def test_a_consumer_of_one_tasks_successes(broker, publisher, exchange, cleanup):
    cleanup["exchanges"].append(exchange)
    seen: list[TaskEvent] = []
    with EventConsumer(pattern_for(successes=True, task="pkg.tasks.a"), url=broker.url,
                       exchange=exchange) as consumer:
        for obj in [finished_task("pkg.tasks.a", "FAILURE"), finished_task("pkg.tasks.ab", "SUCCESS"),
                    finished_task("pkg.tasks.a.sub", "SUCCESS"), finished_task("pkg.tasks.a", "SUCCESS")]:
            publish_task(publisher, obj)
        consumer.run(seen.append, max_messages=1, timeout=30)
        left = consumer.pending()
    assert [(e.task_name, e.state, e.result) for e in seen] == [("pkg.tasks.a", "SUCCESS", {"n": 1})]
    assert left == 0


def test_a_named_queue_keeps_events_while_no_consumer_runs(broker, publisher, exchange, cleanup):
    queue = unique("queue")
    cleanup["exchanges"].append(exchange)
    cleanup["queues"].append(queue)
    EventConsumer(pattern_for(), url=broker.url, exchange=exchange, queue=queue).open().close()

    message_id = publish_task(publisher, finished_task("pkg.tasks.a", "SUCCESS"))  # nobody consuming

    seen: list[TaskEvent] = []
    handled = consume(seen.append, pattern_for(), url=broker.url, exchange=exchange, queue=queue,
                      max_messages=1, timeout=30)
    assert handled == 1 and seen[0].message_id == message_id


class Crash(BaseException):
    """Stands for the consumer process dying inside the handler (not a handler error)."""


def test_a_message_is_acknowledged_only_after_the_handler_returns(broker, publisher, exchange, cleanup):
    queue = unique("queue")
    cleanup["exchanges"].append(exchange)
    cleanup["queues"].append(queue)
    EventConsumer(pattern_for(), url=broker.url, exchange=exchange, queue=queue).open().close()
    message_id = publish_task(publisher, finished_task("pkg.tasks.a", "SUCCESS"))

    def die(event):
        raise Crash()

    with pytest.raises(Crash):
        consume(die, pattern_for(), url=broker.url, exchange=exchange, queue=queue, max_messages=1, timeout=30)

    seen: list[TaskEvent] = []
    consume(seen.append, pattern_for(), url=broker.url, exchange=exchange, queue=queue, max_messages=1,
            timeout=30)
    assert [event.message_id for event in seen] == [message_id]
    assert seen[0].redelivered is True


def test_a_handler_that_raises_sends_the_message_to_the_dead_letter_queue(broker, publisher, exchange, amqp,
                                                                        cleanup, caplog):
    queue = unique("queue")
    dlx, dlq = dead_letter_names(queue)
    cleanup["exchanges"] += [exchange, dlx]
    cleanup["queues"] += [queue, dlq]
    bad = finished_task("pkg.tasks.a", "FAILURE")
    good = finished_task("pkg.tasks.a", "SUCCESS")
    handled_ok: list[str] = []

    def handler(event: TaskEvent):
        if event.task_id == bad["metadata"]["name"]:
            raise RuntimeError("mail server down")
        handled_ok.append(event.message_id)

    with EventConsumer(pattern_for(), url=broker.url, exchange=exchange, queue=queue,
                       dead_letter=True) as consumer:
        bad_id = publish_task(publisher, bad)
        good_id = publish_task(publisher, good)
        with caplog.at_level(logging.ERROR, logger="lime_task.consumer"):
            assert consumer.run(handler, max_messages=2, timeout=30) == 2

    assert handled_ok == [good_id]
    assert "mail server down" in caplog.text and "dead-lettered" in caplog.text
    method, properties, body = amqp.basic_get(dlq, auto_ack=True)
    assert method is not None, "the failed message is not in the dead-letter queue"
    assert properties.message_id == bad_id
    assert properties.headers["x-death"][0]["reason"] in (b"rejected", "rejected")
    assert json.loads(body)["id"] == bad["metadata"]["name"]
    assert amqp.queue_declare(queue, passive=True).method.message_count == 0


def test_without_dead_letter_a_failed_message_is_logged_and_not_redelivered(broker, publisher, exchange,
                                                                             cleanup, caplog):
    queue = unique("queue")
    cleanup["exchanges"].append(exchange)
    cleanup["queues"].append(queue)
    calls: list[str] = []

    def handler(event: TaskEvent):
        calls.append(event.message_id)
        raise RuntimeError("handler bug")

    with EventConsumer(pattern_for(), url=broker.url, exchange=exchange, queue=queue) as consumer:
        message_id = publish_task(publisher, finished_task("pkg.tasks.a", "FAILURE"))
        with caplog.at_level(logging.ERROR, logger="lime_task.consumer"):
            consumer.run(handler, max_messages=1, timeout=30)
        left = consumer.pending()
    assert calls == [message_id]
    assert left == 0
    assert "handler bug" in caplog.text and "dropped" in caplog.text


def test_a_malformed_message_is_rejected_without_reaching_the_handler(broker, exchange, amqp, cleanup, caplog):
    cleanup["exchanges"].append(exchange)
    amqp.exchange_declare(exchange, exchange_type="topic", durable=True)
    seen: list[TaskEvent] = []
    with EventConsumer(pattern_for(), url=broker.url, exchange=exchange) as consumer:
        amqp.basic_publish(exchange, "core.task.pkg.x.failure.v1", b"not json",
                           pika.BasicProperties(message_id="junk"))
        good = finished_task("pkg.x", "FAILURE")
        amqp.basic_publish(exchange, "core.task.pkg.x.failure.v1", json.dumps(build_event_body(good)).encode())
        with caplog.at_level(logging.ERROR, logger="lime_task.consumer"):
            assert consumer.run(seen.append, max_messages=1, timeout=30) == 1
    assert [event.task_id for event in seen] == [good["metadata"]["name"]]
    assert "malformed event junk" in caplog.text


def test_consume_stops_at_its_timeout_when_nothing_arrives(broker, exchange, cleanup):
    cleanup["exchanges"].append(exchange)
    assert consume(lambda event: None, pattern_for(), url=broker.url, exchange=exchange, timeout=1) == 0


def test_switching_dead_letter_on_for_an_existing_queue_says_to_delete_it(broker, exchange, cleanup):
    queue = unique("queue")
    dlx, dlq = dead_letter_names(queue)
    cleanup["exchanges"] += [exchange, dlx]
    cleanup["queues"] += [queue, dlq]
    EventConsumer(pattern_for(), url=broker.url, exchange=exchange, queue=queue).open().close()
    with pytest.raises(ConsumerError, match="delete it to change dead_letter"):
        EventConsumer(pattern_for(), url=broker.url, exchange=exchange, queue=queue, dead_letter=True).open()


@pytest.mark.timeout(30)
def test_a_consumer_with_a_dead_broker_url_raises_a_consumer_error(exchange):
    url = f"amqp://lime:hidden-pw@127.0.0.1:{free_loopback_port()}/%2F"
    with pytest.raises(ConsumerError) as caught:
        consume(lambda event: None, pattern_for(), url=url, exchange=exchange, timeout=1)
    assert "cannot connect to the broker" in str(caught.value)
    assert "hidden-pw" not in str(caught.value)


# -- slow handlers, lost connections (issue #10, kind 5) ------------------------------------


def with_query(url: str, query: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def settles_at(consumer: EventConsumer, count: int, within: float = 5.0) -> int:
    """consumer.pending() once it equals `count`, or its last value after `within` seconds.

    A message the consumer hands back (nack with requeue) is counted by the queue a
    moment later, not at once.
    """
    deadline = time.monotonic() + within
    while (pending := consumer.pending()) != count and time.monotonic() < deadline:
        time.sleep(0.1)
    return pending


def durable_consumer_queue(broker, exchange: str, cleanup) -> str:
    queue = unique("queue")
    cleanup["exchanges"].append(exchange)
    cleanup["queues"].append(queue)
    EventConsumer(pattern_for(), url=broker.url, exchange=exchange, queue=queue).open().close()
    return queue


@pytest.mark.timeout(90)
def test_a_handler_slower_than_the_heartbeat_handles_each_event_exactly_once(broker, publisher, exchange,
                                                                            cleanup):
    # A 1-second heartbeat: RabbitMQ drops a connection that misses two, so a handler that
    # kept the connection thread for 4 s lost it (raw StreamLostError) and every event
    # was delivered again to the next consumer.
    queue = durable_consumer_queue(broker, exchange, cleanup)
    ids = [publish_task(publisher, finished_task("pkg.tasks.slow", "FAILURE")) for _ in range(2)]
    seen: list[TaskEvent] = []

    def slow(event: TaskEvent) -> None:
        seen.append(event)
        time.sleep(4)

    with EventConsumer(pattern_for(), url=with_query(broker.url, "heartbeat=1"), exchange=exchange,
                       queue=queue) as consumer:
        assert consumer.run(slow, max_messages=2, timeout=60) == 2
        left = consumer.pending()
    assert [event.message_id for event in seen] == ids
    assert not any(event.redelivered for event in seen)
    assert left == 0
    # Both were acknowledged: a second consumer of the queue gets nothing again.
    again: list[TaskEvent] = []
    assert consume(again.append, pattern_for(), url=broker.url, exchange=exchange, queue=queue, timeout=2) == 0
    assert again == []


@pytest.mark.timeout(60)
def test_a_timeout_lets_the_running_handler_finish_and_acknowledges_its_event(broker, publisher, exchange,
                                                                             cleanup):
    queue = durable_consumer_queue(broker, exchange, cleanup)
    first = publish_task(publisher, finished_task("pkg.tasks.slow", "SUCCESS"))
    second = publish_task(publisher, finished_task("pkg.tasks.slow", "SUCCESS"))
    seen: list[str] = []

    def slow(event: TaskEvent) -> None:
        time.sleep(3)
        seen.append(event.message_id)

    with EventConsumer(pattern_for(), url=with_query(broker.url, "heartbeat=1"), exchange=exchange,
                       queue=queue) as consumer:
        started = time.monotonic()
        assert consumer.run(slow, timeout=1) == 1
        took = time.monotonic() - started
        # The second event was prefetched but never handled: it is back in the queue.
        left = settles_at(consumer, 1)
    assert seen == [first]
    assert 3 <= took < 10
    assert left == 1
    rest: list[TaskEvent] = []
    consume(rest.append, pattern_for(), url=broker.url, exchange=exchange, queue=queue, max_messages=1, timeout=10)
    assert [event.message_id for event in rest] == [second]


def test_events_prefetched_but_not_handled_go_back_to_the_queue(broker, publisher, exchange, cleanup):
    queue = durable_consumer_queue(broker, exchange, cleanup)
    ids = [publish_task(publisher, finished_task("pkg.tasks.a", "SUCCESS")) for _ in range(5)]
    seen: list[TaskEvent] = []
    with EventConsumer(pattern_for(), url=broker.url, exchange=exchange, queue=queue, prefetch=10) as consumer:
        assert consumer.run(seen.append, max_messages=2, timeout=30) == 2
        assert settles_at(consumer, 3) == 3
        # The same consumer runs again and gets the rest, in order.
        assert consumer.run(seen.append, max_messages=3, timeout=30) == 3
        assert consumer.pending() == 0
    assert [event.message_id for event in seen] == ids


class Proxy:
    """A TCP relay to the broker whose open connections the test can cut (a lost network)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Reset every connection relayed so far; new ones are still accepted."""
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for sock in sockets:
            # shutdown, not only close: it wakes the relay thread blocked in recv() on the
            # socket, so both ends (the consumer and the broker) see the connection end now.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


@pytest.mark.timeout(60)
def test_a_lost_connection_is_a_consumer_error_and_run_again_reconnects(broker, publisher, exchange, cleanup):
    queue = durable_consumer_queue(broker, exchange, cleanup)
    parts = urlsplit(broker.url)
    proxy = Proxy(parts.hostname, parts.port)
    url = urlunsplit((parts.scheme, f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}", parts.path, "", ""))
    message_id = publish_task(publisher, finished_task("pkg.tasks.a", "FAILURE"))
    handled: set[str] = set()
    calls: list[TaskEvent] = []
    returned: list[str] = []

    def handler(event: TaskEvent) -> None:
        # The documented duplicate check: act once per message id.
        calls.append(event)
        if event.message_id in handled:
            return
        if len(calls) == 1:
            proxy.cut()  # the network goes away while the event is being handled
            time.sleep(1)
        handled.add(event.message_id)
        returned.append(event.message_id)

    consumer = EventConsumer(pattern_for(), url=url, exchange=exchange, queue=queue)
    try:
        with pytest.raises(ConsumerError) as caught:
            consumer.run(handler, max_messages=1, timeout=30)
        # run() raised only once its handler had returned: never two handlers at once.
        assert returned == [message_id]
        message = str(caught.value)
        assert "connection" in message and "run() again to reconnect" in message
        assert f":{parts.password}@" not in message and ":***@" in message
        # The ack could not be sent: the broker put the event back. run() reconnects.
        assert consumer.run(handler, max_messages=1, timeout=30) == 1
        assert consumer.pending() == 0
    finally:
        consumer.close()
        proxy.close()
    assert [event.message_id for event in calls] == [message_id, message_id]
    assert calls[1].redelivered is True
    assert handled == {message_id}


@pytest.mark.timeout(60)
def test_deleting_the_queue_under_a_running_consumer_is_a_consumer_error(broker, exchange, amqp, cleanup):
    queue = durable_consumer_queue(broker, exchange, cleanup)
    cleanup["queues"].remove(queue)

    def delete_queue() -> None:
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))
        connection.channel().queue_delete(queue)
        connection.close()

    timer = threading.Timer(1.0, delete_queue)
    with EventConsumer(pattern_for(), url=broker.url, exchange=exchange, queue=queue) as consumer:
        timer.start()
        started = time.monotonic()
        with pytest.raises(ConsumerError, match="cancelled the consumer"):
            consumer.run(lambda event: None, timeout=30)
    assert time.monotonic() - started < 10
