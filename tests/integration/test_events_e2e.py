"""Events end to end: the operator publishes, RabbitMQ stops and starts, nothing is lost.

Tests that stop RabbitMQ use a private broker of their own (the devcluster's RabbitMQ
component with its own state directory and ports), so stopping it cannot disturb other
tests or another test session using the shared `broker`.

Figures (events sent vs. arrived) are printed; run with `-s` to see them.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from devcluster import cluster as local
from devcluster import procs, rabbitmq
from devcluster.config import ClusterConfig
from devcluster.testing import free_loopback_port
from lime_task.events import EventConsumer, TaskEvent, event_message_id, pattern_for, routing_key
from lime_task_operator.publisher import EventPublisher, PublishError

from ._operator_helpers import Api, condition, confirmed, drain, state

pytestmark = pytest.mark.integration

T = "sample_tasks.tasks"


# -- a broker these tests may stop ---------------------------------------------------------


class PrivateBroker:
    """A RabbitMQ node of our own, started and stopped with the devcluster's code."""

    def __init__(self, state_dir) -> None:
        # Ports from the tests' band (below the ephemeral range, never handed out twice):
        # the node is restarted on the same ports, which nobody may take in between.
        ports = {name: free_loopback_port() for name in ("amqp_port", "rabbit_dist_port", "epmd_port")}
        self.cfg = replace(ClusterConfig.from_env(), state_dir=state_dir, rabbit_management=False, **ports)
        self.url = self.cfg.broker_url
        self.epmd, self.rabbit = rabbitmq.components(self.cfg)

    def start(self) -> None:
        rabbitmq.ensure_installed()
        for component in (self.epmd, self.rabbit):
            local.ensure_running(self.cfg, component)

    def stop(self) -> None:
        """Stop RabbitMQ (SIGTERM, the way a node shuts down); epmd stays up."""
        procs.stop(self.rabbit.pid_file(self.cfg), self.rabbit.marker, grace=30)

    def down(self) -> None:
        for component in (self.rabbit, self.epmd):
            procs.stop(component.pid_file(self.cfg), component.marker, grace=30)


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory):
    node = PrivateBroker(tmp_path_factory.mktemp("rabbit"))
    node.start()
    try:
        yield node
    finally:
        node.down()


@pytest.fixture
def running_private_broker(private_broker):
    """The private broker, running at the start and restarted afterwards whatever happened."""
    private_broker.start()
    yield private_broker
    private_broker.start()


def unique(prefix: str) -> str:
    return f"test.{prefix}.{uuid.uuid4().hex[:10]}"


def durable_queue(url: str) -> tuple[str, str]:
    """(exchange, queue): a fresh exchange and a durable queue bound to every task event
    of it, which keeps what arrives while nobody reads."""
    exchange, queue = unique("exchange"), unique("queue")
    EventConsumer(pattern_for(), url=url, exchange=exchange, queue=queue).open().close()
    return exchange, queue


def wait_unpublished(api: Api, expected: dict[str, str]) -> list[dict]:
    """Wait until each task of `expected` (name -> state) ended in its state with an event
    not yet published; the tasks, in the order of `expected`."""
    ended = []
    for name, wanted in expected.items():
        obj = api.wait(name, terminal_with_failed_event, timeout=150, what="end with an unpublished event")
        assert state(obj) == wanted
        ended.append(obj)
    return ended


def terminal_with_failed_event(obj) -> bool:
    if not obj or state(obj) not in ("SUCCESS", "FAILURE"):
        return False
    conditions = {c["type"]: c for c in obj["status"].get("conditions", [])}
    return conditions.get("EventPublished", {}).get("status") == "False"


def create_mixed(api: Api, count: int) -> dict[str, str]:
    """`count` tasks, alternately succeeding and failing; name -> expected state."""
    expected = {}
    for i in range(count):
        if i % 2 == 0:
            expected[api.create(f"{T}.add", i, 1)] = "SUCCESS"
        else:
            expected[api.create(f"{T}.fail", f"boom {i}")] = "FAILURE"
    return expected


def assert_exactly_once(events, tasks: dict[str, dict], label: str) -> None:
    sent = {event_message_id(obj["metadata"]["uid"], state(obj)) for obj in tasks.values()}
    arrived = [properties.message_id for _, _, properties in events]
    duplicates = len(arrived) - len(set(arrived))
    print(f"\n[{label}] events sent (confirmed tasks): {len(sent)}, arrived: {len(arrived)}, "
          f"distinct: {len(set(arrived))}, duplicates: {duplicates}, missing: {len(sent - set(arrived))}")
    assert sorted(arrived) == sorted(sent)


# -- the publisher survives a broker restart ------------------------------------------------


@pytest.mark.timeout(240)
def test_the_same_publisher_recovers_after_a_broker_restart(running_private_broker):
    node = running_private_broker
    exchange, queue = durable_queue(node.url)
    publisher = EventPublisher(node.url, exchange)
    try:
        now = datetime.now(timezone.utc)
        publisher.publish("core.task.pkg.a.success.v1", {"n": 1}, "before-restart", now)

        node.stop()
        for _ in range(2):  # the stale connection, then a fresh attempt: both fail fast
            with pytest.raises(PublishError) as caught:
                publisher.publish("core.task.pkg.a.success.v1", {"n": 2}, "after-restart", now)
            assert caught.value.reason == "BrokerUnreachable"

        node.start()
        publisher.publish("core.task.pkg.a.success.v1", {"n": 2}, "after-restart", now)

        # A restart between two publishes: the kept connection is dead, but the publisher
        # notices before sending and reconnects within the same call.
        node.stop()
        node.start()
        publisher.publish("core.task.pkg.a.success.v1", {"n": 3}, "after-idle-restart", now)
    finally:
        publisher.close()
    events = drain(node.url, queue)
    # Persistent messages in a durable queue survived both restarts.
    assert [p.message_id for _, _, p in events] == ["before-restart", "after-restart", "after-idle-restart"]
    assert [body["n"] for _, body, _ in events] == [1, 2, 3]


# -- the operator publishes one event per finished task ----------------------------------------


@pytest.mark.timeout(240)
def test_the_operator_publishes_one_event_per_finished_task(operator, namespace, api, broker):
    exchange = unique("exchange")
    with EventConsumer(pattern_for(), url=broker.url, exchange=exchange) as consumer:
        operator(namespace, BROKER_URL=broker.url, EXCHANGE=exchange)
        ok = api.create(f"{T}.add", 2, 3)
        bad = api.create(f"{T}.fail", "boom")
        done = {name: api.wait(name, confirmed, timeout=120, what="confirmed event") for name in (ok, bad)}
        # A confirm means the broker routed the message: both are in the queue now.
        assert consumer.pending() == 2
        seen: list[TaskEvent] = []
        assert consumer.run(seen.append, max_messages=2, timeout=60) == 2

    by_id = {event.task_id: event for event in seen}
    assert set(by_id) == {ok, bad}
    for name, obj in done.items():
        event, status = by_id[name], obj["status"]
        assert event.routing_key == routing_key(f"{T}.{'add' if name == ok else 'fail'}", status["state"])
        assert event.routing_key == status["event"]["routingKey"]
        assert event.message_id == status["event"]["messageId"] == f"{obj['metadata']['uid']}.{status['state'].lower()}"
        assert event.uid == obj["metadata"]["uid"]
        assert event.namespace == namespace and event.app == "demo"
        assert event.attempts == status["attempts"] == 1
        assert event.reason == status["reason"]
        assert event.finished_at == datetime.fromisoformat(status["finishedAt"])
        assert event.started_at == datetime.fromisoformat(status["startedAt"])
        assert event.created_at == datetime.fromisoformat(obj["metadata"]["creationTimestamp"])
        assert event.timestamp == datetime.fromisoformat(status["finishedAt"])
        assert condition(obj, "EventPublished")["status"] == "True"
    assert by_id[ok].result == {"app": "demo", "sum": 5, "description": "added 2 and 3"}
    assert by_id[ok].error is None and by_id[ok].succeeded
    assert by_id[bad].result is None and not by_id[bad].succeeded
    assert (by_id[bad].error["type"], by_id[bad].error["message"]) == ("ValueError", "boom")


# -- a broker outage delays events but loses none ---------------------------------------------


TASKS_IN_OUTAGE = 6


@pytest.mark.timeout(420)
def test_events_of_tasks_that_finish_during_a_broker_outage_arrive_exactly_once(
    operator, namespace, api, running_private_broker
):
    node = running_private_broker
    exchange, queue = durable_queue(node.url)
    operator(namespace, BROKER_URL=node.url, EXCHANGE=exchange)
    warm = api.create(f"{T}.add", 0, 0)  # the operator's connection is open before the outage
    api.wait(warm, confirmed, timeout=120, what="confirmed event")

    node.stop()
    expected = create_mixed(api, TASKS_IN_OUTAGE)
    for obj in wait_unpublished(api, expected):  # tasks ran and their status was written during the outage
        assert condition(obj, "EventPublished")["reason"] == "BrokerUnreachable"

    node.start()
    # Retries back off to at most 60s: allow a few rounds.
    tasks = {name: api.wait(name, confirmed, timeout=200, what="confirmed event") for name in [warm, *expected]}
    assert_exactly_once(drain(node.url, queue), tasks, "broker outage")


@pytest.mark.timeout(420)
def test_an_operator_killed_before_publishing_still_delivers_after_restart(
    operator, namespace, api, running_private_broker
):
    node = running_private_broker
    exchange, queue = durable_queue(node.url)
    node.stop()
    handle = operator(namespace, BROKER_URL=node.url, EXCHANGE=exchange)
    expected = create_mixed(api, 4)
    wait_unpublished(api, expected)

    handle.kill()  # SIGKILL: whatever the operator held in memory is gone
    node.start()
    handle.start()
    tasks = {name: api.wait(name, confirmed, timeout=200, what="confirmed event") for name in expected}
    assert_exactly_once(drain(node.url, queue), tasks, "operator killed")
