"""The test infrastructure itself: control plane, node agent, RabbitMQ, pinned tools.

Everything else in tests/integration relies on these behaving like a real cluster: the
Job controller creating pods, the scheduler binding them, the node running them and
reporting what kubelet would (exit codes, termination messages, deletion, deadlines).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pika
import pytest
from kubernetes import client

pytestmark = pytest.mark.integration

IMAGE = "busybox:1.36"  # ignored by the host-process node; pulled by a real cluster


@pytest.fixture(autouse=True)
def _node_images(cluster, monkeypatch):
    """On a node that runs containers, the pods here run the project's runner image (it
    has sh, coreutils and Python with the kubernetes client): the local kubelet node
    cannot pull busybox, and nothing here needs more than that."""
    if cluster.containers:
        monkeypatch.setitem(globals(), "IMAGE", cluster.images["runner"])
        monkeypatch.setitem(globals(), "PY_IMAGE", cluster.images["runner"])


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def job(name: str, command: list[str], backoff_limit: int = 0, active_deadline: int | None = None) -> dict:
    pod_spec = {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": IMAGE, "command": command}],
    }
    spec = {"backoffLimit": backoff_limit, "template": {"spec": pod_spec}}
    if active_deadline is not None:
        spec["activeDeadlineSeconds"] = active_deadline
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def pod(name: str, command: list[str], **spec) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
                 "containers": [{"name": "main", "image": IMAGE, "command": command}], **spec},
    }


def job_condition(batch: client.BatchV1Api, ns: str, name: str) -> str | None:
    status = batch.read_namespaced_job_status(name, ns).status
    for cond in status.conditions or []:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return cond.type
    return None


def job_pods(core: client.CoreV1Api, ns: str, name: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items


def pid_of(p: client.V1Pod) -> int:
    cid = p.status.container_statuses[0].container_id
    assert cid.startswith("local://"), cid
    return int(cid.removeprefix("local://"))


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.fixture
def api(cluster):
    with cluster.api_client() as api_client:
        yield api_client


def test_custom_resource_round_trip(cluster, namespace):
    group = f"t{uuid.uuid4().hex[:8]}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}},
            }}}],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
    try:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s")
        widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}}
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(widget))
        got = json.loads(cluster.kubectl("get", "-n", namespace, f"widgets.{group}", "w1", "-o", "json").stdout)
        assert got["spec"] == {"size": 3}
        # The structural schema is enforced by the apiserver.
        bad = dict(widget, metadata={"name": "w2"}, spec={"size": "three"})
        proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(bad), check=False)
        assert proc.returncode != 0 and "spec.size" in proc.stderr
    finally:
        cluster.kubectl("delete", "crd", f"widgets.{group}", "--wait=false")


def test_job_runs_to_complete(api, namespace):
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    batch.create_namespaced_job(namespace, job("hello", ["sh", "-c", "echo hi; exit 0"]))
    assert wait_for(lambda: job_condition(batch, namespace, "hello"), 90, "Job hello to finish") == "Complete"
    (p,) = job_pods(core, namespace, "hello")
    assert p.spec.node_name  # bound by the scheduler
    assert p.status.phase == "Succeeded"
    term = p.status.container_statuses[0].state.terminated
    assert term.exit_code == 0 and term.reason == "Completed"
    assert term.started_at is not None and term.finished_at is not None


def test_failed_job_reports_exit_code_and_termination_message(api, namespace):
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    command = ["sh", "-c", "printf 'task exploded' > /dev/termination-log; exit 3"]
    batch.create_namespaced_job(namespace, job("boom", command, backoff_limit=0))
    assert wait_for(lambda: job_condition(batch, namespace, "boom"), 90, "Job boom to finish") == "Failed"
    (p,) = job_pods(core, namespace, "boom")
    assert p.status.phase == "Failed"
    term = p.status.container_statuses[0].state.terminated
    assert term.exit_code == 3
    assert term.reason == "Error"
    assert term.message == "task exploded"


def test_fallback_to_logs_on_error(api, namespace):
    core = client.CoreV1Api(api)
    body = pod("fallback", ["sh", "-c", "echo first line; echo last words; exit 1"])
    body["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    core.create_namespaced_pod(namespace, body)
    p = wait_for(lambda: (lambda x: x if x.status.phase == "Failed" else None)(
        core.read_namespaced_pod("fallback", namespace)), 60, "pod fallback to fail")
    assert p.status.container_statuses[0].state.terminated.message == "first line\nlast words\n"


def test_env_and_working_dir_reach_the_process(api, namespace):
    core = client.CoreV1Api(api)
    body = pod("envpod", ["sh", "-c", 'printf "%s|%s|%s|%s" "$GREETING" "$MY_NAME" "$MY_NS" "$(pwd)" '
                                      "> /dev/termination-log"])
    body["metadata"]["labels"] = {"tier": "gold"}
    body["spec"]["containers"][0]["env"] = [
        {"name": "WHO", "value": "world"},
        {"name": "GREETING", "value": "hello $(WHO)"},
        {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    body["spec"]["containers"][0]["workingDir"] = "/tmp"
    core.create_namespaced_pod(namespace, body)
    p = wait_for(lambda: (lambda x: x if x.status.phase in ("Succeeded", "Failed") else None)(
        core.read_namespaced_pod("envpod", namespace)), 60, "pod envpod to finish")
    assert p.status.phase == "Succeeded"
    assert p.status.container_statuses[0].state.terminated.message == f"hello world|envpod|{namespace}|/tmp"


def test_deleting_a_running_pod_stops_its_process(cluster, api, namespace):
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, pod("sleeper", ["sleep", "300"]))
    p = wait_for(lambda: (lambda x: x if x.status.phase == "Running" else None)(
        core.read_namespaced_pod("sleeper", namespace)), 60, "pod sleeper to run")
    assert p.status.start_time is not None and p.status.pod_ip == p.status.host_ip
    pid = pid_of(p) if cluster.local else None
    if pid is not None:
        assert pid_alive(pid)
    core.delete_namespaced_pod("sleeper", namespace)

    def gone():
        try:
            core.read_namespaced_pod("sleeper", namespace)
            return False
        except client.ApiException as exc:
            return exc.status == 404

    wait_for(gone, 60, "pod sleeper to be deleted")
    if pid is not None:
        wait_for(lambda: not pid_alive(pid), 10, f"process {pid} to exit")


def test_active_deadline_kills_the_pod(cluster, api, namespace):
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, pod("late", ["sleep", "300"], activeDeadlineSeconds=2))
    p = wait_for(lambda: (lambda x: x if x.status.phase == "Failed" else None)(
        core.read_namespaced_pod("late", namespace)), 60, "pod late to fail")
    assert p.status.reason == "DeadlineExceeded"
    term = p.status.container_statuses[0].state.terminated
    assert term is not None and term.exit_code != 0
    if cluster.local:
        assert not pid_alive(pid_of(p))


def test_unsupported_pod_fails_with_a_clear_message(cluster, api, namespace):
    if not cluster.local:
        return  # a real kubelet runs init containers; this is about the local node's limits
    core = client.CoreV1Api(api)
    body = pod("withinit", ["true"])
    body["spec"]["initContainers"] = [{"name": "init", "image": IMAGE, "command": ["true"]}]
    core.create_namespaced_pod(namespace, body)
    p = wait_for(lambda: (lambda x: x if x.status.phase == "Failed" else None)(
        core.read_namespaced_pod("withinit", namespace)), 60, "pod withinit to fail")
    assert "initContainers are not supported" in p.status.message


def test_node_is_ready_and_not_tainted(cluster, api):
    if not cluster.local:
        return
    node = client.CoreV1Api(api).read_node("lime-local-node")
    ready = {c.type: c.status for c in node.status.conditions}
    assert ready["Ready"] == "True"
    assert not node.spec.taints
    assert node.status.allocatable["pods"] == "250"
    lease = client.CoordinationV1Api(api).read_namespaced_lease("lime-local-node", "kube-node-lease")
    assert lease.spec.holder_identity == "lime-local-node"


def test_broker_publish_and_consume(broker):
    name = f"lime-test-{uuid.uuid4().hex[:8]}"
    params = pika.URLParameters(broker.url)
    params.socket_timeout = 5
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.exchange_declare(name, exchange_type="topic", durable=False, auto_delete=True)
        ch.queue_declare(name, exclusive=True)
        ch.queue_bind(name, name, routing_key="core.task.#")
        ch.basic_publish(name, "core.task.demo.success.v1", b'{"ok": true}',
                         pika.BasicProperties(message_id="m-1", delivery_mode=2))
        method, props, body = None, None, None
        deadline = time.monotonic() + 10
        while method is None and time.monotonic() < deadline:
            method, props, body = ch.basic_get(name, auto_ack=True)
            if method is None:
                conn.sleep(0.1)
        assert method is not None, "the published message never arrived"
        assert method.routing_key == "core.task.demo.success.v1"
        assert props.message_id == "m-1"
        assert body == b'{"ok": true}'
    finally:
        conn.close()


def test_pinned_tool_versions(cluster):
    client_version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert client_version["clientVersion"]["gitVersion"] == "v1.34.4"
    if cluster.local:
        assert client_version["serverVersion"]["gitVersion"] == "v1.34.4"
    helm = cluster.helm("version", "--short").stdout
    assert helm.startswith("v3.22.0"), helm
    # The cache's tools come first on the PATH given to subprocesses.
    assert cluster.env()["PATH"].split(os.pathsep)[0] == str(cluster.bin_dir)


def test_kubectl_logs_reads_the_container_log(cluster, api, namespace):
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, pod("talker", ["sh", "-c", "for i in 1 2 3 4; do echo line $i; done"]))
    wait_for(lambda: core.read_namespaced_pod("talker", namespace).status.phase == "Succeeded", 60,
             "pod talker to succeed")
    assert cluster.kubectl("logs", "-n", namespace, "talker").stdout == "line 1\nline 2\nline 3\nline 4\n"
    assert cluster.kubectl("logs", "-n", namespace, "talker", "--tail=2").stdout == "line 3\nline 4\n"
    # The same through the API (pods/log), as the operator and the CLI read it.
    assert core.read_namespaced_pod_log("talker", namespace, container="main", tail_lines=1) == "line 4\n"


def test_kubectl_logs_follow_ends_when_the_container_ends(cluster, api, namespace):
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, pod("slowtalker", ["sh", "-c", "echo start; sleep 2; echo end"]))
    wait_for(lambda: core.read_namespaced_pod("slowtalker", namespace).status.phase == "Running", 60,
             "pod slowtalker to run")
    out = cluster.kubectl("logs", "-f", "-n", namespace, "slowtalker", timeout=60).stdout
    assert out == "start\nend\n"


# -- ServiceAccount identity and volumes ---------------------------------------------------
# A pod reaches the API exactly as on a real kubelet: the ServiceAccount admission plugin
# injects the kube-api-access-* projected volume, the node fills it with a token bound to
# the pod, and KUBERNETES_SERVICE_HOST/PORT point at the apiserver.

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# Needs Python with the kubernetes client: the local node uses the project's venv (its
# image is ignored); on a real cluster the runner image has both.
PY_IMAGE = "lime-task-runner:dev"
# Runs inside the pod: in-cluster config, read its own pod, ask who it is, try secrets;
# the findings go to the termination message as JSON.
WHOAMI = """
import json, os
from kubernetes import client, config
config.load_incluster_config()
core = client.CoreV1Api()
ns = open("%s/namespace").read()
out = {"namespace": ns, "host": os.environ["KUBERNETES_SERVICE_HOST"]}
out["pod"] = core.read_namespaced_pod(os.environ["HOSTNAME"], ns).metadata.name
review = client.AuthenticationV1Api().create_self_subject_review(
    {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
out["user"] = review.status.user_info.username
try:
    core.list_namespaced_secret(ns)
    out["secrets"] = "allowed"
except client.ApiException as exc:
    out["secrets"] = exc.status
open("/dev/termination-log", "w").write(json.dumps(out))
""" % SA_DIR


def finished_pod(core: client.CoreV1Api, ns: str, name: str, timeout: float = 90) -> client.V1Pod:
    return wait_for(lambda: (lambda x: x if x.status.phase in ("Succeeded", "Failed") else None)(
        core.read_namespaced_pod(name, ns)), timeout, f"pod {name} to finish")


def termination_message(p: client.V1Pod) -> str:
    return p.status.container_statuses[0].state.terminated.message or ""


def test_pod_uses_the_api_as_its_service_account(api, namespace):
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "get-pods"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "reader-get-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "get-pods"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})
    body = pod("whoami", ["python", "-c", WHOAMI], serviceAccountName="reader")
    body["spec"]["containers"][0]["image"] = PY_IMAGE
    core.create_namespaced_pod(namespace, body)
    p = finished_pod(core, namespace, "whoami")
    assert p.status.phase == "Succeeded", termination_message(p) or p.status
    found = json.loads(termination_message(p))
    assert found["pod"] == "whoami" and found["namespace"] == namespace
    assert found["user"] == f"system:serviceaccount:{namespace}:reader"
    assert found["secrets"] == 403  # the Role allows `get pods` and nothing else
    # The token volume was injected by admission, as on any cluster.
    mounts = {m.mount_path for m in p.spec.containers[0].volume_mounts}
    assert SA_DIR in mounts


def test_pod_without_automount_gets_no_token(api, namespace):
    core = client.CoreV1Api(api)
    script = (f'if [ -e {SA_DIR}/token ]; then r=token; else r=none; fi; '
              f'printf "%s|%s" "$r" "$KUBERNETES_SERVICE_HOST" > /dev/termination-log')
    core.create_namespaced_pod(namespace, pod("notoken", ["sh", "-c", script], automountServiceAccountToken=False))
    p = finished_pod(core, namespace, "notoken")
    assert p.status.phase == "Succeeded"
    answer, host = termination_message(p).split("|")
    assert answer == "none"
    assert host  # the service variables are still there: only the credential is missing
    assert not p.spec.volumes


def test_secret_config_map_and_empty_dir_volumes_are_mounted(api, namespace):
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"},
                                                  "data": {"mode": "fast", "ignored": "x"}})
    script = (
        "set -e; pw=$(cat /etc/creds/password); mode=$(cat /etc/app/conf/mode); "
        "echo scratch > /tmp/file; sc=$(cat /tmp/file); "
        "if touch /etc/creds/new 2>/dev/null; then ro=writable; else ro=readonly; fi; "
        "ls /etc/app/conf > /tmp/listing; "
        f"if [ -s {SA_DIR}/token ]; then tok=token; else tok=none; fi; "
        'printf "%s|%s|%s|%s|%s|%s" "$pw" "$mode" "$sc" "$ro" "$(cat /tmp/listing)" "$tok" > /dev/termination-log'
    )
    body = pod("volumes", ["sh", "-c", script], volumes=[
        {"name": "creds", "secret": {"secretName": "creds"}},
        {"name": "settings", "configMap": {"name": "settings", "items": [{"key": "mode", "path": "conf/mode"}]}},
        {"name": "scratch", "emptyDir": {}},
    ])
    body["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "creds", "mountPath": "/etc/creds"},
        {"name": "settings", "mountPath": "/etc/app"},
        {"name": "scratch", "mountPath": "/tmp"},  # over the node's state dir
    ]
    core.create_namespaced_pod(namespace, body)
    p = finished_pod(core, namespace, "volumes")
    assert p.status.phase == "Succeeded", termination_message(p)
    # The emptyDir on /tmp hides nothing the other mounts need (the node keeps their
    # sources under /tmp), the default token included.
    assert termination_message(p) == "s3cret|fast|scratch|readonly|mode|token"


def test_a_pod_waits_for_its_secret_and_starts_once_it_exists(api, namespace):
    core = client.CoreV1Api(api)
    body = pod("patient", ["sh", "-c", "cat /etc/late/key > /dev/termination-log"],
               volumes=[{"name": "late", "secret": {"secretName": "late"}}])
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "late", "mountPath": "/etc/late"}]
    core.create_namespaced_pod(namespace, body)

    def waiting_message():
        statuses = core.read_namespaced_pod("patient", namespace).status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.message if waiting and waiting.message else None

    message = wait_for(waiting_message, 60, "pod patient to report its missing Secret")
    assert 'Secret "late" not found' in message
    assert core.read_namespaced_pod("patient", namespace).status.phase == "Pending"
    core.create_namespaced_secret(namespace, {"metadata": {"name": "late"}, "stringData": {"key": "finally"}})
    p = finished_pod(core, namespace, "patient")
    assert p.status.phase == "Succeeded"
    assert termination_message(p) == "finally"


# -- restarts: kubelet restarts containers in place, it does not fail the pod -----------

def crash_loop_state(core: client.CoreV1Api, ns: str, selector: str):
    """The pod and container status once a container is waiting in CrashLoopBackOff."""
    for p in core.list_namespaced_pod(ns, label_selector=selector).items:
        for cs in p.status.container_statuses or []:
            if cs.state.waiting and cs.state.waiting.reason == "CrashLoopBackOff":
                return p, cs
    return None


def test_a_crashing_deployment_keeps_one_pod_and_restarts_it_in_place(cluster, api, namespace):
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    labels = {"app": "crasher"}
    apps.create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "crasher"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 5, "containers": [
                {"name": "main", "image": IMAGE, "command": ["sh", "-c", "echo crashing; exit 1"]}]}}}})
    p, cs = wait_for(lambda: crash_loop_state(core, namespace, "app=crasher"), 60, "CrashLoopBackOff")
    assert p.status.phase == "Running"
    assert cs.restart_count >= 1
    assert cs.ready is False
    assert f"restarting failed container=main pod={p.metadata.name}_{namespace}(" in cs.state.waiting.message
    last = cs.last_state.terminated
    assert (last.exit_code, last.reason) == (1, "Error")
    assert last.started_at is not None and last.finished_at is not None
    conditions = {c.type: c.status for c in p.status.conditions}
    assert conditions["Ready"] == "False" and conditions["ContainersReady"] == "False"

    # Kubelet's back-off restarts it after 10 s, then 20 s: over 25 s the container
    # crashes again, and the ReplicaSet must never see a reason to create a second pod.
    seen = set()
    end = time.monotonic() + 25
    while time.monotonic() < end:
        seen |= {x.metadata.uid for x in core.list_namespaced_pod(namespace, label_selector="app=crasher").items}
        time.sleep(1)
    assert seen == {p.metadata.uid}
    restarted = wait_for(lambda: (lambda x: x if x.status.container_statuses[0].restart_count >= 2 else None)(
        core.read_namespaced_pod(p.metadata.name, namespace)), 60, "a second restart")
    assert restarted.status.phase == "Running"
    if cluster.local:
        # Each restart is a new process: the container id (the pid here) changed.
        assert restarted.status.container_statuses[0].container_id != cs.container_id

    # Deleting it during a 40 s back-off does not wait for the back-off to end.
    def long_backoff():
        found = crash_loop_state(core, namespace, "app=crasher")
        return found if found and "back-off 40s" in found[1].state.waiting.message else None

    p, _ = wait_for(long_backoff, 90, "the 40 s back-off")
    core.delete_namespaced_pod(p.metadata.name, namespace)

    def gone():
        try:
            core.read_namespaced_pod(p.metadata.name, namespace)
            return False
        except client.ApiException as exc:
            return exc.status == 404

    wait_for(gone, 20, f"pod {p.metadata.name} to be deleted during its back-off")


def test_on_failure_restarts_a_failed_container_until_it_succeeds(api, namespace):
    core = client.CoreV1Api(api)
    # The marker lives in an emptyDir, which survives container restarts (not the pod).
    script = ("if [ -e /scratch/marker ]; then printf second > /dev/termination-log; exit 0; fi; "
              "touch /scratch/marker; printf first > /dev/termination-log; exit 3")
    body = pod("flaky", ["sh", "-c", script], restartPolicy="OnFailure",
               volumes=[{"name": "scratch", "emptyDir": {}}])
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
    core.create_namespaced_pod(namespace, body)
    p = finished_pod(core, namespace, "flaky")
    assert p.status.phase == "Succeeded"
    cs = p.status.container_statuses[0]
    assert cs.restart_count == 1
    assert (cs.state.terminated.exit_code, cs.state.terminated.message) == (0, "second")
    assert (cs.last_state.terminated.exit_code, cs.last_state.terminated.message) == (3, "first")


def test_active_deadline_ends_a_restart_back_off(api, namespace):
    core = client.CoreV1Api(api)
    # Exit 1 at once: restarted at once, exits again, then a 10 s back-off that the 5 s
    # deadline must cut short (no third start).
    core.create_namespaced_pod(namespace, pod("looper", ["sh", "-c", "exit 1"], restartPolicy="Always",
                                              activeDeadlineSeconds=5))
    p = finished_pod(core, namespace, "looper")
    assert (p.status.phase, p.status.reason) == ("Failed", "DeadlineExceeded")
    cs = p.status.container_statuses[0]
    assert cs.restart_count == 1
    assert cs.state.terminated is not None and cs.state.terminated.exit_code == 1


# -- host paths under volumes (the local node's pods run on the host's file system) ------

HOST_PATH_HELPER = """
import json, os
here = os.path.dirname(os.path.abspath(__file__))

def main():
    with open("/tmp/scratch-file", "w") as f:
        f.write("in the emptyDir")
    out = {
        "data": open(os.path.join(here, "data.txt")).read(),
        "note": open("note.txt").read(),
        "cwd": os.getcwd(),
        "scratch": open("/tmp/scratch-file").read(),
        "sibling_visible": os.path.exists(os.environ["SIBLING"]),
    }
    open("/dev/termination-log", "w").write(json.dumps(out))
"""


def test_host_paths_under_an_empty_dir_on_tmp_stay_visible(cluster, api, namespace):
    if not cluster.local:
        return  # about the local node's host-process pods: a real node runs an image
    core = client.CoreV1Api(api)
    base = Path(tempfile.mkdtemp(prefix="lt-hostpaths-", dir="/tmp"))
    sibling = Path(f"{base}.sibling")
    try:
        (base / "bin").mkdir()
        (base / "lib").mkdir()
        (base / "work").mkdir()
        tool = base / "bin" / "tool"
        tool.write_text("#!/usr/bin/env python3\nimport helper\nhelper.main()\n")
        tool.chmod(0o755)
        (base / "lib" / "helper.py").write_text(HOST_PATH_HELPER)
        (base / "lib" / "data.txt").write_text("from PYTHONPATH")
        (base / "work" / "note.txt").write_text("from workingDir")
        sibling.write_text("host /tmp content, hidden by the emptyDir")
        body = pod("hostpaths", [str(tool)], volumes=[{"name": "tmp", "emptyDir": {}}])
        container = body["spec"]["containers"][0]
        container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
        container["env"] = [{"name": "PYTHONPATH", "value": str(base / "lib")},
                            {"name": "SIBLING", "value": str(sibling)}]
        container["workingDir"] = str(base / "work")
        core.create_namespaced_pod(namespace, body)
        p = finished_pod(core, namespace, "hostpaths")
        assert p.status.phase == "Succeeded", termination_message(p)
        assert json.loads(termination_message(p)) == {
            "data": "from PYTHONPATH", "note": "from workingDir", "cwd": str(base / "work"),
            "scratch": "in the emptyDir", "sibling_visible": False}
        # The pod wrote into its emptyDir, not into the host's /tmp.
        assert not Path("/tmp/scratch-file").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
        sibling.unlink(missing_ok=True)


# -- the node agent restarting (scripts/cluster down, then up) ---------------------------
# Restarting the shared cluster's node from a test would disturb every other test, so a
# second NodeAgent runs in-process for a Node this test registers (unschedulable and
# tainted: the scheduler never binds anything else to it). The test leaves pods as a
# previous agent would have reported them, then runs the agent's start-up listing.

def previous_agent_status(started_at: str, restart_count: int, pid: int) -> dict:
    """The status the node agent reports for a running container (what a previous agent
    left in the API before it was stopped and its process killed)."""
    return {
        "phase": "Running", "startTime": started_at, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
        "conditions": [{"type": t, "status": "True", "lastTransitionTime": started_at}
                       for t in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")],
        "containerStatuses": [{
            "name": "main", "image": IMAGE, "imageID": "local://image-not-pulled", "ready": True, "started": True,
            "restartCount": restart_count, "containerID": f"local://{pid}",
            "state": {"running": {"startedAt": started_at}}, "lastState": {}}],
    }


@pytest.fixture
def second_node(api, namespace, tmp_path):
    from dataclasses import replace

    from devcluster.config import ClusterConfig
    from devcluster.node import LEASE_NAMESPACE, NodeAgent

    core, coord = client.CoreV1Api(api), client.CoordinationV1Api(api)
    name = f"lt-second-node-{uuid.uuid4().hex[:6]}"
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {
        "unschedulable": True, "taints": [{"key": "limetask.dev/test-node", "effect": "NoSchedule"}]}})
    agent = NodeAgent(replace(ClusterConfig.from_env(), node_name=name, state_dir=tmp_path), api)
    try:
        agent.register()  # Ready, with a lease: nothing marks its pods NotReady meanwhile
        yield agent
    finally:
        with agent.lock:
            workers = list(agent.workers.values())
        for w in workers:
            w.request_stop(0, delete_after=True)
        for w in workers:
            w.join(60)
        # Nothing runs this node's pods any more: force what is left, or the namespace
        # would wait for a kubelet that never confirms.
        for p in core.list_namespaced_pod(namespace, field_selector=f"spec.nodeName={name}").items:
            try:
                core.delete_namespaced_pod(p.metadata.name, namespace, grace_period_seconds=0)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
        core.delete_node(name)
        try:
            coord.delete_namespaced_lease(name, LEASE_NAMESPACE)
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def test_after_a_node_agent_restart_pods_that_restart_run_again_in_place(api, namespace, second_node, tmp_path):
    core = client.CoreV1Api(api)
    node = second_node.cfg.node_name
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    lost_pid = 4_000_000  # above any pid this machine hands out: that process is gone

    def on_node(name: str, policy: str, command: list[str]) -> dict:
        body = pod(name, command, restartPolicy=policy, nodeName=node, automountServiceAccountToken=False)
        core.create_namespaced_pod(namespace, body)
        return core.read_namespaced_pod(name, namespace)

    # A Deployment-style pod (Always) and a task-style pod (Never), both left Running.
    service = on_node("service", "Always", ["sh", "-c", "echo instance started; exec sleep 300"])
    task = on_node("task", "Never", ["sh", "-c", "echo task ran; exec sleep 300"])
    for p in (service, task):
        restart_count = 2 if p is service else 0
        core.patch_namespaced_pod_status(p.metadata.name, namespace,
                                         {"status": previous_agent_status(started_at, restart_count, lost_pid)})
    # A pod being deleted when the agent went down is finished off.
    on_node("leaving", "Always", ["sleep", "300"])
    core.delete_namespaced_pod("leaving", namespace, grace_period_seconds=30)
    assert core.read_namespaced_pod("leaving", namespace).metadata.deletion_timestamp is not None

    second_node.handle_listed()

    def restarted():
        p = core.read_namespaced_pod("service", namespace)
        cs = (p.status.container_statuses or [None])[0]
        return p if cs and cs.state.running and cs.restart_count == 3 else None

    p = wait_for(restarted, 60, "the Always pod to run again with restartCount 3")
    assert p.metadata.uid == service.metadata.uid  # the same pod, not a replacement
    assert p.status.phase == "Running"
    assert p.status.start_time.strftime("%Y-%m-%dT%H:%M:%SZ") == started_at  # kept, as kubelet does
    cs = p.status.container_statuses[0]
    last = cs.last_state.terminated
    assert (last.exit_code, last.reason, last.container_id) == (137, "NodeAgentRestarted", f"local://{lost_pid}")
    assert "node agent restarted" in last.message
    assert pid_of(p) != lost_pid and pid_alive(pid_of(p))
    ready = wait_for(lambda: (lambda x: x if {c.type: c.status for c in x.status.conditions}["Ready"] == "True"
                              else None)(core.read_namespaced_pod("service", namespace)), 30, "Ready")
    assert ready.status.container_statuses[0].ready is True
    log_file = tmp_path / "pods" / namespace / "service" / service.metadata.uid / "main.log"
    wait_for(lambda: "instance started" in log_file.read_text() if log_file.exists() else False, 30,
             "the restarted container's output")

    # The run-once pod is not run twice: Failed, and no process of it ever started here.
    def failed():
        x = core.read_namespaced_pod("task", namespace)
        return x if x.status.phase == "Failed" else None

    t = wait_for(failed, 60, "the Never pod to be marked Failed")
    assert t.status.reason == "NodeAgentRestarted"
    assert "restartPolicy Never" in t.status.message
    assert t.status.container_statuses[0].state.terminated.exit_code == 137
    assert not (tmp_path / "pods" / namespace / "task").exists()

    def gone():
        try:
            core.read_namespaced_pod("leaving", namespace)
            return False
        except client.ApiException as exc:
            return exc.status == 404

    wait_for(gone, 30, "the pod being deleted to be deleted")
