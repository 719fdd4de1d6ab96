"""Client mode (LIME_TASK_API_URL): the library and the CLI through the HTTP API, served
for real over an in-memory backend. Same results, errors and exit codes as direct."""

from __future__ import annotations

import io
import json
import threading

import pytest

from lime_task import InvalidTaskError, NotFoundError, cli, get_status, send_task, send_task_with_options, task
from lime_task.cli_args import ExitCode
from lime_task.kube import LimeTaskApiError
from tests.unit._api_server import ServedApi


@task(retries=3, timeout_seconds=90)
def configured(app):
    """Defaults the sending process knows: they travel as options."""


@pytest.fixture(scope="module")
def served():
    api = ServedApi().start()
    yield api
    api.stop()


@pytest.fixture
def client(served, monkeypatch):
    monkeypatch.setenv("LIME_TASK_API_URL", served.url + "/")
    monkeypatch.setenv("LIME_TASK_API_TOKEN", "token-billing")
    monkeypatch.delenv("LIME_TASK_API_TOKEN_FILE", raising=False)
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")  # direct mode would fail loudly
    return served


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def later(seconds, action):
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_send_task_goes_through_the_api_with_the_callers_app(client):
    status = send_task("shop.tasks.add", "billing", 1, 2.0, rows=[-0.0])
    assert (status.status, status.result, status.app, status.namespace) == ("PENDING", None, "billing", "apps")
    spec = client.backend.objects[status.id]["spec"]
    assert (spec["args"], spec["kwargs"], spec["floatPaths"]) == ([1, 2.0], {"rows": [-0.0]}, ["/args/1", "-/kwargs/rows/0"])


def test_task_defaults_and_explicit_options_travel_as_options(client):
    status = send_task_with_options(configured, "billing", timeout_seconds=30, resources={"limits": {"cpu": "1"}})
    spec = client.backend.objects[status.id]["spec"]
    assert (spec["retries"], spec["timeoutSeconds"], spec["resources"]["limits"]) == (3, 30, {"cpu": "1"})


def test_invalid_tasks_are_refused_before_any_request(client):
    before = set(client.backend.objects)
    with pytest.raises(InvalidTaskError, match=r"args\[0\]"):
        send_task("shop.tasks.add", "billing", {1, 2})
    assert set(client.backend.objects) == before


def test_an_app_the_token_may_not_act_for_is_a_clear_api_error(client):
    with pytest.raises(LimeTaskApiError, match="403.*may not act for application 'shipping'"):
        send_task("shop.tasks.add", "shipping")


def test_get_status_and_another_apps_task_is_not_found_like_a_missing_one(client, monkeypatch):
    mine = send_task("shop.tasks.add", "billing")
    assert get_status(mine.id, "billing") == mine
    with pytest.raises(NotFoundError) as missing:
        get_status("no-such-task", "billing")
    monkeypatch.setenv("LIME_TASK_API_TOKEN", "token-shipping")
    with pytest.raises(NotFoundError) as foreign:
        get_status(mine.id, "shipping")
    assert str(foreign.value).replace(mine.id, "X") == str(missing.value).replace("no-such-task", "X").replace(
        "billing", "shipping")


@pytest.mark.parametrize("task_id", ["", "UPPER", "../x", 5, None])
def test_malformed_ids_are_simply_not_found(client, task_id):
    with pytest.raises(NotFoundError):
        get_status(task_id, "billing")


def test_wait_follows_each_change_to_success(client):
    status = send_task("shop.tasks.add", "billing")
    later(0.3, lambda: client.backend.set_status(status.id, {"state": "STARTED"}))
    later(0.6, lambda: client.backend.set_status(status.id, {"state": "SUCCESS", "result": {"n": 2},
                                                               "resultFloatPaths": ["/n"]}))
    seen = []
    status.wait(timeout=10, on_change=lambda s: seen.append(s.status))
    assert seen == ["STARTED", "SUCCESS"]
    assert status.result == {"n": 2.0} and isinstance(status.result["n"], float)


def test_wait_times_out_naming_the_task_and_its_last_state(client):
    status = send_task("shop.tasks.add", "billing")
    with pytest.raises(TimeoutError, match=f"task {status.id} \\(billing\\) did not complete within 0.5s; "
                                           "last state PENDING"):
        status.wait(timeout=0.5)


def test_wait_on_a_deleted_task_raises_not_found(client):
    status = send_task("shop.tasks.add", "billing")
    later(0.3, lambda: client.backend.remove(status.id))
    with pytest.raises(NotFoundError, match="was deleted before it completed"):
        status.wait(timeout=10)


def test_an_explicit_namespace_must_be_the_apis(client):
    before = set(client.backend.objects)
    with pytest.raises(InvalidTaskError, match="this API serves namespace 'apps', not 'other'"):
        send_task_with_options("shop.tasks.add", "billing", namespace="other")
    assert set(client.backend.objects) == before
    status = send_task_with_options("shop.tasks.add", "billing", namespace="apps")
    assert get_status(status.id, "billing", namespace="apps") == status
    with pytest.raises(InvalidTaskError, match="namespace"):
        get_status(status.id, "billing", namespace="other")
    assert run_cli("list", "-n", "other")[0] == ExitCode.USAGE
    assert run_cli("status", status.id, "--app", "billing", "-n", "apps")[0] == ExitCode.OK


def test_no_token_and_an_unreachable_api_are_clear_errors(client, monkeypatch, tmp_path):
    monkeypatch.delenv("LIME_TASK_API_TOKEN")
    monkeypatch.setattr("lime_task.http_client.DEFAULT_TOKEN_FILE", tmp_path / "absent")
    with pytest.raises(LimeTaskApiError, match="401.*no credential"):
        get_status("x", "billing")
    monkeypatch.setenv("LIME_TASK_API_TOKEN_FILE", str(tmp_path / "missing-token"))
    with pytest.raises(LimeTaskApiError, match="cannot read the API token file"):
        get_status("x", "billing")
    token_file = tmp_path / "token"
    token_file.write_text("token-billing\n")
    monkeypatch.setenv("LIME_TASK_API_TOKEN_FILE", str(token_file))
    assert send_task("shop.tasks.add", "billing").app == "billing"
    from devcluster.testing import free_loopback_port

    monkeypatch.setenv("LIME_TASK_API_URL", f"http://127.0.0.1:{free_loopback_port()}")
    with pytest.raises(LimeTaskApiError, match="cannot reach the Lime Task API"):
        get_status("x", "billing")


# -- the CLI ----------------------------------------------------------------------------


def test_cli_send_status_and_wait_through_the_api(client):
    code, out, _ = run_cli("send", "shop.tasks.add", "--app", "billing", "1", "2")
    assert code == ExitCode.OK
    task_id = out.strip()
    client.backend.set_status(task_id, {"state": "SUCCESS", "result": 3})
    code, out, _ = run_cli("status", task_id, "--app", "billing", "-o", "json")
    view = json.loads(out)
    assert (code, view["id"], view["status"], view["result"]) == (ExitCode.OK, task_id, "SUCCESS", 3)
    code, out, err = run_cli("wait", task_id, "--app", "billing")
    assert code == ExitCode.OK and "SUCCESS" in out


def test_cli_exit_codes_through_the_api(client):
    assert run_cli("status", "no-such-task", "--app", "billing")[0] == ExitCode.NOT_FOUND
    assert run_cli("send", "not-a-task", "--app", "billing")[0] == ExitCode.USAGE
    code, _, err = run_cli("send", "shop.tasks.add", "--app", "billing", "--wait", "--wait-timeout", "0.5")
    assert code == ExitCode.TIMEOUT and "did not complete" in err
    failed = send_task("shop.tasks.add", "billing")
    client.backend.set_status(failed.id, {"state": "FAILURE", "error": {"type": "ValueError", "message": "bad",
                                                                        "traceback": ""}})
    code, out, _ = run_cli("wait", failed.id, "--app", "billing")
    assert code == ExitCode.FAILED and "ValueError" in out
    assert run_cli("send", "shop.tasks.add", "--app", "shipping")[0] == ExitCode.UNAVAILABLE
    code, _, err = run_cli("logs", failed.id, "--app", "billing")
    assert code == ExitCode.UNAVAILABLE and "not served by the Lime Task HTTP API" in err


def test_cli_list_and_cancel_through_the_api(client):
    mine = send_task("shop.tasks.add", "billing")
    code, out, _ = run_cli("list", "--app", "billing", "-o", "json")
    listed = json.loads(out)
    assert code == ExitCode.OK and mine.id in [item["id"] for item in listed]
    assert {item["app"] for item in listed} == {"billing"}
    code, out, _ = run_cli("cancel", mine.id, "--app", "billing")
    assert code == ExitCode.OK and f"deleted task {mine.id}" in out
    assert mine.id not in client.backend.objects
    assert run_cli("cancel", mine.id, "--app", "billing")[0] == ExitCode.NOT_FOUND


def test_lime_task_api_says_how_to_install_it_when_missing(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    code, _, err = run_cli("api", "--help")
    assert code == ExitCode.UNAVAILABLE and "pip install 'lime-task[api]'" in err
