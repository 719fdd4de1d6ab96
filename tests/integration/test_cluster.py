"""The local cluster itself: control plane, the kubelet node, RabbitMQ, pinned tools.

Everything else in tests/integration relies on these behaving like any cluster: the Job
controller creating pods, the scheduler binding them, kubelet running them in containers
from the project's images and reporting exit codes, termination messages, logs, deletion
and deadlines. Nothing here depends on the node being ours: the same tests pass on any
cluster whose runner image `cluster.images` names.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pika
import pytest
from kubernetes import client

from devcluster.config import NODE_NAME

from ._operator_helpers import wait_for

pytestmark = pytest.mark.integration

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture
def image(cluster) -> str:
    """The project's runner image: it has sh and coreutils (busybox cannot be pulled here)."""
    return cluster.images["runner"]


def job(name: str, image: str, command: list[str], backoff_limit: int = 0) -> dict:
    pod_spec = {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": image, "command": command}],
    }
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": backoff_limit, "template": {"spec": pod_spec}}}


def pod(name: str, image: str, command: list[str], **spec) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
                 "containers": [{"name": "main", "image": image, "command": command}], **spec},
    }


def job_condition(batch: client.BatchV1Api, ns: str, name: str) -> str | None:
    status = batch.read_namespaced_job_status(name, ns).status
    for cond in status.conditions or []:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return cond.type
    return None


def job_pods(core: client.CoreV1Api, ns: str, name: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items


def pod_in_phase(core: client.CoreV1Api, ns: str, name: str, phases: tuple[str, ...], timeout: float = 90):
    return wait_for(lambda: (lambda x: x if x.status.phase in phases else None)(core.read_namespaced_pod(name, ns)),
                    f"pod {name} to reach {'/'.join(phases)}", timeout)


def finished(core: client.CoreV1Api, ns: str, name: str, timeout: float = 90) -> client.V1Pod:
    return pod_in_phase(core, ns, name, ("Succeeded", "Failed"), timeout)


def termination_message(p: client.V1Pod) -> str:
    return p.status.container_statuses[0].state.terminated.message or ""


@pytest.fixture
def api_client(cluster):
    """A raw client (tests/integration/conftest.py's ``api`` is the LimeTask helper)."""
    with cluster.api_client() as raw:
        yield raw


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


def test_job_runs_to_complete(api_client, namespace, image):
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    batch.create_namespaced_job(namespace, job("hello", image, ["sh", "-c", "echo hi; exit 0"]))
    assert wait_for(lambda: job_condition(batch, namespace, "hello"), "Job hello to finish") == "Complete"
    (p,) = job_pods(core, namespace, "hello")
    assert p.spec.node_name  # bound by the scheduler
    assert p.status.phase == "Succeeded"
    term = p.status.container_statuses[0].state.terminated
    assert term.exit_code == 0 and term.reason == "Completed"
    assert term.started_at is not None and term.finished_at is not None


def test_failed_job_reports_exit_code_and_termination_message(api_client, namespace, image):
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    command = ["sh", "-c", "printf 'task exploded' > /dev/termination-log; exit 3"]
    batch.create_namespaced_job(namespace, job("boom", image, command, backoff_limit=0))
    assert wait_for(lambda: job_condition(batch, namespace, "boom"), "Job boom to finish") == "Failed"
    (p,) = job_pods(core, namespace, "boom")
    assert p.status.phase == "Failed"
    term = p.status.container_statuses[0].state.terminated
    assert term.exit_code == 3
    assert term.reason == "Error"
    assert term.message == "task exploded"


def test_fallback_to_logs_on_error(api_client, namespace, image):
    core = client.CoreV1Api(api_client)
    body = pod("fallback", image, ["sh", "-c", "echo first line; echo last words; exit 1"])
    body["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    core.create_namespaced_pod(namespace, body)
    p = pod_in_phase(core, namespace, "fallback", ("Failed",), 60)
    assert p.status.container_statuses[0].state.terminated.message == "first line\nlast words\n"


def test_env_and_working_dir_reach_the_process(api_client, namespace, image):
    core = client.CoreV1Api(api_client)
    body = pod("envpod", image, ["sh", "-c", 'printf "%s|%s|%s|%s" "$GREETING" "$MY_NAME" "$MY_NS" "$(pwd)" '
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
    p = finished(core, namespace, "envpod", 60)
    assert p.status.phase == "Succeeded"
    assert p.status.container_statuses[0].state.terminated.message == f"hello world|envpod|{namespace}|/tmp"


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


def test_kubectl_logs_reads_the_container_log(cluster, api_client, namespace, image):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, pod("talker", image, ["sh", "-c", "for i in 1 2 3 4; do echo line $i; done"]))
    pod_in_phase(core, namespace, "talker", ("Succeeded",), 60)
    assert cluster.kubectl("logs", "-n", namespace, "talker").stdout == "line 1\nline 2\nline 3\nline 4\n"
    assert cluster.kubectl("logs", "-n", namespace, "talker", "--tail=2").stdout == "line 3\nline 4\n"
    # The same through the API (pods/log), as the operator and the CLI read it.
    assert core.read_namespaced_pod_log("talker", namespace, container="main", tail_lines=1) == "line 4\n"


def test_kubectl_logs_follow_ends_when_the_container_ends(cluster, api_client, namespace, image):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, pod("slowtalker", image, ["sh", "-c", "echo start; sleep 2; echo end"]))
    pod_in_phase(core, namespace, "slowtalker", ("Running",), 60)
    out = cluster.kubectl("logs", "-f", "-n", namespace, "slowtalker", timeout=60).stdout
    assert out == "start\nend\n"


def test_pod_without_automount_gets_no_token(api_client, namespace, image):
    core = client.CoreV1Api(api_client)
    script = (f'if [ -e {SA_DIR}/token ]; then r=token; else r=none; fi; '
              f'printf "%s|%s" "$r" "$KUBERNETES_SERVICE_HOST" > /dev/termination-log')
    core.create_namespaced_pod(namespace, pod("notoken", image, ["sh", "-c", script], automountServiceAccountToken=False))
    p = finished(core, namespace, "notoken")
    assert p.status.phase == "Succeeded"
    answer, host = termination_message(p).split("|")
    assert answer == "none"
    assert host  # the service variables are still there: only the credential is missing
    assert not p.spec.volumes


def test_secret_config_map_and_empty_dir_volumes_are_mounted(api_client, namespace, image):
    core = client.CoreV1Api(api_client)
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
    body = pod("volumes", image, ["sh", "-c", script], volumes=[
        {"name": "creds", "secret": {"secretName": "creds"}},
        {"name": "settings", "configMap": {"name": "settings", "items": [{"key": "mode", "path": "conf/mode"}]}},
        {"name": "scratch", "emptyDir": {}},
    ])
    body["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "creds", "mountPath": "/etc/creds"},
        {"name": "settings", "mountPath": "/etc/app"},
        {"name": "scratch", "mountPath": "/tmp"},
    ]
    core.create_namespaced_pod(namespace, body)
    p = finished(core, namespace, "volumes")
    assert p.status.phase == "Succeeded", termination_message(p)
    # The emptyDir on /tmp hides nothing the other mounts need, the default token included.
    assert termination_message(p) == "s3cret|fast|scratch|readonly|mode|token"


def test_deleting_a_running_pod_stops_its_container(api_client, namespace, image):
    core = client.CoreV1Api(api_client)
    # exec: sleep is PID 1 and gets the SIGTERM (a shell would ignore it until the grace period).
    core.create_namespaced_pod(namespace, pod("sleeper", image, ["sleep", "300"]))
    p = pod_in_phase(core, namespace, "sleeper", ("Running",), 60)
    assert p.status.start_time is not None and p.status.pod_ip
    assert p.status.container_statuses[0].container_id.startswith("containerd://")
    started = time.monotonic()
    core.delete_namespaced_pod("sleeper", namespace)

    def gone():
        try:
            core.read_namespaced_pod("sleeper", namespace)
            return False
        except client.ApiException as exc:
            return exc.status == 404

    wait_for(gone, "pod sleeper to be deleted", 60)
    # Within its 5 s grace period: the container was stopped, not left to time out.
    assert time.monotonic() - started < 15


def test_active_deadline_kills_the_pod(api_client, namespace, image):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, pod("late", image, ["sleep", "300"], activeDeadlineSeconds=2))
    p = pod_in_phase(core, namespace, "late", ("Failed",), 60)
    assert p.status.reason == "DeadlineExceeded"
    term = p.status.container_statuses[0].state.terminated
    assert term is not None and term.exit_code != 0


def test_node_is_ready_and_not_tainted(cluster, api_client):
    if not cluster.local:
        return  # an external cluster's nodes are its own business
    node = client.CoreV1Api(api_client).read_node(NODE_NAME)
    ready = {c.type: c.status for c in node.status.conditions}
    assert ready["Ready"] == "True"
    assert not node.spec.taints
    assert node.status.node_info.kubelet_version == "v1.34.4"
    assert node.status.node_info.container_runtime_version.startswith("containerd://2.")
    lease = client.CoordinationV1Api(api_client).read_namespaced_lease(NODE_NAME, "kube-node-lease")
    assert lease.spec.holder_identity == NODE_NAME


def test_pinned_tool_versions(cluster):
    client_version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert client_version["clientVersion"]["gitVersion"] == "v1.34.4"
    if cluster.local:
        assert client_version["serverVersion"]["gitVersion"] == "v1.34.4"
    helm = cluster.helm("version", "--short").stdout
    assert helm.startswith("v3.22.0"), helm
    # The cache's tools come first on the PATH given to subprocesses.
    assert cluster.env()["PATH"].split(os.pathsep)[0] == str(cluster.bin_dir)
