"""Static checks of the Helm chart: the things `helm lint` does not look at.

Rendering and installing the chart are in tests/integration/test_helm.py (they need the
helm binary and the API server).
"""

import json
import re
from pathlib import Path

import yaml

from lime_task import constants

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "lime-task"

# Values whose sub-keys are Kubernetes objects passed through as they are (a
# securityContext, a probe): their inner keys are Kubernetes' and documented there.
PASS_THROUGH = {
    "resources",
    "podSecurityContext",
    "securityContext",
    "startupProbe",
    "livenessProbe",
    "readinessProbe",
}


def test_chart_crd_is_a_byte_equal_copy_of_the_one_source():
    source = (ROOT / "crds" / "limetask.yaml").read_bytes()
    copy = (CHART / "crds" / "limetask.yaml").read_bytes()
    assert copy == source, "charts/lime-task/crds/limetask.yaml is stale: run scripts/sync-chart-crd"


def test_chart_crd_names_the_shared_group_and_kind():
    crd = yaml.safe_load((CHART / "crds" / "limetask.yaml").read_text())
    assert crd["metadata"]["name"] == constants.CRD_NAME
    assert crd["spec"]["names"]["kind"] == constants.KIND


def _documented_keys(lines: list[str]):
    """Yield (path, first comment line) for every key line of values.yaml, outside pass-through blocks."""
    stack: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parents = [name for _, name in stack]
        stack.append((indent, key))
        if parents and parents[0] in PASS_THROUGH:
            continue
        # The comment block right above the key; its first line must name the key.
        start = number
        while start > 0 and lines[start - 1].strip().startswith("#"):
            start -= 1
        first = lines[start].strip() if start < number else ""
        yield ".".join(parents + [key]), first


def test_every_value_is_documented_by_a_comment_starting_with_its_name():
    lines = (CHART / "values.yaml").read_text().splitlines()
    keys = list(_documented_keys(lines))
    assert len(keys) > 20  # the walk really saw the file
    undocumented = [
        path for path, comment in keys if not comment.startswith(f"# {path.split('.')[-1]}:")
    ]
    assert undocumented == []


def test_values_keys_are_lower_camel_case():
    def walk(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                here = f"{path}.{key}" if path else key
                if path.split(".")[0] not in PASS_THROUGH:
                    yield here, key
                    yield from walk(value, here)

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    bad = [p for p, key in walk(values) if not re.fullmatch(r"[a-z][a-zA-Z0-9]*", key)]
    assert bad == []


def test_schema_covers_exactly_the_top_level_values_and_rejects_unknown_ones():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(values)
    for section in ("image", "serviceAccount", "taskServiceAccount", "rbac", "broker", "operator"):
        described = schema["properties"][section]
        assert described["additionalProperties"] is False, section
        assert set(described["properties"]) == set(values[section]), section


def test_schema_patterns_match_the_crd_app_name_pattern():
    """operator.appImages keys are app names: the same pattern the CRD enforces on spec.app."""
    from lime_task.models import APP_NAME_PATTERN

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["definitions"]["appName"]["pattern"] == APP_NAME_PATTERN


def test_templates_are_one_kind_per_file_named_by_kind():
    expected = {
        "deployment.yaml": "Deployment",
        "serviceaccount.yaml": "ServiceAccount",
        "task-serviceaccount.yaml": "ServiceAccount",
        "clusterrole.yaml": "ClusterRole",
        "clusterrolebinding.yaml": "ClusterRoleBinding",
        "role.yaml": "Role",
        "rolebinding.yaml": "RoleBinding",
        "secret.yaml": "Secret",
        "service.yaml": "Service",
        "servicemonitor.yaml": "ServiceMonitor",
        # The optional HTTP API (api.enabled).
        "api-deployment.yaml": "Deployment",
        "api-service.yaml": "Service",
        "api-serviceaccount.yaml": "ServiceAccount",
        "api-configmap.yaml": "ConfigMap",
        "api-clusterrole.yaml": "ClusterRole",
        "api-clusterrolebinding.yaml": "ClusterRoleBinding",
        "api-role.yaml": "Role",
        "api-rolebinding.yaml": "RoleBinding",
    }
    found = {p.name for p in (CHART / "templates").glob("*.yaml")}
    assert found == set(expected)
    for name, kind in expected.items():
        kinds = set(re.findall(r"^kind: (\w+)$", (CHART / "templates" / name).read_text(), re.M))
        assert kinds == {kind}, name


def test_helper_defines_are_prefixed_with_the_chart_name():
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    names = re.findall(r'define "([^"]+)"', helpers)
    assert names and all(name.startswith("lime-task.") for name in names)


def test_chart_helpers_grant_the_operator_rules_on_the_shared_group():
    """The RBAC rules name the API group literally; keep it equal to constants.GROUP."""
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert f'apiGroups: ["{constants.GROUP}"]' in helpers
    assert f'resources: ["{constants.PLURAL}/status"]' in helpers
