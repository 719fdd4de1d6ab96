"""send_task / get_status / TaskStatus.wait against the real API server.

No operator runs here: the tests play its part by patching the status subresource.
Every test that uses `env` runs twice: directly against the API server, and in client
mode through the HTTP API (LIME_TASK_API_URL, a real ServiceAccount token checked by
TokenReview) with the same expectations.
"""

import threading
import uuid

import pytest
import yaml
from kubernetes import client

from lime_task import (
    InvalidTaskError,
    NotFoundError,
    get_status,
    send_task,
    send_task_with_options,
    task,
)
from lime_task.constants import GROUP, LABEL_APP, MAX_ARGUMENTS_BYTES, PLURAL, VERSION
from lime_task.kube import LimeTaskApiError

from ._api_helpers import service_account_token, start_api

pytestmark = pytest.mark.integration


class App:
    name = "api-test-app"


@task(retries=2, timeout_seconds=120, ttl_seconds_after_finished=30)
def configured(app):
    """A module-level task with defaults, so send_task can find them by function."""


@pytest.fixture(params=["direct", "http"])
def env(request, cluster, crd, namespace, monkeypatch, tmp_path):
    """Point the library at the test cluster and namespace, as a user's environment would;
    for "http", also at an HTTP API serving the namespace, with a token whose identity
    may act for every app these tests use."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    monkeypatch.setenv("LIME_TASK_NAMESPACE", namespace)
    if request.param == "http":
        identity = f"system:serviceaccount:{namespace}:app-client"
        api = start_api(cluster, namespace, {identity: ["api-test-app", "plain-name", "someone-else"]}, tmp_path, [])
        request.addfinalizer(api.stop)
        monkeypatch.setenv("LIME_TASK_API_URL", api.url)
        monkeypatch.setenv("LIME_TASK_API_TOKEN", service_account_token(cluster, namespace, "app-client"))
    return namespace


@pytest.fixture
def custom(cluster):
    return client.CustomObjectsApi(cluster.api_client())


def _get(custom, namespace, name):
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def _patch_status(custom, namespace, name, status):
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})


def _names(custom, namespace):
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    return [item["metadata"]["name"] for item in listed["items"]]


def test_send_task_creates_a_pending_task(env, custom):
    status = send_task("sample_tasks.tasks.add", App(), 1, 2, props={"x": [1, None]})
    assert str(uuid.UUID(status.id, version=4)) == status.id
    assert (status.status, status.result, status.error) == ("PENDING", None, None)
    assert status.to_dict() == {"id": status.id, "status": "PENDING", "result": None}
    obj = _get(custom, env, status.id)
    assert obj["metadata"]["labels"] == {LABEL_APP: "api-test-app"}
    assert obj["spec"] == {
        "task": "sample_tasks.tasks.add",
        "app": "api-test-app",
        "args": [1, 2],
        "kwargs": {"props": {"x": [1, None]}},
        "retries": 0,
    }
    assert "status" not in obj


def test_app_may_be_a_name_string(env, custom):
    status = send_task("sample_tasks.tasks.hello", "plain-name", "you")
    assert _get(custom, env, status.id)["spec"]["app"] == "plain-name"


def test_run_options_reach_the_spec(env, custom):
    status = send_task_with_options(
        "sample_tasks.tasks.sleep",
        App(),
        args=[5],
        timeout_seconds=60,
        retries=3,
        image="registry.local/tasks:1",
        resources={"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": 1}},
        ttl_seconds_after_finished=0,
    )
    spec = _get(custom, env, status.id)["spec"]
    assert spec == {
        "task": "sample_tasks.tasks.sleep",
        "app": "api-test-app",
        "args": [5],
        "kwargs": {},
        "timeoutSeconds": 60,
        "retries": 3,
        "image": "registry.local/tasks:1",
        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": 1}},
        "ttlSecondsAfterFinished": 0,
    }


def test_task_defaults_apply_and_explicit_options_win(env, custom):
    spec = _get(custom, env, send_task(configured, App()).id)["spec"]
    assert (spec["task"], spec["retries"], spec["timeoutSeconds"], spec["ttlSecondsAfterFinished"]) == (
        "tests.integration.test_api.configured", 2, 120, 30,
    )
    spec = _get(custom, env, send_task_with_options("tests.integration.test_api.configured", App(), retries=0).id)["spec"]
    assert (spec["retries"], spec["timeoutSeconds"]) == (0, 120)


def test_unserialisable_argument_is_refused_before_anything_is_created(env, custom):
    with pytest.raises(InvalidTaskError, match=r"task 'sample_tasks.tasks.add' cannot be sent: kwargs\['when'\]: a value of type object"):
        send_task("sample_tasks.tasks.add", App(), 1, when=object())
    with pytest.raises(InvalidTaskError, match=r"args\[1\]: a value of type set"):
        send_task("sample_tasks.tasks.add", App(), 1, {1, 2})
    assert _names(custom, env) == []


def test_too_large_arguments_are_refused_before_anything_is_created(env, custom):
    with pytest.raises(InvalidTaskError, match=f"the limit is {MAX_ARGUMENTS_BYTES}"):
        send_task("sample_tasks.tasks.hello", App(), "x" * MAX_ARGUMENTS_BYTES)
    assert _names(custom, env) == []


def test_explicit_namespace_wins_over_the_environment(cluster, crd, namespace, monkeypatch, custom):
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    monkeypatch.setenv("LIME_TASK_NAMESPACE", "some-namespace-that-does-not-exist")
    status = send_task_with_options("sample_tasks.tasks.add", App(), [1, 2], namespace=namespace)
    assert status.namespace == namespace
    assert _names(custom, namespace) == [status.id]
    assert get_status(status.id, "api-test-app", namespace=namespace).status == "PENDING"


def test_kubeconfig_context_namespace_is_used(cluster, crd, namespace, monkeypatch, tmp_path, custom):
    config = yaml.safe_load(open(cluster.kubeconfig))
    current = config["current-context"]
    for context in config["contexts"]:
        if context["name"] == current:
            context["context"]["namespace"] = namespace
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("LIME_TASK_NAMESPACE", raising=False)
    status = send_task("sample_tasks.tasks.add", App(), 1, 2)
    assert _names(custom, namespace) == [status.id]


def test_missing_namespace_gives_a_clear_error(cluster, crd, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    monkeypatch.setenv("LIME_TASK_NAMESPACE", "no-such-namespace-lt")
    with pytest.raises(LimeTaskApiError, match="no-such-namespace-lt"):
        send_task("sample_tasks.tasks.add", App(), 1, 2)


def test_get_status_follows_the_status_subresource(env, custom):
    sent = send_task("sample_tasks.tasks.add", App(), 1, 2)
    assert get_status(sent.id, "api-test-app").status == "PENDING"
    _patch_status(custom, env, sent.id, {"state": "STARTED"})
    assert get_status(sent.id, App()).status == "STARTED"
    _patch_status(custom, env, sent.id, {"state": "SUCCESS", "result": {"sum": 3}})
    done = get_status(sent.id, "api-test-app")
    assert done.is_completed()
    assert done.to_dict() == {"id": sent.id, "status": "SUCCESS", "result": {"sum": 3}}


def test_get_status_reads_failures(env, custom):
    sent = send_task("sample_tasks.tasks.fail", App(), "boom")
    error = {"type": "ValueError", "message": "boom", "traceback": "Traceback ..."}
    _patch_status(custom, env, sent.id, {"state": "FAILURE", "error": error, "reason": "TaskRaised"})
    status = get_status(sent.id, "api-test-app")
    assert (status.status, status.result, status.error) == ("FAILURE", None, error)


def test_another_apps_task_is_indistinguishable_from_a_missing_one(env, custom):
    sent = send_task("sample_tasks.tasks.add", App(), 1, 2)
    with pytest.raises(NotFoundError) as other_app:
        get_status(sent.id, "someone-else")
    custom.delete_namespaced_custom_object(GROUP, VERSION, env, PLURAL, sent.id)
    with pytest.raises(NotFoundError) as missing:
        get_status(sent.id, "someone-else")
    assert str(other_app.value) == str(missing.value)
    assert sent.id in str(missing.value)


@pytest.mark.parametrize("task_id", ["", "Not/A/Name", "../../etc"])
def test_malformed_ids_are_simply_not_found(env, task_id):
    with pytest.raises(NotFoundError):
        get_status(task_id, "api-test-app")


def _wait_in_thread(status, timeout):
    outcome = {}

    def target():
        try:
            outcome["status"] = status.wait(timeout=timeout, on_change=lambda s: outcome.setdefault("seen", []).append(s.status))
        except Exception as error:  # handed to the test thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_wait_follows_the_task_to_success(env, custom):
    sent = send_task("sample_tasks.tasks.add", App(), 1, 2)
    thread, outcome = _wait_in_thread(sent, timeout=60)
    _patch_status(custom, env, sent.id, {"state": "STARTED"})
    _patch_status(custom, env, sent.id, {"state": "SUCCESS", "result": {"sum": 3}})
    thread.join(timeout=90)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["status"] is sent
    assert (sent.status, sent.result) == ("SUCCESS", {"sum": 3})
    assert outcome["seen"][-1] == "SUCCESS"


def test_wait_returns_failure_with_the_error(env, custom):
    sent = send_task("sample_tasks.tasks.fail", App(), "boom")
    thread, outcome = _wait_in_thread(sent, timeout=60)
    _patch_status(custom, env, sent.id, {"state": "FAILURE", "error": {"type": "ValueError", "message": "boom"}})
    thread.join(timeout=90)
    assert outcome["status"].status == "FAILURE"
    assert outcome["status"].error["type"] == "ValueError"


def test_wait_times_out_naming_the_task_and_last_state(env, custom):
    sent = send_task("sample_tasks.tasks.sleep", App(), 100)
    _patch_status(custom, env, sent.id, {"state": "STARTED"})
    with pytest.raises(TimeoutError) as caught:
        sent.wait(timeout=1)
    assert sent.id in str(caught.value) and "last state STARTED" in str(caught.value)


def test_wait_on_a_deleted_task_raises_not_found(env, custom):
    sent = send_task("sample_tasks.tasks.sleep", App(), 100)
    thread, outcome = _wait_in_thread(sent, timeout=60)
    # The wait starts with a read: wait for it to have seen the task before deleting.
    custom.delete_namespaced_custom_object(GROUP, VERSION, env, PLURAL, sent.id)
    thread.join(timeout=90)
    assert isinstance(outcome.get("error"), NotFoundError)


def test_a_status_from_get_status_can_wait(env, custom):
    sent = send_task("sample_tasks.tasks.add", App(), 1, 2)
    _patch_status(custom, env, sent.id, {"state": "SUCCESS", "result": 3})
    assert get_status(sent.id, "api-test-app").wait(timeout=10).result == 3
