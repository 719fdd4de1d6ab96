"""Helpers for the chart and CLI integration tests: install the chart, act as a ServiceAccount.

Not fixtures (those live in tests/conftest.py): plain functions over the `cluster`
fixture's interface.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterable

import yaml

from ._operator_helpers import wait_for  # noqa: F401 - the helm tests' poll, re-exported

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "lime-task"
# The rules the operator needs (see the chart's _helpers.tpl), as (verb, resource) pairs
# for `kubectl auth can-i`.
OPERATOR_NEEDS = [
    (verb, resource)
    for resource, verbs in {
        "limetasks.limetask.dev": ("get", "list", "watch", "patch", "delete", "create"),
        "limetasks.limetask.dev/status": ("get", "patch", "update"),
        "jobs.batch": ("create", "get", "list", "watch", "delete"),
        "pods": ("get", "list", "watch"),
        # The end of a failed attempt's log, kept in the task's status (#11).
        "pods/log": ("get",),
        "events": ("create", "patch"),
        # LimeTaskSchedules (#15): watched, their status written, one task created per run.
        "limetaskschedules.limetask.dev": ("get", "list", "watch"),
        "limetaskschedules.limetask.dev/status": ("get", "patch", "update"),
    }.items()
    for verb in verbs
]
# Things the operator must NOT be able to do: it never changes tasks (it creates those of
# schedules, #15), never changes schedules, never reads secrets, never runs pods
# directly, never changes RBAC or workloads other than Jobs.
OPERATOR_MUST_NOT = [
    ("update", "limetasks.limetask.dev"),
    ("create", "limetaskschedules.limetask.dev"),
    ("patch", "limetaskschedules.limetask.dev"),
    ("delete", "limetaskschedules.limetask.dev"),
    ("get", "secrets"),
    ("list", "secrets"),
    ("create", "pods"),
    ("delete", "pods"),
    ("create", "pods/exec"),
    ("patch", "jobs.batch"),
    ("create", "deployments.apps"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "serviceaccounts/token"),
    ("get", "configmaps"),
]
# What every authenticated identity may do (the cluster's default discovery and
# self-review roles): the only rules a "can do nothing" account may show.
DEFAULT_SELF_RULES = {
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
    "selfsubjectreviews.authentication.k8s.io",
}


def service_account_user(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def can_i(cluster, user: str, verb: str, resource: str, namespace: str | None) -> bool:
    """`kubectl auth can-i` as `user` (impersonated: the API server adds the
    ServiceAccount's groups, so this is the account's real authorisation)."""
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    # "pods/log" on kubectl's command line would mean the pod *named* log.
    resource, _, subresource = resource.partition("/")
    if subresource:
        scope.append(f"--subresource={subresource}")
    done = cluster.kubectl("auth", "can-i", verb, resource, "--as", user, *scope, check=False)
    answer = done.stdout.strip()
    assert answer in ("yes", "no"), (verb, resource, done.stdout, done.stderr)
    return answer == "yes"


def rule_resources(cluster, user: str, namespace: str) -> set[str]:
    """The resources of every rule `user` has in `namespace` (`auth can-i --list`)."""
    done = cluster.kubectl("auth", "can-i", "--list", "--as", user, "-n", namespace, "--no-headers")
    resources = set()
    for line in done.stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first and not first.startswith("["):  # "[]" is a non-resource-URL rule
            resources.add(first)
    return resources


def helm_install(cluster, release: str, namespace: str, values: dict, timeout: str = "120s"):
    """`helm install` with values given as a file (no --set escaping pitfalls)."""
    values_file = Path(cluster.kubeconfig).parent / f"values-{release}.yaml"
    values_file.write_text(yaml.safe_dump(values))
    return cluster.helm(
        "install", release, str(CHART), "-n", namespace, "-f", str(values_file), "--timeout", timeout
    )


def helm_uninstall(cluster, release: str, namespace: str) -> None:
    cluster.helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "120s", check=False)


def service_account_kubeconfig(cluster, namespace: str, name: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount with a real bound token.

    The same credential a pod of that account gets: the API server's token
    authenticator and RBAC decide, no impersonation involved (the Python clients used by
    kopf do not support kubeconfig impersonation anyway).
    """
    token = cluster.kubectl("create", "token", name, "-n", namespace, "--duration", "2h").stdout.strip()
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context_name = config.get("current-context") or config["contexts"][0]["name"]
    context = next(c for c in config["contexts"] if c["name"] == context_name)["context"]
    server = next(c for c in config["clusters"] if c["name"] == context["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": server["cluster"]}],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": namespace}}],
                "current-context": "sa",
            }
        )
    )
    return path


def run_cli(cluster, *args: str, env: dict | None = None, timeout: float = 120, input: str | None = None):
    """Run `lime-task` as a user would: a separate process, the cluster's KUBECONFIG."""
    return subprocess.run(
        [sys.executable, "-m", "lime_task.cli", *args],
        env={**cluster.env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def get_json(cluster, *args: str):
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def names(items: Iterable[dict]) -> set[str]:
    return {item["metadata"]["name"] for item in items}
