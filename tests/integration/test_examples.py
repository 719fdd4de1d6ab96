"""The numbered examples (examples/0N-*/) run as their READMEs say, against the real
cluster, broker and operator.

Each test runs its own operator restricted to its own namespace, and (for events) its own
exchange and queue, so the examples cannot see each other's tasks or events.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from lime_task.events import EventConsumer, dead_letter_names, pattern_for
from tests.example_modules import EXAMPLES, load_example

from ._operator_helpers import condition, confirmed, drain, state

pytestmark = pytest.mark.integration

T = "sample_tasks.tasks"


# -- 01: the LimeTask manifest -------------------------------------------------------------


def test_01_first_task_manifest_reaches_success(cluster, operator, namespace, api):
    operator(namespace)
    manifest = EXAMPLES / "01-first-task" / "limetask.yaml"
    created = cluster.kubectl("create", "-n", namespace, "-f", str(manifest), "-o", "name").stdout.strip()
    kind, _, name = created.partition("/")
    assert kind == "limetask.limetask.dev" and name.startswith("first-task-"), created

    # The README's readiness check: kubectl wait on the Succeeded condition.
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Succeeded", created, "--timeout=120s")
    done = api.get(name)
    assert state(done) == "SUCCESS", done.get("status")
    assert done["status"]["result"] == {"app": "my-app", "sum": 5, "description": "added 2 and 3"}
    assert condition(done, "Succeeded")["reason"] == "Completed"
    # The README's `kubectl get lt -l limetask.dev/app=my-app` finds it by its label.
    listed = cluster.kubectl("get", "lt", "-n", namespace, "-l", "limetask.dev/app=my-app", "-o", "name").stdout
    assert listed.split() == [created]


# -- 02: the failure mailer ----------------------------------------------------------------


@pytest.fixture
def failure_mailer():
    return load_example(EXAMPLES / "02-failure-mailer" / "failure_mailer.py", "example_failure_mailer")


@pytest.fixture
def mailer_queue(operator, namespace, broker) -> tuple[str, str]:
    """(exchange, queue): the mailer's durable queue on a fresh exchange, made before any
    event (what its README promises is that failures wait in it, also while the mailer is
    not running yet), and an operator publishing there."""
    exchange = f"test.examples.{uuid.uuid4().hex[:10]}"
    queue = f"test.mailer.{uuid.uuid4().hex[:10]}"
    EventConsumer(pattern_for(failures=True), url=broker.url, exchange=exchange, queue=queue,
                  dead_letter=True).open().close()
    operator(namespace, BROKER_URL=broker.url, EXCHANGE=exchange)
    return exchange, queue


@pytest.mark.timeout(240)
def test_02_failure_mailer_mails_one_line_per_failed_task_and_none_for_successes(
    api, broker, failure_mailer, mailer_queue
):
    exchange, queue = mailer_queue

    # A success first, confirmed by the broker before the failure is even created: had
    # the mailer's binding routed it, it would be first in the queue and first mailed.
    ok = api.create(f"{T}.add", 2, 3, app="billing")
    assert state(api.wait(ok, confirmed, timeout=120, what="confirmed event")) == "SUCCESS"
    bad = api.create(f"{T}.fail", "the report service is down\nsecond line", app="billing")
    failed = api.wait(bad, confirmed, timeout=120, what="confirmed event")
    assert state(failed) == "FAILURE"

    mails: list[str] = []
    mailer = failure_mailer.FailureMailer(send=mails.append, recipient="ops@example.com")
    handled: list[int] = []
    worker = threading.Thread(
        target=lambda: handled.append(
            failure_mailer.run(mailer, queue=queue, url=broker.url, exchange=exchange, max_messages=1, timeout=90)
        ),
        daemon=True,
    )
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "the mailer did not return"
    assert handled == [1]
    assert mails == [
        f"To: ops@example.com | Subject: task {T}.fail failed for app billing "
        f"(task {bad}, reason TaskRaised, attempts 1): ValueError: the report service is down"
    ]
    with EventConsumer(pattern_for(failures=True), url=broker.url, exchange=exchange, queue=queue,
                       dead_letter=True) as consumer:
        assert consumer.pending() == 0  # the success never reached the mailer's queue


@pytest.mark.timeout(240)
def test_02_a_mail_that_cannot_be_sent_is_dead_lettered_not_lost(
    api, broker, failure_mailer, mailer_queue
):
    exchange, queue = mailer_queue
    bad = api.create(f"{T}.fail", "boom")
    api.wait(bad, confirmed, timeout=120, what="confirmed event")

    def smtp_down(line: str) -> None:
        raise ConnectionRefusedError("SMTP server refused the connection")

    assert failure_mailer.run(failure_mailer.FailureMailer(send=smtp_down), queue=queue, url=broker.url,
                              exchange=exchange, max_messages=1, timeout=60) == 1

    _, dead_queue = dead_letter_names(queue)
    parked = [body for _, body, _ in drain(broker.url, dead_queue)]
    assert [body["id"] for body in parked] == [bad]
    assert parked[0]["state"] == "FAILURE"


# -- 03: the application factory ----------------------------------------------------------


def factory_env(**extra: str) -> str:
    """EXTRA_ENV for task pods: the factory named (factory_demo is in the tasks image)."""
    return json.dumps({
        "LIME_TASK_APP_FACTORY": "factory_demo.app:create_app",
        **extra,
    })


def test_03_app_factory_builds_the_app_the_task_receives(operator, namespace, api):
    operator(namespace, EXTRA_ENV=factory_env(FACTORY_DEMO_SETTINGS='{"currency": "EUR"}'))
    name = api.create("factory_demo.tasks.quote_order", 1001, 250, app="my-app")
    status = api.wait_state(name, "SUCCESS", "FAILURE", timeout=120)["status"]
    assert status["state"] == "SUCCESS", status
    assert status["result"] == {
        "app": "my-app",
        "appType": "CompanyApp",  # not the default lime_task.Application
        "environment": "development",  # a default the factory kept
        "companyId": 1001,
        "price": "250.00 EUR",  # the setting the pod's environment gave the factory
    }


def test_03_a_factory_that_raises_fails_the_task_as_task_raised(operator, namespace, api):
    operator(namespace, EXTRA_ENV=factory_env(FACTORY_DEMO_SETTINGS="[1, 2]"))
    name = api.create("factory_demo.tasks.quote_order", 1001, 250, app="my-app", retries=1)
    status = api.wait_state(name, "SUCCESS", "FAILURE", timeout=120)["status"]
    assert (status["state"], status["reason"]) == ("FAILURE", "TaskRaised"), status
    assert status["error"]["type"] == "SettingsError"
    assert "FACTORY_DEMO_SETTINGS must be a JSON object" in status["error"]["message"]
    assert status["attempts"] == 2  # retried, unlike a factory that cannot be loaded


def test_03_a_factory_that_cannot_be_imported_fails_once_as_could_not_load(operator, namespace, api):
    operator(namespace, EXTRA_ENV=factory_env(LIME_TASK_APP_FACTORY="factory_demo.no_such_module:create_app"))
    name = api.create("factory_demo.tasks.quote_order", 1001, 250, app="my-app", retries=2)
    status = api.wait_state(name, "SUCCESS", "FAILURE", timeout=120)["status"]
    assert (status["state"], status["reason"]) == ("FAILURE", "CouldNotLoad"), status
    assert "factory_demo.no_such_module" in status["error"]["message"]
    assert status["attempts"] == 1
