"""LimeTaskSchedules against the real cluster, operator and broker.

A schedule every minute would make these tests take many minutes, so the operator runs
with its documented TEST-ONLY clock (lime_task_operator.schedule_clock): with
``TEST_ONLY_SCHEDULE_CLOCK=<anchor>:<speed>`` the schedules see time run ``speed`` times
faster from ``anchor`` (a virtual minute lasts 60/speed real seconds), the same for a
restarted operator given the same value. Tasks, Jobs and pods run in real time.
"""

from __future__ import annotations

import importlib.util
import io
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Optional

import pytest
import yaml
from kubernetes import client

from devcluster.config import REPO_ROOT
from lime_task import cli
from lime_task.constants import ANNOTATION_INSTANTIATE, ANNOTATION_SCHEDULED_AT, GROUP, LABEL_SCHEDULE, PLURAL, \
    SCHEDULE_CRD_NAME, SCHEDULE_PLURAL, VERSION
from lime_task.events import EventConsumer, pattern_for
from lime_task_operator import schedule

from ._operator_helpers import state, wait_for

pytestmark = pytest.mark.integration

T = "sample_tasks.tasks"
SPEED = 20  # a virtual minute is 3 real seconds
MINUTE = 60 / SPEED


@pytest.fixture(scope="session")
def schedule_crd(cluster, crd):
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds" / "limetaskschedule.yaml"))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{SCHEDULE_CRD_NAME}", "--timeout=60s")
    return SCHEDULE_CRD_NAME


class Schedules:
    """The schedules and scheduled tasks of one namespace, read through the API."""

    def __init__(self, api_client, namespace: str) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    def create(self, name: str, schedule_text: str = "* * * * *", task: str = f"{T}.add", args=(2, 3),
               **spec) -> dict:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LimeTaskSchedule", "metadata": {"name": name},
                "spec": {"schedule": schedule_text, "taskTemplate": {"task": task, "app": "sched", "args": list(args)},
                         **spec}}
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, SCHEDULE_PLURAL, body)

    def get(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, SCHEDULE_PLURAL, name)

    def tasks(self, name: str) -> list[dict]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                          label_selector=f"{LABEL_SCHEDULE}={name}")["items"]
        return sorted(items, key=lambda t: t["metadata"]["name"])

    def scheduled(self, name: str) -> list[datetime]:
        return sorted(schedule.parse_time(t["metadata"]["annotations"][ANNOTATION_SCHEDULED_AT])
                      for t in self.tasks(name) if ANNOTATION_SCHEDULED_AT in t["metadata"].get("annotations", {}))

    def event_reasons(self, name: str) -> list[str]:
        return [e.reason for e in self.core.list_namespaced_event(self.namespace).items
                if e.involved_object.kind == "LimeTaskSchedule" and e.involved_object.name == name]

    def wait_for(self, what: str, predicate, timeout: float = 60):
        return wait_for(predicate, what, timeout, interval=0.3)


@pytest.fixture
def schedules(cluster, schedule_crd, namespace):
    with cluster.api_client() as api_client:
        yield Schedules(api_client, namespace)


def fast_operator(operator, namespace, anchor: float, **settings):
    return operator(namespace, TEST_ONLY_SCHEDULE_CLOCK=f"{anchor}:{SPEED}", **settings)


def real_time(anchor: float, virtual: datetime) -> float:
    """When the fast clock shows `virtual`, in real Unix seconds."""
    return anchor + (virtual.timestamp() - anchor) / SPEED


def run_cli(cluster, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    import os

    saved = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    try:
        code = cli.main(list(argv), out=out, err=err)
    finally:
        if saved is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = saved
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------ the resource


def test_the_api_server_refuses_malformed_schedules_naming_the_problem(cluster, schedule_crd, namespace):
    def apply(spec: dict, name: str = "bad") -> str:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LimeTaskSchedule", "metadata": {"name": name},
                "spec": {"schedule": "* * * * *", "taskTemplate": {"task": f"{T}.add", "app": "a"}, **spec}}
        done = cluster.kubectl("create", "-n", namespace, "-f", "-", input=yaml.safe_dump(body), check=False)
        assert done.returncode != 0, f"accepted: {spec}"
        return done.stderr

    assert "five cron fields" in apply({"schedule": "* * * *"})
    assert "five cron fields" in apply({"schedule": "TZ=Europe/Oslo 0 2 * * *"})
    assert "concurrencyPolicy" in apply({"concurrencyPolicy": "Sometimes"})
    assert "taskTemplate.task" in apply({"taskTemplate": {"task": "nodots", "app": "a"}})
    assert "at most 52 characters" in apply({}, name="n" * 53)
    explained = cluster.kubectl("explain", "limetaskschedule.spec.concurrencyPolicy").stdout
    assert "Forbid skips it" in explained
    assert "lts" in cluster.kubectl("api-resources", "--categories=lime", "-o", "wide").stdout


def test_an_invalid_time_zone_is_reported_and_starts_nothing(operator, schedules, namespace):
    anchor = time.time()
    fast_operator(operator, namespace, anchor)
    schedules.create("tz", timeZone="Mars/Olympus_Mons")

    def ready():
        conditions = (schedules.get("tz").get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Ready"), None)

    condition = schedules.wait_for("Ready condition", ready, 30)
    assert condition["status"] == "False" and condition["reason"] == "InvalidTimeZone"
    assert "Mars/Olympus_Mons" in condition["message"]
    time.sleep(2 * MINUTE)
    assert schedules.tasks("tz") == []


# ------------------------------------------------------------------ runs


@pytest.mark.timeout(240)
def test_runs_start_on_time_once_per_due_time_across_an_operator_sigkill_and_a_twin(operator, schedules, namespace, cluster):
    anchor = time.time()
    process = fast_operator(operator, namespace, anchor)
    schedules.create("every", successfulTasksHistoryLimit=100, failedTasksHistoryLimit=100)
    schedules.wait_for("three runs", lambda: len(schedules.tasks("every")) >= 3, 60)

    for task in schedules.tasks("every"):
        due = schedule.parse_time(task["metadata"]["annotations"][ANNOTATION_SCHEDULED_AT])
        created = schedule.parse_time(task["metadata"]["creationTimestamp"]).timestamp()
        # creationTimestamp has whole seconds; the pass runs just after the due time.
        assert -1.0 <= created - real_time(anchor, due) <= 3.0, (task["metadata"]["name"], created, due)
        assert task["metadata"]["name"] == schedule.task_name("every", due)
        assert task["metadata"]["ownerReferences"][0]["kind"] == "LimeTaskSchedule"

    process.kill()  # SIGKILL: no clean-up at all
    before = schedules.scheduled("every")
    time.sleep(4 * MINUTE)  # four due times pass with no operator
    process.start()
    # And a second operator beside it (a duplicated Deployment, a botched rollout): both
    # decide every due time, the deterministic name makes the second creation a 409.
    twin = fast_operator(operator, namespace, anchor)
    schedules.wait_for("three runs after the restart",
                       lambda: len([t for t in schedules.scheduled("every") if t > before[-1]]) >= 3, 60)
    process.kill()
    twin.kill()
    times = schedules.scheduled("every")
    assert len(times) == len(set(times))
    assert all(t.second == 0 for t in times)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    # Every minute has its run, except the ones missed while the operator was down:
    # of those only the most recent started (one catch-up), so exactly one gap.
    assert sorted(set(gaps))[0] == 60 and len([g for g in gaps if g != 60]) == 1, gaps
    assert max(gaps) >= 180, gaps


@pytest.mark.timeout(300)
def test_forbid_never_runs_two_at_once(operator, schedules, namespace):
    anchor = time.time()
    fast_operator(operator, namespace, anchor)
    # Each run sleeps ~2.5 virtual minutes; the deadline lets an owed run start late.
    schedules.create("forbid", task=f"{T}.sleep", args=(6,), concurrencyPolicy="Forbid",
                     startingDeadlineSeconds=90, successfulTasksHistoryLimit=100)
    schedules.wait_for("two finished runs",
                       lambda: len([t for t in schedules.tasks("forbid") if state(t) == "SUCCESS"]) >= 2, 180)
    tasks = schedules.tasks("forbid")
    spans = sorted((schedule.parse_time(t["metadata"]["creationTimestamp"]),
                    schedule.parse_time((t.get("status") or {}).get("finishedAt")) or datetime.max.replace(
                        tzinfo=timezone.utc)) for t in tasks)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end - timedelta(seconds=1), spans  # one second: timestamps are whole seconds
    assert "RunSkipped" in schedules.event_reasons("forbid")
    status = schedules.get("forbid")["status"]
    assert status["activeCount"] <= 1


@pytest.mark.timeout(240)
def test_replace_cancels_the_unfinished_run(operator, schedules, namespace, api):
    anchor = time.time()
    fast_operator(operator, namespace, anchor)
    schedules.create("replace", task=f"{T}.sleep", args=(60,), concurrencyPolicy="Replace")
    first = schedules.wait_for("a first run", lambda: [t["metadata"]["name"] for t in schedules.tasks("replace")], 30)[0]
    schedules.wait_for("the first run replaced", lambda: api.get(first) is None, 30)
    schedules.wait_for("RunReplaced event", lambda: "RunReplaced" in schedules.event_reasons("replace"), 20)
    for _ in range(6):  # at no moment two unfinished runs
        unfinished = [t for t in schedules.tasks("replace")
                      if state(t) not in ("SUCCESS", "FAILURE") and not t["metadata"].get("deletionTimestamp")]
        assert len(unfinished) <= 1, [t["metadata"]["name"] for t in unfinished]
        time.sleep(MINUTE / 3)
    assert schedules.get("replace")["status"]["activeCount"] == 1


@pytest.mark.timeout(240)
def test_history_limits_suspend_resume_run_now_and_delete(operator, schedules, namespace, cluster, api):
    anchor = time.time()
    fast_operator(operator, namespace, anchor)
    schedules.create("hist", successfulTasksHistoryLimit=2, failedTasksHistoryLimit=1)
    # Finished runs beyond two are deleted (once their event is settled: events are off).
    first = schedules.wait_for("a first run", lambda: schedules.scheduled("hist"), 30)[0]
    fifth = schedule.format_time(first + timedelta(minutes=4))
    schedules.wait_for("five runs", lambda: (schedules.get("hist").get("status") or {}).get(
        "lastScheduleTime", "") >= fifth, 60)
    schedules.wait_for("history at its limit", lambda: len(
        [t for t in schedules.tasks("hist") if state(t) == "SUCCESS"]) <= 2, 30)
    assert (schedules.get("hist")["status"]).get("lastSuccessfulTime")

    code, out, err = run_cli(cluster, "schedule", "suspend", "hist", "-n", namespace)
    assert code == 0, err
    time.sleep(1.0)  # a pass in flight may still start the current due time
    suspended_at = schedules.scheduled("hist")[-1]
    time.sleep(3 * MINUTE)
    assert schedules.scheduled("hist")[-1] == suspended_at  # nothing started while suspended
    status = schedules.get("hist")["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Suspended" and "nextScheduleTime" not in status

    code, out, err = run_cli(cluster, "schedule", "run-now", "hist", "-n", namespace, "-o", "json")
    assert code == 0, err
    manual = yaml.safe_load(out)["id"]
    assert manual.startswith("hist-manual-")
    task = api.wait_state(manual, "SUCCESS", timeout=60)
    assert task["metadata"]["annotations"][ANNOTATION_INSTANTIATE] == "manual"
    assert task["metadata"]["ownerReferences"][0]["name"] == "hist"

    code, out, err = run_cli(cluster, "schedule", "resume", "hist", "-n", namespace)
    assert code == 0, err
    schedules.wait_for("a run after resuming", lambda: schedules.scheduled("hist")[-1] > suspended_at, 30)

    def shown() -> Optional[dict]:  # the status is written just after the run's task
        code, out, err = run_cli(cluster, "schedule", "get", "hist", "-n", namespace, "-o", "json")
        assert code == 0, err
        item = yaml.safe_load(out)
        return item if item["reason"] == "Scheduling" and item["nextScheduleTime"] else None
    schedules.wait_for("Ready Scheduling again", shown, 10)
    code, out, err = run_cli(cluster, "schedule", "list", "-n", namespace)
    assert code == 0 and out.splitlines()[1].split()[:2] == ["hist", "*"]

    code, out, err = run_cli(cluster, "schedule", "delete", "hist", "-n", namespace)
    assert code == 0, err
    schedules.wait_for("its tasks garbage-collected", lambda: schedules.tasks("hist") == [], 60)
    code, out, err = run_cli(cluster, "schedule", "get", "hist", "-n", namespace)
    assert code == 3 and "hist" in err


# ------------------------------------------------------------------ example 04: failures mailed


def load_example():
    path = REPO_ROOT / "examples" / "04-nightly-report" / "report_failures.py"
    spec = importlib.util.spec_from_file_location("report_failures", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["report_failures"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(300)
def test_04_the_failure_event_of_a_scheduled_run_reaches_its_consumer(operator, schedules, namespace, cluster,
                                                                      broker, api):
    example = load_example()
    manifest = yaml.safe_load((REPO_ROOT / "examples" / "04-nightly-report" / "schedule.yaml").read_text())
    exchange, queue = f"test.sched.{uuid.uuid4().hex[:10]}", f"test.sched.{uuid.uuid4().hex[:10]}"
    task_name = manifest["spec"]["taskTemplate"]["task"]
    # The consumer's durable queue exists before any event (failures wait for it).
    EventConsumer(pattern_for(failures=True, task=task_name), url=broker.url, exchange=exchange, queue=queue,
                  dead_letter=True).open().close()
    anchor = time.time()
    fast_operator(operator, namespace, anchor, BROKER_URL=broker.url, EXCHANGE=exchange)
    # The same task function failing outside the schedule: no mail for it.
    stray = api.create(task_name, "not a scheduled run", app="reports")
    manifest["spec"].update(schedule="* * * * *", timeZone="Europe/Stockholm", startingDeadlineSeconds=60)
    manifest["spec"]["taskTemplate"]["retries"] = 0
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
    run = schedules.wait_for("a failed run", lambda: [t for t in schedules.tasks("nightly-report")
                                                      if state(t) == "FAILURE"], 150)[0]["metadata"]["name"]
    api.wait_state(stray, "FAILURE", timeout=60)

    mails: list[str] = []
    mailer = example.RunFailureMailer("nightly-report", send=mails.append, recipient="reports@example.com")
    done: list[Optional[int]] = []
    worker = threading.Thread(target=lambda: done.append(example.run(
        mailer, task_name, queue=queue, url=broker.url, exchange=exchange, timeout=20)), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive()
    ours = [m for m in mails if run in m]
    assert ours and ours[0] == (f"To: reports@example.com | Subject: schedule nightly-report: run {run} failed "
                                "(reason TaskRaised, attempts 1): ValueError: the nightly report found no data")
    assert not [m for m in mails if stray in m]
    assert all("nightly-report-" in m for m in mails)
