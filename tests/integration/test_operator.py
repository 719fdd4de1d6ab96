"""The operator against the real control plane: one test per behaviour of issue #4.

Each test runs its own operator restricted to its own namespace. Sample tasks live in
examples/sample_tasks, which the tasks image (the operator's default image) contains.
"""

from __future__ import annotations

import json
import time

import pytest

from lime_task.constants import MAX_ARGUMENTS_BYTES

from ._operator_helpers import condition, running_containers, state, wait_for

pytestmark = pytest.mark.integration

T = "sample_tasks.tasks"


def test_success_records_result_times_job_and_events(operator, namespace, api):
    operator(namespace, KUBE_EVENTS="all")
    name = api.create(f"{T}.add", 2, 3)
    done = api.wait_state(name, "SUCCESS", "FAILURE")
    status = done["status"]
    assert status["state"] == "SUCCESS", status
    assert status["reason"] == "Completed"
    assert status["result"] == {"app": "demo", "sum": 5, "description": "added 2 and 3"}
    assert "error" not in status
    assert status["attempts"] == 1
    assert status["jobName"] == f"lt-{name}"
    assert status["startedAt"] and status["finishedAt"] and status["duration"].endswith("s")
    assert status["observedGeneration"] == done["metadata"]["generation"]
    succeeded = condition(done, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("True", "Completed")
    events = condition(done, "EventPublished")
    assert (events["status"], events["reason"]) == ("False", "EventsDisabled")

    [job] = api.jobs(name)
    [owner] = job.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("LimeTask", name, done["metadata"]["uid"])
    assert owner.controller is True
    # Events are posted after the status write that they record: wait for them.
    wait_for(lambda: {"Pending", "Completed"} <= {e.reason for e in api.events(name)},
             "the Pending and Completed Events", 30)


def test_task_that_raises_fails_with_its_error(operator, namespace, api):
    operator(namespace)
    name = api.create(f"{T}.fail", "boom")
    status = api.wait_state(name, "SUCCESS", "FAILURE")["status"]
    assert (status["state"], status["reason"]) == ("FAILURE", "TaskRaised")
    assert status["error"]["type"] == "ValueError"
    assert status["error"]["message"] == "boom"
    assert "ValueError" in status["error"]["traceback"]
    assert status["attempts"] == 1
    assert "result" not in status
    # Failures are recorded as Warning Events by default (KUBE_EVENTS=failures); the
    # transitions before it are not.
    # The Event is posted after the status write it records.
    events = wait_for(lambda: api.events(name), "the task's Event", 30)
    assert [(e.type, e.reason) for e in events] == [("Warning", "TaskRaised")]


@pytest.mark.parametrize("task", [f"{T}.does_not_exist", "sample_tasks.no_such_module.fn",
                                  f"{T}.not_a_task", "os.system"])
def test_unloadable_tasks_fail_once_without_retry(operator, namespace, api, task):
    operator(namespace)
    name = api.create(task, "echo should-never-run", retries=3) if task == "os.system" else api.create(task, retries=3)
    status = api.wait_state(name, "SUCCESS", "FAILURE")["status"]
    assert (status["state"], status["reason"]) == ("FAILURE", "CouldNotLoad"), status
    assert status["attempts"] == 1  # exit code 3 is never retried despite retries=3
    assert len(api.pods(name)) == 1


def test_timeout_ends_as_deadline_exceeded(operator, namespace, api):
    operator(namespace)
    name = api.create(f"{T}.sleep", 120, timeoutSeconds=2)
    status = api.wait_state(name, "SUCCESS", "FAILURE", timeout=120)["status"]
    assert (status["state"], status["reason"]) == ("FAILURE", "DeadlineExceeded"), status
    assert "timeoutSeconds=2" in status["error"]["message"]
    assert not running_containers(api, name)


def test_retry_succeeds_on_the_second_attempt(operator, namespace, api):
    operator(namespace)
    # Fails while the clock is before `until`: the first attempt starts within a few
    # seconds; the Job controller starts the retry no sooner than 10 s after the failure.
    until = time.time() + 8
    name = api.create(f"{T}.flaky", until, retries=2)
    status = api.wait_state(name, "SUCCESS", "FAILURE", timeout=120)["status"]
    assert status["state"] == "SUCCESS", status
    assert status["attempts"] == 2
    assert status["result"]["failedUntil"] == until and status["result"]["ranAt"] >= until


def test_deleting_a_running_task_cancels_its_work(operator, namespace, api):
    operator(namespace)
    name = api.create(f"{T}.sleep", 120)
    api.wait_state(name, "STARTED")
    deadline = time.monotonic() + 30
    while not running_containers(api, name):  # the task's container is up
        assert time.monotonic() < deadline, "the task's container never ran"
        time.sleep(0.2)
    api.delete(name)
    api.wait_gone(name)
    deadline = time.monotonic() + 90
    # A pod object goes away only once kubelet has stopped its containers.
    while api.jobs(name) or api.pods(name):
        assert time.monotonic() < deadline, "the Job or pod outlived its task"
        time.sleep(0.3)


def test_deleting_only_the_job_fails_the_task_as_cancelled(operator, namespace, api):
    operator(namespace)
    name = api.create(f"{T}.sleep", 120)
    api.wait_state(name, "STARTED")
    api.batch.delete_namespaced_job(f"lt-{name}", namespace, propagation_policy="Background")
    status = api.wait_state(name, "SUCCESS", "FAILURE")["status"]
    assert (status["state"], status["reason"]) == ("FAILURE", "Cancelled")
    assert f"lt-{name} was deleted" in status["error"]["message"]
    # Never re-run behind the user's back.
    time.sleep(2)
    assert api.jobs(name) == []


def test_max_running_queues_and_starts_in_creation_order(operator, namespace, api):
    operator(namespace, MAX_RUNNING=1, KUBE_EVENTS="all")
    names = [api.create(f"{T}.sleep", 1, name=f"q{i}-{namespace[-6:]}") for i in range(4)]
    started_order: list[str] = []
    saw_queued = set()
    deadline = time.monotonic() + 150
    while True:
        tasks = {t["metadata"]["name"]: t for t in api.tasks()}
        holding = [n for n, t in tasks.items() if (t.get("status") or {}).get("jobName")
                   and state(t) not in ("SUCCESS", "FAILURE")]
        assert len(holding) <= 1, f"more than MAX_RUNNING=1 tasks hold a Job: {holding}"
        for n, t in tasks.items():
            if (t.get("status") or {}).get("reason") == "Queued":
                saw_queued.add(n)
            if (t.get("status") or {}).get("jobName") and n not in started_order:
                started_order.append(n)
        if all(state(t) == "SUCCESS" for t in tasks.values()) and len(tasks) == 4:
            break
        assert time.monotonic() < deadline, f"not all done: {[(n, state(t)) for n, t in tasks.items()]}"
        time.sleep(0.1)
    assert started_order == names
    assert set(names[1:]) <= saw_queued
    wait_for(lambda: "Queued" in {e.reason for e in api.events(names[-1])}, "a Queued Event", 30)


def test_max_running_per_app_lets_other_apps_run(operator, namespace, api):
    operator(namespace, MAX_RUNNING_PER_APP=1)
    first = api.create(f"{T}.sleep", 4, app="app-x")
    api.wait_state(first, "STARTED")
    second = api.create(f"{T}.sleep", 1, app="app-x")
    other = api.create(f"{T}.sleep", 1, app="app-y")
    # app-y is not held up by app-x's limit...
    assert api.wait_state(other, "SUCCESS")["status"]["state"] == "SUCCESS"
    # ...while app-x's second task still waits for the first to end.
    if state(api.get(first)) != "SUCCESS":
        waiting = api.get(second)["status"]
        assert (waiting["state"], waiting["reason"]) == ("PENDING", "Queued")
        assert "jobName" not in waiting
    assert api.wait_state(second, "SUCCESS")["status"]["state"] == "SUCCESS"
    assert api.get(first)["status"]["state"] == "SUCCESS"


def test_finished_tasks_are_deleted_after_their_ttl(operator, namespace, api):
    operator(namespace, DEFAULT_TTL_SECONDS=3600)
    short = api.create(f"{T}.add", 1, 1, ttlSecondsAfterFinished=1)
    kept = api.create(f"{T}.add", 1, 2)
    api.wait_state(kept, "SUCCESS")
    api.wait_gone(short, timeout=60)
    assert api.get(kept)["status"]["state"] == "SUCCESS"  # the default TTL is an hour
    deadline = time.monotonic() + 60
    while api.jobs(short):  # its Job goes with it (garbage collection)
        assert time.monotonic() < deadline, "the Job outlived its deleted task"
        time.sleep(0.3)


def test_event_is_published_and_confirmed_before_ttl_deletion(operator, namespace, api, broker):

    operator(namespace, BROKER_URL=broker.url, EXCHANGE=f"ex-{namespace}")
    name = api.create(f"{T}.add", 1, 1, ttlSecondsAfterFinished=3)
    done = api.wait(name, lambda o: bool(o) and bool(((o.get("status") or {}).get("event") or {}).get("confirmedAt")),
                    what="confirmed event")
    event = done["status"]["event"]
    assert event["routingKey"] == "core.task.sample_tasks.tasks.add.success.v1"
    assert event["messageId"] == f"{done['metadata']['uid']}.success"
    assert condition(done, "EventPublished")["status"] == "True"
    api.wait_gone(name, timeout=60)


def test_broker_outage_delays_the_event_but_not_the_task_nor_its_deletion_guard(operator, namespace, api):
    # Port 1 on loopback: nothing listens, connections are refused at once.
    operator(namespace, BROKER_URL="amqp://guest:guest@127.0.0.1:1/")
    name = api.create(f"{T}.add", 2, 2, ttlSecondsAfterFinished=0)
    done = api.wait(name, lambda o: bool(o) and state(o) == "SUCCESS"
                    and any(c["type"] == "EventPublished" for c in o["status"].get("conditions", [])),
                    what="SUCCESS with an EventPublished condition")
    published = condition(done, "EventPublished")
    assert published["status"] == "False"
    assert published["reason"] == "BrokerUnreachable"
    assert "guest:guest" not in published["message"]
    time.sleep(3)  # TTL 0 has long passed: the unconfirmed event keeps the task
    assert api.get(name) is not None


def test_invalid_tasks_fail_as_invalid_task_without_a_job(cluster, operator, namespace, api):
    tasks_image = cluster.images["tasks"]
    # The allowed list names the tasks image's repository (any tag of it).
    operator(namespace, ALLOWED_IMAGES=tasks_image.rpartition(":")[0])
    bad_image = api.create(f"{T}.add", 1, 1, image="evil.example/miner:1")
    too_big = api.create(f"{T}.hello", "x" * (MAX_ARGUMENTS_BYTES + 10))
    good = api.create(f"{T}.add", 1, 1, image=tasks_image)
    for name, fragment in ((bad_image, "image 'evil.example/miner:1' is not allowed"),
                           (too_big, f"the limit is {MAX_ARGUMENTS_BYTES}")):
        status = api.wait_state(name, "SUCCESS", "FAILURE")["status"]
        assert (status["state"], status["reason"]) == ("FAILURE", "InvalidTask"), status
        assert fragment in status["error"]["message"]
        assert status["attempts"] == 0
        assert api.jobs(name) == []
    assert api.wait_state(good, "SUCCESS", "FAILURE")["status"]["state"] == "SUCCESS"


def test_no_image_for_the_app_is_an_invalid_task(cluster, operator, namespace, api):
    tasks_image = cluster.images["tasks"]
    operator(namespace, DEFAULT_IMAGE="", APP_IMAGES=json.dumps({"billing": tasks_image}))
    orphan = api.create(f"{T}.add", 1, 1, app="nobody")
    billed = api.create(f"{T}.add", 1, 1, app="billing")
    status = api.wait_state(orphan, "SUCCESS", "FAILURE")["status"]
    assert (status["state"], status["reason"]) == ("FAILURE", "InvalidTask")
    assert "no image configured for app 'nobody'" in status["error"]["message"]
    assert api.wait_state(billed, "SUCCESS", "FAILURE")["status"]["state"] == "SUCCESS"
    [job] = api.jobs(billed)
    assert job.spec.template.spec.containers[0].image == tasks_image
