"""The LimeTask CRD as the real API server enforces and shows it.

Malformed objects must be refused by the server itself, with messages that name the
field; kubectl's explain, get and wait must work on LimeTasks.
"""

import json
import os
import subprocess

import pytest
from kubernetes import client

from lime_task.constants import API_VERSION, GROUP, KIND, PLURAL, VERSION

pytestmark = pytest.mark.integration


def _task(name, **spec):
    body = {"task": "sample_tasks.tasks.add", "app": "demo-app", **spec}
    body = {key: value for key, value in body.items() if value is not None}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": body}


def _create(cluster, namespace, obj):
    """kubectl create (strict server-side field validation, kubectl's default)."""
    return cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)


def _patch_status(cluster, namespace, name, status):
    api = client.CustomObjectsApi(cluster.api_client())
    return api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status}
    )


def test_a_valid_task_is_stored_with_defaults(cluster, crd, namespace):
    done = _create(cluster, namespace, _task("valid"))
    assert done.returncode == 0, done.stderr
    stored = json.loads(cluster.kubectl("get", "lt", "valid", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"] == {
        "task": "sample_tasks.tasks.add",
        "app": "demo-app",
        "args": [],
        "kwargs": {},
        "retries": 0,
    }
    assert "status" not in stored


def test_any_json_arguments_round_trip(cluster, crd, namespace):
    args = [None, 1, 2.5, "s", True, [1, [2]], {"nested": {"deep": None}}]
    kwargs = {"props": {"a": [1, None]}, "flag": False, "nothing": None}
    done = _create(
        cluster,
        namespace,
        _task("jsonargs", args=args, kwargs=kwargs, resources={"limits": {"cpu": 1, "memory": "64Mi"}}),
    )
    assert done.returncode == 0, done.stderr
    stored = json.loads(cluster.kubectl("get", "lt", "jsonargs", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"]["args"] == args
    assert stored["spec"]["kwargs"] == kwargs
    assert stored["spec"]["resources"] == {"limits": {"cpu": 1, "memory": "64Mi"}}


@pytest.mark.parametrize(
    "spec, fragments",
    [
        ({"task": None}, ["spec.task", "Required value"]),
        ({"task": "not_dotted"}, ["spec.task", "should match"]),
        ({"task": "pkg.tasks.add; rm -rf /"}, ["spec.task", "should match"]),
        ({"app": None}, ["spec.app", "Required value"]),
        ({"app": "Bad App!"}, ["spec.app", "should match"]),
        ({"app": "a" * 64}, ["spec.app", "may not be more than 63"]),
        ({"args": "not-a-list"}, ["spec.args", "array"]),
        ({"args": list(range(257))}, ["spec.args", "must have at most 256 items"]),
        ({"kwargs": {f"k{i}": i for i in range(257)}}, ["spec.kwargs", "must have at most 256"]),
        ({"retries": -1}, ["spec.retries", "greater than or equal to 0"]),
        ({"retries": 21}, ["spec.retries", "less than or equal to 20"]),
        ({"timeoutSeconds": 0}, ["spec.timeoutSeconds", "greater than or equal to 1"]),
        ({"ttlSecondsAfterFinished": -1}, ["spec.ttlSecondsAfterFinished", "greater than or equal to 0"]),
        ({"unexpected": 1}, ['unknown field "spec.unexpected"']),
        ({"resources": {"limits": {"cpu": [1]}}}, ["spec.resources.limits.cpu"]),
    ],
    ids=[
        "missing-task", "undotted-task", "injection-task", "missing-app", "bad-app", "long-app",
        "args-not-list", "huge-args", "huge-kwargs", "negative-retries", "too-many-retries",
        "zero-timeout", "negative-ttl", "unknown-field", "bad-quantity",
    ],
)
def test_malformed_tasks_are_rejected_naming_the_field(cluster, crd, namespace, spec, fragments):
    done = _create(cluster, namespace, _task("bad", **spec))
    assert done.returncode != 0
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr
    assert cluster.kubectl("get", "lt", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_unknown_status_fields_and_states_are_rejected(cluster, crd, namespace):
    assert _create(cluster, namespace, _task("st")).returncode == 0
    api = client.CustomObjectsApi(cluster.api_client())
    with pytest.raises(client.ApiException) as caught:
        _patch_status(cluster, namespace, "st", {"state": "DONE"})
    assert "status.state" in caught.value.body and "Unsupported value" in caught.value.body
    with pytest.raises(client.ApiException) as caught:
        _patch_status(cluster, namespace, "st", {"reason": "not camel case"})
    assert "status.reason" in caught.value.body
    # Unknown status fields are dropped by the structural schema, not stored.
    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "st", {"status": {"state": "STARTED", "whatever": 1}}
    )
    stored = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "st")
    assert stored["status"] == {"state": "STARTED"}


def test_spec_cannot_change_after_creation(cluster, crd, namespace):
    assert _create(cluster, namespace, _task("frozen", args=[1, 2])).returncode == 0
    done = cluster.kubectl(
        "patch", "lt", "frozen", "-n", namespace, "--type=merge", "-p", '{"spec":{"args":[3,4]}}', check=False
    )
    assert done.returncode != 0
    assert "spec is immutable after creation" in done.stderr
    stored = json.loads(cluster.kubectl("get", "lt", "frozen", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"]["args"] == [1, 2]


def test_metadata_and_status_can_still_change(cluster, crd, namespace):
    assert _create(cluster, namespace, _task("mutable")).returncode == 0
    cluster.kubectl("label", "lt", "mutable", "-n", namespace, "extra=yes")
    status = _patch_status(cluster, namespace, "mutable", {"state": "STARTED", "attempts": 1})
    assert status["status"] == {"state": "STARTED", "attempts": 1}
    # The main resource ignores status: only the subresource writes it.
    cluster.kubectl(
        "patch", "lt", "mutable", "-n", namespace, "--type=merge", "-p", '{"status":{"state":"SUCCESS"}}'
    )
    stored = json.loads(cluster.kubectl("get", "lt", "mutable", "-n", namespace, "-o", "json").stdout)
    assert stored["status"]["state"] == "STARTED"


def test_kubectl_explain_lists_every_spec_field(cluster, crd):
    out = cluster.kubectl("explain", "limetask.spec").stdout
    for field in ("task", "app", "args", "kwargs", "timeoutSeconds", "retries", "image", "resources",
                  "ttlSecondsAfterFinished"):
        assert f"  {field}\t" in out, out
    assert "Dotted import path of the task function" in out
    assert "immutable" in cluster.kubectl("explain", "limetask.spec").stdout.lower()
    status = cluster.kubectl("explain", "limetask.status.conditions").stdout
    assert "lastTransitionTime" in status and "observedGeneration" in status


def test_kubectl_get_shows_the_columns(cluster, crd, namespace):
    assert _create(cluster, namespace, _task("shown")).returncode == 0
    _patch_status(cluster, namespace, "shown", {"state": "SUCCESS", "duration": "1.5s", "reason": "Completed", "attempts": 2,
                                                "message": "done"})
    lines = cluster.kubectl("get", "lt", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "TASK", "APP", "AGE"]
    assert lines[1].split()[:4] == ["shown", "SUCCESS", "sample_tasks.tasks.add", "demo-app"]
    wide = cluster.kubectl("get", "lt", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "STATE", "TASK", "APP", "AGE", "DURATION", "REASON", "ATTEMPTS", "MESSAGE"]
    assert wide[1].split()[-4:] == ["1.5s", "Completed", "2", "done"]
    # The short name and the category both find LimeTasks.
    assert cluster.kubectl("get", "limetask", "-n", namespace, "-o", "name").stdout.strip() == "limetask.limetask.dev/shown"
    # By name too: the singular must not collide with the category (it did once).
    assert cluster.kubectl("get", "limetask", "shown", "-n", namespace, "-o", "name").stdout.strip() == \
        "limetask.limetask.dev/shown"
    resources = cluster.kubectl("api-resources", "--categories=lime", "-o", "name").stdout.split()
    assert "limetasks.limetask.dev" in resources


def test_kubectl_wait_for_condition_succeeded(cluster, crd, namespace):
    assert _create(cluster, namespace, _task("waited")).returncode == 0
    waiter = subprocess.Popen(
        [os.path.join(str(cluster.bin_dir), "kubectl"), "wait", "--for=condition=Succeeded", "lt/waited", "-n", namespace,
         "--timeout=60s"],
        env=cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _patch_status(cluster, namespace, "waited", {
            "state": "SUCCESS",
            "reason": "Completed",
            "conditions": [{
                "type": "Succeeded", "status": "True", "reason": "Completed", "message": "done",
                "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1,
            }],
        })
        out, err = waiter.communicate(timeout=90)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    assert waiter.returncode == 0, err
    assert "condition met" in out


def test_condition_fields_follow_the_conventions(cluster, crd, namespace):
    assert _create(cluster, namespace, _task("conds")).returncode == 0
    bad = [
        {"type": "Succeeded", "status": "Maybe", "reason": "X", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "Succeeded", "status": "True", "reason": "lower case", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "Succeeded", "status": "True", "reason": "Completed"},
    ]
    for condition in bad:
        with pytest.raises(client.ApiException) as caught:
            _patch_status(cluster, namespace, "conds", {"conditions": [condition]})
        assert "status.conditions[0]" in caught.value.body
    # listType=map keyed by type: two conditions of the same type are refused.
    same = {"type": "Succeeded", "status": "Unknown", "reason": "Queued", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    with pytest.raises(client.ApiException) as caught:
        _patch_status(cluster, namespace, "conds", {"conditions": [same, same]})
    assert "Duplicate value" in caught.value.body
