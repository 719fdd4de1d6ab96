"""Upgrade from 0.1.0 (commit 099bdf5, from this repository's own history) to the working
tree, with tasks in flight, by the commands of docs/upgrading.md.

0.1.0's operator runs as a host process from that commit's tree (``python -m
lime_task_operator`` with PYTHONPATH at its runner/ and operator/), not from its chart:
the chart would need an operator image built from the old tree (minutes of image build
on a 2-core machine for every run), and the chart's Deployment would run the very same
code. Both operators get the node's task image (devcluster.testing.operator_env), so the
old operator's tasks run in the same image as the new one's.

The CRD is cluster-wide and shared with every other test session on this cluster, so the
old CRD is in place only for the seconds it takes to store the batch under the old
schema and let the old operator start it; the working tree's CRDs are applied again
whatever happens.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pika
import pytest
import yaml
from kubernetes import client

from devcluster import testing
from devcluster.config import REPO_ROOT
from lime_task.constants import CRD_NAME, GROUP, PLURAL, SCHEDULE_CRD_NAME, VERSION
from lime_task.consumer import EventConsumer
from lime_task.events import pattern_for

from ._operator_helpers import Api, condition, drain, state

pytestmark = pytest.mark.integration

# The first released state (docs/upgrading.md, CHANGELOG.md 0.1.0).
OLD_COMMIT = "099bdf5"
T = "sample_tasks.tasks"
# 250 characters: allowed by 0.1.0's maxLength 253, refused by the current 234.
LONG_TASK = f"{T}." + "x" * (250 - len(T) - 1)
LONG_SLEEP = 10  # seconds: still running when the operators are swapped
MAX_RUNNING = 2
# Long enough for the poll to see the long-named task's last status before the TTL.
LONG_NAME_TTL = 20
QUEUED = 5


def old_tree(dest: Path) -> Path:
    """runner/, operator/, crds/ and charts/ of OLD_COMMIT extracted into `dest`; fails the test
    with what to do when the clone lacks that commit (a shallow clone)."""
    found = subprocess.run(["git", "-C", str(REPO_ROOT), "cat-file", "-e", f"{OLD_COMMIT}^{{commit}}"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        shallow = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--is-shallow-repository"],
                                 capture_output=True, text=True).stdout.strip()
        hint = "this clone is shallow: run 'git fetch --unshallow'" if shallow == "true" else found.stderr.strip()
        pytest.fail(f"the upgrade test needs commit {OLD_COMMIT} (release 0.1.0) in the repository's history; {hint}")
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", "--format=tar", OLD_COMMIT,
                              "runner", "operator", "crds", "charts"], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def old_operator_env(base: dict[str, str], tree: Path) -> dict[str, str]:
    env = dict(base, PYTHONPATH=f"{tree / 'runner'}:{tree / 'operator'}")
    # The interpreter must import the old packages, not the working tree's installed ones.
    probe = subprocess.run(
        [sys.executable, "-c", "import lime_task, lime_task_operator; print(lime_task.__file__); "
                               "print(lime_task_operator.__file__)"],
        env=env, cwd=str(REPO_ROOT), capture_output=True, text=True, check=True)
    paths = probe.stdout.split()
    assert all(p.startswith(str(tree)) for p in paths), f"old operator would import {paths}"
    return env


def apply_crds(cluster, directory: Path) -> None:
    """The documented CRD step: server-side apply of every file in `directory`."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(directory))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")


def body(namespace: str, name: str, task: str, *args, **spec) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LimeTask",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"task": task, "app": "demo", "args": list(args), "kwargs": {}, **spec}}


def wait_for_old_schema(api: Api, obj: dict, timeout: float = 30) -> None:
    """Until the API server serves 0.1.0's schema (a dry-run create of a 250-character task
    name passes): a CRD change reaches the handlers shortly after the apply returns."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            api.custom.create_namespaced_custom_object(GROUP, VERSION, api.namespace, PLURAL, obj, dry_run="All")
            return
        except client.ApiException as error:
            if error.status != 422 or time.monotonic() > deadline:
                raise


def create_under_old_schema(cluster, api: Api, tree: Path, obj: dict, tries: int = 3) -> None:
    """Create `obj`, which only 0.1.0's schema accepts. Another test session starting now
    applies the current CRD (its `crd` fixture): then 0.1.0's is applied again."""
    for attempt in range(tries):
        try:
            api.custom.create_namespaced_custom_object(GROUP, VERSION, api.namespace, PLURAL, obj)
            return
        except client.ApiException as error:
            if error.status != 422 or attempt == tries - 1:
                raise
        apply_crds(cluster, tree / "crds")
        wait_for_old_schema(api, obj)


def delete_queue(url: str, queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_delete(queue)
    finally:
        connection.close()


class StartOrder:
    """Records the order in which tasks first hold a Job (status.jobName), polled."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.last_seen: dict[str, dict] = {}

    def poll(self, api: Api) -> dict[str, dict]:
        tasks = {t["metadata"]["name"]: t for t in api.tasks()}
        self.last_seen.update(tasks)
        for name in sorted(tasks):
            if (tasks[name].get("status") or {}).get("jobName") and name not in self.seen:
                self.seen.append(name)
        return tasks


def test_upgrade_from_0_1_0_with_tasks_in_flight(cluster, crd, broker, namespace, api, tmp_path):
    tree = old_tree(tmp_path / "old")
    exchange = f"test.upgrade.{uuid.uuid4().hex[:10]}"
    queue = f"{exchange}.all"
    EventConsumer(pattern_for(), url=broker.url, exchange=exchange, queue=queue).open().close()
    settings = dict(MAX_RUNNING=MAX_RUNNING, BROKER_URL=broker.url, EXCHANGE=exchange)
    base = testing.operator_env(cluster.env(), cluster.images, **settings)
    old = testing.OperatorProcess(namespace, old_operator_env(base, tree), tmp_path / "old-operator.log")
    new = testing.OperatorProcess(namespace, base, tmp_path / "new-operator.log")
    suffix = namespace[-6:]
    long_running = [f"a{i}-{suffix}" for i in range(MAX_RUNNING)]
    queued = [f"b{i}-{suffix}" for i in range(QUEUED)]
    # Queued last, so that only the new operator handles it.
    long_name = f"z-long-name-{suffix}"
    order = StartOrder()
    try:
        old.start()
        assert "lime-task operator started" in old.log
        # 0.1.0 as installed: its CRD, then its operator working on a batch.
        apply_crds(cluster, tree / "crds")
        wait_for_old_schema(api, body(namespace, long_name, LONG_TASK))
        for name in long_running:
            api.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body(namespace, name, f"{T}.sleep", LONG_SLEEP))
        for i, name in enumerate(queued):
            api.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body(namespace, name, f"{T}.add", i, 1))
        create_under_old_schema(cluster, api, tree, body(namespace, long_name, LONG_TASK,
                                                         ttlSecondsAfterFinished=LONG_NAME_TTL))
        for name in long_running:
            api.wait(name, lambda o: bool(o) and bool((o.get("status") or {}).get("jobName")), 60,
                     "a Job from the old operator")
            order.poll(api)
        tasks = order.poll(api)
        assert all((tasks[n].get("status") or {}).get("reason") == "Queued" for n in queued), \
            {n: tasks[n].get("status") for n in queued}

        # The upgrade, as docs/upgrading.md says: CRDs first, then the operator.
        apply_crds(cluster, REPO_ROOT / "charts" / "lime-task" / "crds")
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{SCHEDULE_CRD_NAME}", "--timeout=60s")
        order.poll(api)
        old.stop()
        tasks = order.poll(api)
        in_flight = [n for n in long_running if state(tasks[n]) in ("PENDING", "STARTED")]
        assert in_flight == long_running, {n: tasks[n].get("status") for n in long_running}
        new.start()

        everything = long_running + queued
        deadline = time.monotonic() + 180
        while True:
            tasks = order.poll(api)
            holding = [n for n, t in tasks.items() if (t.get("status") or {}).get("jobName")
                       and state(t) not in ("SUCCESS", "FAILURE")]
            assert len(holding) <= MAX_RUNNING, f"more than MAX_RUNNING tasks hold a Job: {holding}"
            done = all(state(tasks.get(n)) in ("SUCCESS", "FAILURE")
                       and ((tasks[n]["status"].get("event") or {}).get("confirmedAt")) for n in everything)
            if done:
                break
            assert time.monotonic() < deadline, {n: (tasks.get(n) or {}).get("status") for n in everything}
            time.sleep(0.1)

        # Every task ends right, with one Job and one pod.
        assert {n: state(tasks[n]) for n in everything} == {n: "SUCCESS" for n in everything}, {
            n: (tasks[n]["status"], [(p.spec.node_name, [c.image for c in p.spec.containers],
                                      [c.image_id for c in p.status.container_statuses or []]) for p in api.pods(n)])
            for n in everything if state(tasks[n]) != "SUCCESS"}
        assert [tasks[n]["status"]["result"]["sum"] for n in queued] == [i + 1 for i in range(QUEUED)]
        assert [tasks[n]["status"]["result"] for n in long_running] == [{"slept": LONG_SLEEP}] * MAX_RUNNING
        jobs: dict[str, list[str]] = {}
        for job in api.jobs():
            jobs.setdefault(job.metadata.labels["limetask.dev/task-id"], []).append(job.metadata.name)
        assert jobs == {n: [f"lt-{n}"] for n in everything}
        for name in everything:
            assert tasks[name]["status"]["attempts"] == 1, (name, tasks[name]["status"])
            assert len(api.pods(name)) == 1, name
        # Queued tasks got their Jobs in creation order, across the two operators.
        assert order.seen == everything

        # The task stored under the old schema (a 250-character name, over today's 234):
        # the new operator refuses it before any Job, its status subresource is still
        # writable, its event is recorded as never publishable (the routing key would be
        # over AMQP's 255 bytes), and its TTL deletes it.
        last_seen = order.last_seen[long_name]
        deadline = time.monotonic() + LONG_NAME_TTL + 60
        while (current := api.get(long_name)) is not None:
            last_seen = current
            assert time.monotonic() < deadline, f"not deleted after its TTL: {current.get('status')}"
            time.sleep(0.1)
        assert last_seen["spec"]["task"] == LONG_TASK
        assert (state(last_seen), last_seen["status"]["reason"]) == ("FAILURE", "InvalidTask"), last_seen["status"]
        assert "234" in last_seen["status"]["error"]["message"], last_seen["status"]
        published = condition(last_seen, "EventPublished")
        assert (published["status"], published["reason"]) == ("False", "InvalidEvent"), published
        assert api.jobs(long_name) == []

        # One event each, none for the task whose routing key cannot exist.
        events = [(routing_key, payload) for routing_key, payload, _ in drain(broker.url, queue)]
        by_task: dict[str, list[str]] = {}
        for routing_key, payload in events:
            by_task.setdefault(payload["id"], []).append(routing_key)
        assert by_task == {n: [tasks[n]["status"]["event"]["routingKey"]] for n in everything}, events
        assert all(key.endswith(".success.v1") for keys in by_task.values() for key in keys)

        # A rolling overlap the chart's Recreate strategy prevents, tried anyway: 0.1.0's
        # operator on objects the new one finished stays up and changes nothing.
        new.stop()
        before = {t["metadata"]["name"]: t for t in api.tasks()}
        old.start()
        time.sleep(10)
        assert old.proc.poll() is None, old.log[-3000:]
        second_run = old.log.rsplit("===== starting", 1)[1]
        assert "Traceback" not in second_run and "ERROR" not in second_run, second_run[-3000:]
        after = {t["metadata"]["name"]: t for t in api.tasks()}
        assert {n: t["metadata"]["resourceVersion"] for n, t in after.items()} == \
            {n: t["metadata"]["resourceVersion"] for n, t in before.items()}
        assert sorted(j.metadata.name for j in api.jobs()) == sorted(f"lt-{n}" for n in everything)
        assert drain(broker.url, queue) == []
        old.stop()
    finally:
        apply_crds(cluster, REPO_ROOT / "crds")
        old.stop()
        new.stop()
        print(f"----- old operator log -----\n{old.log[-20000:]}")
        print(f"----- new operator log -----\n{new.log[-20000:]}")
        delete_queue(broker.url, queue)


def deployment_env(cluster, namespace: str, name: str) -> tuple[dict, dict[str, str]]:
    deployment = json.loads(cluster.kubectl("get", "deployment", name, "-n", namespace, "-o", "json").stdout)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return deployment, {item["name"]: item.get("value", "") for item in container.get("env", [])}


def test_helm_upgrade_of_a_0_1_0_release_keeps_its_values_and_takes_the_new_defaults(cluster, crd, namespace, tmp_path):
    """The `helm upgrade` of docs/upgrading.md on a release installed from 0.1.0's chart:
    the values given at install are kept, values new in 0.2.0 get their defaults."""
    tree = old_tree(tmp_path / "old")
    release = f"up-{uuid.uuid4().hex[:6]}"
    full = f"{release}-lime-task"
    # Values a platform team sets at install; the nodeSelector matches no node, so the
    # operator pod stays Pending (this test is about the release, not the operator).
    installed = ["--set", f"watchNamespaces={{{namespace}}}", "--set", "operator.maxRunning=3",
                 "--set", "operator.defaultImage=registry.example/tasks:1",
                 "--set-string", "nodeSelector.limetask\\.dev/no-such-node=true", "--set", "image.tag=0.1.0"]
    # --skip-crds: the CRDs are cluster-wide and already current on this shared cluster.
    cluster.helm("install", release, str(tree / "charts" / "lime-task"), "-n", namespace, "--skip-crds", *installed)
    try:
        old_deployment, old_env = deployment_env(cluster, namespace, full)
        assert old_deployment["metadata"]["labels"]["helm.sh/chart"] == "lime-task-0.1.0"
        assert "LIME_TASK_OPERATOR_KUBE_EVENTS" not in old_env

        # Why docs/upgrading.md says --reset-then-reuse-values: --reuse-values takes the
        # release's values as they were, without the keys new in 0.2.0, and the templates
        # that read them fail.
        reused = cluster.helm("upgrade", release, str(REPO_ROOT / "charts" / "lime-task"), "-n", namespace,
                              "--reuse-values", "--set", "image.tag=0.2.0", "--dry-run", check=False)
        assert reused.returncode != 0 and ".Values.metrics" in reused.stderr, reused.stderr
        cluster.helm("upgrade", release, str(REPO_ROOT / "charts" / "lime-task"), "-n", namespace,
                     "--reset-then-reuse-values", "--set", "image.tag=0.2.0")
        deployment, env = deployment_env(cluster, namespace, full)
        chart = yaml.safe_load((REPO_ROOT / "charts" / "lime-task" / "Chart.yaml").read_text())
        assert deployment["metadata"]["labels"]["helm.sh/chart"] == f"lime-task-{chart['version']}"
        pod = deployment["spec"]["template"]["spec"]
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        assert pod["containers"][0]["image"].endswith(":0.2.0")
        # Kept from the install.
        assert env["LIME_TASK_OPERATOR_MAX_RUNNING"] == "3"
        assert env["LIME_TASK_OPERATOR_DEFAULT_IMAGE"] == "registry.example/tasks:1"
        assert env["LIME_TASK_OPERATOR_NAMESPACES"] == namespace
        assert pod["nodeSelector"] == {"limetask.dev/no-such-node": "true"}
        # New in 0.2.0, from the new chart's defaults.
        assert env["LIME_TASK_OPERATOR_KUBE_EVENTS"] == "failures"
        assert env["LIME_TASK_OPERATOR_METRICS_PORT"] == "9090"
        assert "startupProbe" in pod["containers"][0]
        role = json.loads(cluster.kubectl("get", "role", full, "-n", namespace, "-o", "json").stdout)
        assert any("limetaskschedules" in rule.get("resources", []) for rule in role["rules"]), role["rules"]
    finally:
        cluster.helm("uninstall", release, "-n", namespace, check=False)
