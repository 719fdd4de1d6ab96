"""The local node's pure spec logic: env resolution, $(VAR) expansion, command lookup."""

from __future__ import annotations

import os
import stat

import pytest

from devcluster import podspec

POD = {
    "metadata": {"name": "p1", "namespace": "ns1", "uid": "u-1", "labels": {"app": "demo", "tier": "gold"},
                 "annotations": {"note": "x"}},
    "spec": {"nodeName": "lime-local-node", "serviceAccountName": "runner"},
}


def test_values_expand_earlier_variables_and_keep_unknown_references():
    container = {"env": [
        {"name": "A", "value": "one"},
        {"name": "B", "value": "$(A)-two"},
        {"name": "C", "value": "$(MISSING) $$(A) $$"},
    ]}
    assert podspec.resolve_env(POD, container) == {"A": "one", "B": "one-two", "C": "$(MISSING) $(A) $"}


def test_a_reference_to_a_later_variable_is_not_expanded():
    container = {"env": [{"name": "B", "value": "$(A)"}, {"name": "A", "value": "x"}]}
    assert podspec.resolve_env(POD, container)["B"] == "$(A)"


@pytest.mark.parametrize("path, expected", [
    ("metadata.name", "p1"),
    ("metadata.namespace", "ns1"),
    ("metadata.uid", "u-1"),
    ("metadata.labels['tier']", "gold"),
    ("metadata.labels['absent']", ""),
    ("metadata.annotations['note']", "x"),
    ("metadata.labels", 'app="demo"\ntier="gold"'),
    ("spec.nodeName", "lime-local-node"),
    ("spec.serviceAccountName", "runner"),
    ("status.podIP", "127.0.0.1"),
])
def test_field_refs(path, expected):
    container = {"env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}]}
    assert podspec.resolve_env(POD, container)["V"] == expected


def test_unknown_field_ref_is_refused_by_name():
    container = {"env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": "spec.priority"}}}]}
    with pytest.raises(podspec.UnsupportedPod, match="spec.priority"):
        podspec.resolve_env(POD, container)


def test_resource_field_ref_is_refused():
    container = {"env": [{"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}
    with pytest.raises(podspec.UnsupportedPod, match="resourceFieldRef"):
        podspec.resolve_env(POD, container)


def test_config_map_and_secret_refs_use_the_lookup():
    data = {("ConfigMap", "ns1", "cm"): {"k": "from-cm"}, ("Secret", "ns1", "s"): {"pw": "hunter2", "x": "1"}}

    def lookup(kind, ns, name):
        return data.get((kind, ns, name))

    container = {
        "envFrom": [{"secretRef": {"name": "s"}, "prefix": "S_"}],
        "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
                {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}}],
    }
    assert podspec.resolve_env(POD, container, lookup=lookup) == {"S_pw": "hunter2", "S_x": "1", "K": "from-cm"}


def test_missing_config_map_is_a_retryable_config_error():
    container = {"env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]}
    with pytest.raises(podspec.ConfigError, match='ConfigMap "cm" not found'):
        podspec.resolve_env(POD, container, lookup=lambda *a: None)
    with pytest.raises(podspec.ConfigError, match="couldn't find key k"):
        podspec.resolve_env(POD, container, lookup=lambda *a: {"other": "1"})


def test_argv_is_command_plus_args_expanded():
    container = {"name": "c", "command": ["echo", "$(WHO)"], "args": ["$$(WHO)", "x"]}
    assert podspec.container_argv(container, {"WHO": "me"}) == ["echo", "me", "$(WHO)", "x"]


def test_a_container_without_command_is_refused_because_the_image_is_not_used():
    with pytest.raises(podspec.UnsupportedPod, match="no command"):
        podspec.container_argv({"name": "c", "args": ["x"]}, {})


def test_process_path_puts_the_venv_first_unless_the_container_sets_path():
    assert podspec.process_path({}, "/venv/bin", "/usr/bin:/bin") == "/venv/bin:/usr/bin:/bin"
    assert podspec.process_path({"PATH": "/opt/x"}, "/venv/bin", "/usr/bin") == "/opt/x"


def _exe(path):
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_resolve_executable_searches_path_in_order(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    _exe(second / "tool")
    want = _exe(first / "tool")
    assert podspec.resolve_executable("tool", f"{first}{os.pathsep}{second}", "/") == want


def test_resolve_executable_relative_to_working_dir(tmp_path):
    want = _exe(tmp_path / "run.sh")
    assert podspec.resolve_executable("./run.sh", "", str(tmp_path)) == want


def test_missing_executable_names_the_command(tmp_path):
    (tmp_path / "notexec").write_text("x")
    with pytest.raises(FileNotFoundError, match='"nosuchtool": executable file not found'):
        podspec.resolve_executable("nosuchtool", str(tmp_path), "/")
    with pytest.raises(FileNotFoundError, match="notexec"):
        podspec.resolve_executable("notexec", str(tmp_path), "/")


def test_init_containers_are_refused():
    with pytest.raises(podspec.UnsupportedPod, match="initContainers"):
        podspec.check_supported({"spec": {"containers": [{}], "initContainers": [{}]}})
    podspec.check_supported({"spec": {"containers": [{"name": "c"}]}})
