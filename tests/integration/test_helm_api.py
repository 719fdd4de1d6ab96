"""The chart's optional HTTP API (api.enabled) against the real API server: its rendered
RBAC is exactly enough for the API (run here as its own ServiceAccount, with the
rendered configuration), and the two example applications' ServiceAccounts need no
rights on LimeTasks at all to send and follow their tasks through it."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from lime_task_api.settings import parse_settings

from ._api_helpers import ApiProcess, service_account_token
from .chart_support import ROOT, service_account_kubeconfig

pytestmark = pytest.mark.integration
CHART = ROOT / "charts" / "lime-task"
API_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap"}


def _render(cluster, namespace: str, identities: dict) -> list[dict]:
    done = cluster.helm("template", namespace, str(CHART), "-n", namespace, "--set", "api.enabled=true",
                        "--set-json", f"api.identities={json.dumps(identities)}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _api_part(docs: list[dict]) -> list[dict]:
    return [doc for doc in docs if (doc["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "api"]


def test_rendered_api_objects_are_its_own_and_its_config_is_valid(cluster, namespace):
    identities = {f"system:serviceaccount:{namespace}:billing": ["billing"]}
    docs = _render(cluster, namespace, identities)
    api = _api_part(docs)
    assert {doc["kind"] for doc in api} == API_KINDS | {"Deployment", "Service"}
    config = next(doc for doc in api if doc["kind"] == "ConfigMap")["data"]["config.yaml"]
    settings = parse_settings(yaml.safe_load(config))
    assert (settings.namespace, settings.audiences) == (namespace, ("lime-task-api",))
    assert settings.apps_of(f"system:serviceaccount:{namespace}:billing") == ("billing",)
    # The operator's Deployment must never select the API's pods (nor the reverse).
    deployments = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Deployment"}
    operator = next(d for name, d in deployments.items() if not name.endswith("-api"))
    api_deployment = next(d for name, d in deployments.items() if name.endswith("-api"))
    operator_selector = operator["spec"]["selector"]["matchLabels"].items()
    assert not operator_selector <= api_deployment["spec"]["template"]["metadata"]["labels"].items()
    pod = api_deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Without API keys the API may not list Secrets.
    no_keys = _api_part(yaml.safe_load_all(cluster.helm(
        "template", namespace, str(CHART), "-n", namespace, "--set", "api.enabled=true",
        "--set", "api.apiKeys.enabled=false").stdout))
    role = next(doc for doc in no_keys if doc and doc["kind"] == "Role")
    assert all("secrets" not in rule["resources"] for rule in role["rules"])


def test_bad_api_values_fail_at_install_time(cluster, namespace):
    for setting in ("api.maxWaitSeconds=0", "api.port=0", "api.identites=x", "api.apiKeys.enabled=maybe"):
        done = cluster.helm("template", "x", str(CHART), "--set", "api.enabled=true", "--set", setting, check=False)
        assert done.returncode != 0, setting
    done = cluster.helm("template", "x", str(CHART), "--set", "api.enabled=true",
                        "--set-json", 'api.identities={"a": ["bad app"]}', check=False)
    assert done.returncode != 0 and "identities" in done.stderr


@pytest.fixture
def chart_rbac(cluster, namespace):
    """The chart's API objects (all but its Deployment and Service) applied for real;
    the cluster-scoped ones are deleted afterwards."""
    identities = {f"system:serviceaccount:{namespace}:billing": ["billing"],
                  f"system:serviceaccount:{namespace}:shipping": ["shipping"]}
    docs = [doc for doc in _api_part(_render(cluster, namespace, identities)) if doc["kind"] in API_KINDS]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    yield docs
    for doc in docs:
        if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            cluster.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found", check=False)


def test_the_charts_rbac_is_enough_and_applications_need_none(cluster, namespace, operator, chart_rbac, tmp_path):
    operator(namespace)
    account = next(doc for doc in chart_rbac if doc["kind"] == "ServiceAccount")["metadata"]["name"]
    config = yaml.safe_load(next(doc for doc in chart_rbac if doc["kind"] == "ConfigMap")["data"]["config.yaml"])
    kubeconfig = service_account_kubeconfig(cluster, namespace, account, tmp_path / "api-kubeconfig")
    tokens = {app: service_account_token(cluster, namespace, app) for app in ("billing", "shipping")}
    for app in tokens:
        can = cluster.kubectl("auth", "can-i", "create", "limetasks.limetask.dev", "-n", namespace,
                              "--as", f"system:serviceaccount:{namespace}:{app}", check=False).stdout.strip()
        assert can == "no"
    api = ApiProcess({**cluster.env(), "KUBECONFIG": str(kubeconfig)}, config, tmp_path).start()
    try:
        sent = {}
        for app, token in tokens.items():
            status, view = api.call("POST", "/v1/tasks", {"task": "sample_tasks.tasks.add", "args": [1, 2]}, token=token)
            assert status == 201, view
            sent[app] = view["id"]
        for app, token in tokens.items():
            deadline = time.monotonic() + 120
            while True:
                status, view = api.call("GET", f"/v1/tasks/{sent[app]}?wait=30", token=token)
                assert status == 200, view
                if view["status"] in ("SUCCESS", "FAILURE") or time.monotonic() > deadline:
                    break
            assert (view["status"], view["app"], view["result"]["sum"]) == ("SUCCESS", app, 3)
        assert api.call("GET", f"/v1/tasks/{sent['shipping']}", token=tokens["billing"])[0] == 404
        status, page = api.call("GET", "/v1/tasks", token=tokens["shipping"])
        assert [item["id"] for item in page["items"]] == [sent["shipping"]]
        assert api.call("DELETE", f"/v1/tasks/{sent['billing']}", token=tokens["billing"])[0] == 200
    finally:
        api.stop()
        print(f"----- API log -----\n{api.log[-10000:]}")
