"""The Helm chart against the real helm binary and the real API server.

lint, schema errors, server-side validation of the rendered objects, install/uninstall,
the RBAC it grants (checked by the API server's own authoriser), and finally the
operator deployed by the chart running a task to SUCCESS with nothing but the chart's
RBAC.
"""

import json
import subprocess
import sys
import uuid

import pytest
import yaml

from devcluster.testing import merge_values
from lime_task.constants import CRD_NAME

from .chart_support import (
    CHART,
    DEFAULT_SELF_RULES,
    OPERATOR_MUST_NOT,
    OPERATOR_NEEDS,
    can_i,
    get_json,
    helm_install,
    helm_uninstall,
    names,
    rule_resources,
    run_cli,
    service_account_user,
)

pytestmark = pytest.mark.integration

# helm built from source reports Kubernetes v1.20 to templates unless told otherwise;
# the chart requires >= 1.30 (CEL rules on the CRD).
KUBE_VERSION = ["--kube-version", "1.34.0"]
# A cluster-wide test install must not start a second operator over the whole cluster
# (other tests run their own): the pod gets a kubeconfig path that does not exist, so
# on the local dev node it cannot log in. Only the last test runs a live operator.
# The node mounts the ServiceAccount token and sets KUBERNETES_SERVICE_HOST like kubelet,
# so in-cluster config must be ruled out too: an empty host makes it fail.
NO_LOGIN = [
    {"name": "KUBECONFIG", "value": "/nonexistent/lime-task-test-kubeconfig"},
    {"name": "KUBERNETES_SERVICE_HOST", "value": ""},
]


def release_name() -> str:
    return f"lt-{uuid.uuid4().hex[:8]}"


def test_lint_is_clean_for_default_and_typical_values(cluster):
    for extra in (
        [],
        ["--set", "broker.url=amqp://guest:guest@127.0.0.1:5672/", "--set", "watchNamespaces={a,b}"],
        ["--set", "broker.existingSecret=rabbit", "--set", "operator.defaultImage=example.org/tasks:1"],
    ):
        done = cluster.helm("lint", "--strict", str(CHART), *extra)
        assert "0 chart(s) failed" in done.stdout
        assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout


@pytest.mark.parametrize(
    "value, message",
    [
        ("operator.maxRunning=-1", "/operator/maxRunning"),
        ("operator.defaultTtlSeconds=soon", "/operator/defaultTtlSeconds"),
        ("broker.url=http://rabbit:5672", "/broker/url"),
        ("watchNamespaces={Not_A_Namespace}", "/watchNamespaces/0"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("operatr.maxRunning=1", "additional properties 'operatr' not allowed"),
        ("operator.allowedImage={x}", "additional properties 'allowedImage' not allowed"),
        ("operator.healthPort=70000", "/operator/healthPort"),
    ],
)
def test_bad_values_fail_lint_and_template_naming_the_value(cluster, value, message):
    lint = cluster.helm("lint", str(CHART), "--set", value, check=False)
    assert lint.returncode != 0 and message in lint.stdout + lint.stderr
    template = cluster.helm("template", "r", str(CHART), *KUBE_VERSION, "--set", value, check=False)
    assert template.returncode != 0 and message in template.stderr


def test_values_that_exclude_each_other_fail_with_a_message(cluster):
    done = cluster.helm(
        "template", "r", str(CHART), *KUBE_VERSION,
        "--set", "broker.url=amqp://x", "--set", "broker.existingSecret=s", check=False,
    )
    assert done.returncode != 0
    assert "broker.url and broker.existingSecret are exclusive" in done.stderr


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_rendered_chart_is_accepted_by_the_api_server(cluster, crd, namespace, mode):
    values = ["--set", "broker.url=amqp://guest:guest@127.0.0.1:5672/"]
    if mode == "namespaced":
        values += ["--set", f"watchNamespaces={{{namespace}}}"]
    rendered = cluster.helm(
        "template", release_name(), str(CHART), "-n", namespace, "--include-crds", *KUBE_VERSION, *values
    ).stdout
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(rendered) if doc)
    # Two CRDs: LimeTask and LimeTaskSchedule (#15).
    # The Service is the operator's /metrics (metrics.enabled, on by default).
    expected = ["CustomResourceDefinition", "CustomResourceDefinition", "Deployment", "Secret", "Service",
                "ServiceAccount"]
    expected += ["ClusterRole", "ClusterRoleBinding"] if mode == "cluster-wide" else ["Role", "RoleBinding", "ServiceAccount"]
    assert kinds == sorted(expected)
    done = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered, check=False)
    assert done.returncode == 0, done.stderr
    assert "deployment.apps/" in done.stdout and "(server dry run)" in done.stdout


def test_install_creates_everything_and_uninstall_removes_it(cluster, crd, namespace):
    release = release_name()
    helm_install(
        cluster, release, namespace,
        {"broker": {"url": "amqp://guest:guest@127.0.0.1:5672/"}, "env": NO_LOGIN,
         "operator": {"defaultImage": "example.org/tasks:1", "appImages": {"my-app": "example.org/my-app:2"},
                      "allowedImages": ["example.org/"], "maxRunning": 5}},
    )
    try:
        full = f"{release}-lime-task"
        deployment = get_json(cluster, "deployment", full, "-n", namespace)
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        # The pod network by default; hostNetwork only when asked for (the local cluster).
        assert "hostNetwork" not in pod and pod.get("dnsPolicy", "ClusterFirst") == "ClusterFirst"
        assert container["command"] == ["lime-task", "operator"]
        assert container["args"][:2] == ["--liveness", "http://0.0.0.0:8080/healthz"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health", "scheme": "HTTP"}
        env = {item["name"]: item for item in container["env"]}
        assert env["LIME_TASK_OPERATOR_NAMESPACES"].get("value", "") == ""  # empty: cluster-wide
        assert json.loads(env["LIME_TASK_OPERATOR_APP_IMAGES"]["value"]) == {"my-app": "example.org/my-app:2"}
        assert env["LIME_TASK_OPERATOR_ALLOWED_IMAGES"]["value"] == "example.org/"
        assert env["LIME_TASK_OPERATOR_MAX_RUNNING"]["value"] == "5"
        assert env["LIME_TASK_OPERATOR_BROKER_URL"]["valueFrom"]["secretKeyRef"] == {"name": f"{full}-broker", "key": "url"}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["serviceAccountName"] == full
        labels = deployment["metadata"]["labels"]
        chart_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
        assert labels["helm.sh/chart"] == f"lime-task-{chart_version}" and labels["app.kubernetes.io/instance"] == release
        secret = get_json(cluster, "secret", f"{full}-broker", "-n", namespace)
        assert secret["data"]["url"]  # stored, base64
        assert full in names(get_json(cluster, "serviceaccounts", "-n", namespace)["items"])
        assert get_json(cluster, "clusterrolebinding", full)["subjects"] == [
            {"kind": "ServiceAccount", "name": full, "namespace": namespace}
        ]
        assert get_json(cluster, "crd", CRD_NAME)["metadata"]["name"] == CRD_NAME
    finally:
        helm_uninstall(cluster, release, namespace)
    remaining = cluster.kubectl(
        "get", "deployment,secret,serviceaccount", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}", "-o", "name"
    ).stdout
    assert remaining.strip() == ""
    assert cluster.kubectl("get", "clusterrole", f"{release}-lime-task", check=False).returncode != 0
    # Helm never deletes CRDs from crds/ (that would delete every task): it stays.
    assert get_json(cluster, "crd", CRD_NAME)["metadata"]["name"] == CRD_NAME


def test_cluster_wide_rbac_gives_the_operator_what_it_needs_and_no_more(cluster, crd, namespace):
    release = release_name()
    helm_install(cluster, release, namespace, {"env": NO_LOGIN})
    try:
        operator = service_account_user(namespace, f"{release}-lime-task")
        for verb, resource in OPERATOR_NEEDS:
            assert can_i(cluster, operator, verb, resource, None), (verb, resource)
        # kopf follows CRDs and namespaces when it serves the whole cluster.
        for verb in ("list", "watch"):
            assert can_i(cluster, operator, verb, "customresourcedefinitions.apiextensions.k8s.io", None)
            assert can_i(cluster, operator, verb, "namespaces", None)
        for verb, resource in OPERATOR_MUST_NOT:
            assert not can_i(cluster, operator, verb, resource, None), (verb, resource)
    finally:
        helm_uninstall(cluster, release, namespace)
    assert not can_i(cluster, operator, "list", "limetasks.limetask.dev", None)  # gone with the release


def test_namespaced_rbac_is_limited_to_the_watched_namespaces(cluster, crd, namespace):
    release = release_name()
    watched = f"{namespace}-w"
    cluster.kubectl("create", "namespace", watched)
    try:
        helm_install(cluster, release, namespace, {"watchNamespaces": [watched], "env": NO_LOGIN})
        try:
            operator = service_account_user(namespace, f"{release}-lime-task")
            for verb, resource in OPERATOR_NEEDS:
                assert can_i(cluster, operator, verb, resource, watched), (verb, resource)
                assert not can_i(cluster, operator, verb, resource, namespace), (verb, resource)
            for verb, resource in OPERATOR_MUST_NOT:
                assert not can_i(cluster, operator, verb, resource, watched), (verb, resource)
            # No cluster-scoped rights at all in this mode.
            assert not can_i(cluster, operator, "list", "customresourcedefinitions.apiextensions.k8s.io", None)
            assert not can_i(cluster, operator, "list", "namespaces", None)
            # Exactly the chart's rules in the watched namespace, besides the defaults.
            assert rule_resources(cluster, operator, watched) - DEFAULT_SELF_RULES == {
                "limetasks.limetask.dev", "limetasks.limetask.dev/status", "jobs.batch", "pods", "pods/log", "events",
                "limetaskschedules.limetask.dev", "limetaskschedules.limetask.dev/status",
            }
        finally:
            helm_uninstall(cluster, release, namespace)
    finally:
        cluster.kubectl("delete", "namespace", watched, "--wait=false", check=False)


def test_task_service_account_can_do_nothing(cluster, crd, namespace):
    release = release_name()
    helm_install(cluster, release, namespace, {"watchNamespaces": [namespace], "env": NO_LOGIN})
    try:
        name = f"{release}-lime-task-task"
        account = get_json(cluster, "serviceaccount", name, "-n", namespace)
        assert account["automountServiceAccountToken"] is False
        env = get_json(cluster, "deployment", f"{release}-lime-task", "-n", namespace)
        env = {e["name"]: e.get("value") for e in env["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["LIME_TASK_OPERATOR_TASK_SERVICE_ACCOUNT"] == name
        user = service_account_user(namespace, name)
        assert rule_resources(cluster, user, namespace) <= DEFAULT_SELF_RULES
        for verb, resource in OPERATOR_NEEDS + OPERATOR_MUST_NOT + [("get", "serviceaccounts"), ("list", "*")]:
            assert not can_i(cluster, user, verb, resource, namespace), (verb, resource)
    finally:
        helm_uninstall(cluster, release, namespace)


def test_operator_deployed_by_the_chart_runs_a_task_to_success_under_its_rbac(cluster, crd, broker, namespace):
    """The whole chart for real: its Deployment's pod runs `lime-task operator` (from the
    operator image), authenticated with
    the token mounted for the chart's ServiceAccount, so the chart's Role is all it has;
    a task sent with the CLI succeeds and its event reaches the broker."""
    release = release_name()
    # An exchange of its own: other tests (and other sessions) publish to the same broker.
    exchange = f"lime_task_{release}"
    # The node's images; the operator logs in with the token the node mounts for the chart's ServiceAccount.
    helm_install(cluster, release, namespace, merge_values(cluster.operator_chart_values(), {
        "watchNamespaces": [namespace],
        "broker": {"url": broker.url, "exchange": exchange},
    }))
    try:
        events = subprocess.Popen(
            [sys.executable, "-m", "lime_task.cli", "events", "--max", "1", "--timeout", "150",
             "--task", "sample_tasks.tasks.add", "--exchange", exchange, "-o", "json"],
            env={**cluster.env(), "LIME_TASK_BROKER_URL": broker.url},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert "listening for" in events.stderr.readline()
            sent = run_cli(cluster, "send", "sample_tasks.tasks.add", "--app", "chart-app", "2", "3",
                           "-n", namespace, "--wait", "--wait-timeout", "150", "-o", "json", timeout=180)
            assert sent.returncode == 0, sent.stderr
            status = json.loads(sent.stdout)
            assert status["status"] == "SUCCESS" and status["result"]["sum"] == 5
            out, err = events.communicate(timeout=160)
            event = json.loads(out.splitlines()[0])
            assert (event["id"], event["state"], event["result"]["sum"]) == (status["id"], "SUCCESS", 5)
        finally:
            if events.poll() is None:
                events.kill()
                events.wait()
        # The task ran under the chart's no-rights ServiceAccount, without a token.
        task_pods = get_json(cluster, "pods", "-n", namespace, "-l", f"limetask.dev/task-id={status['id']}")["items"]
        assert task_pods and all(
            p["spec"]["serviceAccountName"] == f"{release}-lime-task-task"
            and p["spec"]["automountServiceAccountToken"] is False
            for p in task_pods
        )
        # The operator is the chart's pod, not some other process with more rights.
        pods = get_json(cluster, "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}")["items"]
        assert any(p["status"].get("phase") == "Running" for p in pods)
    finally:
        helm_uninstall(cluster, release, namespace)
