"""examples/05-app-binding-policy against the real API server: in a labelled namespace a
ServiceAccount may create LimeTasks for the app named like itself only; users that are
not its ServiceAccounts, and unlabelled namespaces, are not affected. (The policy is
cluster-scoped: the test's copy has its own name and matches only the test's namespace.)"""

from __future__ import annotations

import time
import uuid

import pytest
import yaml

from .chart_support import ROOT, run_cli, service_account_kubeconfig

pytestmark = pytest.mark.integration
EXAMPLE = ROOT / "examples" / "05-app-binding-policy"


@pytest.fixture
def policy(cluster, namespace):
    suffix = uuid.uuid4().hex[:8]
    policy, binding = yaml.safe_load_all((EXAMPLE / "policy.yaml").read_text())
    policy["metadata"]["name"] = binding["spec"]["policyName"] = f"limetask-app-binding-{suffix}"
    binding["metadata"]["name"] = f"limetask-app-binding-{suffix}"
    binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] = namespace
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([policy, binding]))
    yield
    cluster.kubectl("delete", "validatingadmissionpolicybinding", binding["metadata"]["name"], "--ignore-not-found")
    cluster.kubectl("delete", "validatingadmissionpolicy", policy["metadata"]["name"], "--ignore-not-found")


def _send(cluster, namespace, env, app):
    return run_cli(cluster, "send", "sample_tasks.tasks.add", "--app", app, "1", "2", "-n", namespace, env=env)


def test_a_serviceaccount_may_create_tasks_for_its_own_app_only(cluster, crd, namespace, policy, tmp_path):
    for name in ("billing", "shipping"):
        cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    cluster.kubectl("create", "role", "creator", "-n", namespace, "--verb=create,get", "--resource=limetasks.limetask.dev")
    cluster.kubectl("create", "rolebinding", "creator", "-n", namespace, "--role=creator",
                    f"--serviceaccount={namespace}:billing", f"--serviceaccount={namespace}:shipping")
    billing = {"KUBECONFIG": str(service_account_kubeconfig(cluster, namespace, "billing", tmp_path / "billing"))}
    shipping = {"KUBECONFIG": str(service_account_kubeconfig(cluster, namespace, "shipping", tmp_path / "shipping"))}

    # Before the namespace opts in, nobody is bound.
    assert _send(cluster, namespace, billing, "shipping").returncode == 0
    cluster.kubectl("label", "namespace", namespace, "limetask.dev/app-binding=serviceaccount")
    # A new policy or label takes a moment to be enforced: wait until it refuses.
    deadline = time.monotonic() + 60
    while True:
        refused = _send(cluster, namespace, billing, "shipping")
        if refused.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert refused.returncode == 1, (refused.stdout, refused.stderr)  # the API server refused: exit 1
    assert "ServiceAccount billing may create LimeTasks only for app billing, not shipping" in refused.stderr
    assert "forbidden" in refused.stderr
    assert _send(cluster, namespace, billing, "billing").returncode == 0
    assert _send(cluster, namespace, shipping, "shipping").returncode == 0
    assert _send(cluster, namespace, None, "shipping").returncode == 0  # the administrator: not bound
    apps = sorted(cluster.kubectl("get", "limetasks", "-n", namespace, "-o",
                                  "jsonpath={.items[*].spec.app}").stdout.split())
    assert apps == ["billing", "shipping", "shipping", "shipping"]
