"""`lime-task` run as a user runs it: a subprocess against the real API server and broker.

Commands that only read and write LimeTasks are tested in a namespace no operator
watches, with the status patched by the test as the operator would (so every state
change is under the test's control); those taking the `cli` fixture run twice, directly
and through the HTTP API (client mode), with the same expectations; commands that need
tasks to really run (`send --wait`, `logs`) use an operator deployed by the Helm chart.
"""

import json
import subprocess
import sys
import textwrap
import uuid

import pytest
from kubernetes import client

from devcluster.testing import free_loopback_port, merge_values
from lime_task.constants import GROUP, PLURAL, VERSION

from ._api_helpers import service_account_token, start_api
from .chart_support import (
    get_json,
    helm_install,
    helm_uninstall,
    run_cli,
    wait_for,
)

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "lime_task.cli"]


def send(cluster_or_cli, namespace, *args):
    """`lime-task send ... -n namespace` (through `cli` when given one); the new id."""
    if callable(cluster_or_cli):
        done = cluster_or_cli("send", *args, "-n", namespace)
    else:
        done = run_cli(cluster_or_cli, "send", *args, "-n", namespace)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(params=["direct", "http"])
def cli(request, cluster, crd, namespace, tmp_path):
    """`cli(*args)` runs lime-task as run_cli does: directly against the API server, or
    in client mode through an HTTP API serving the namespace (a real ServiceAccount
    token mapped to every app these tests use). `cli.env` is the extra environment."""
    env: dict = {}
    if request.param == "http":
        identity = f"system:serviceaccount:{namespace}:cli-user"
        api = start_api(cluster, namespace, {identity: ["my-app", "other-app", "nobody"]}, tmp_path, [])
        request.addfinalizer(api.stop)
        env = {"LIME_TASK_API_URL": api.url, "LIME_TASK_API_TOKEN": service_account_token(cluster, namespace, "cli-user")}

    def run(*args, **kwargs):
        return run_cli(cluster, *args, env=env, **kwargs)

    run.env = env
    return run


def patch_status(cluster, namespace, name, **status):
    client.CustomObjectsApi(cluster.api_client()).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status}
    )


# -- without an operator --------------------------------------------------------------


def test_send_prints_the_id_of_the_task_it_created(cluster, crd, namespace):
    task_id = send(
        cluster, namespace, "pkg.tasks.report", "--app", "my-app", "1001", '["name","city"]', "text",
        "--kwarg", "limit=10", "--kwarg", "label=x", "--timeout", "60", "--retries", "2",
    )
    stored = get_json(cluster, "limetask", task_id, "-n", namespace)
    assert stored["metadata"]["labels"]["limetask.dev/app"] == "my-app"
    spec = stored["spec"]
    assert (spec["task"], spec["app"], spec["args"]) == ("pkg.tasks.report", "my-app", [1001, ["name", "city"], "text"])
    assert spec["kwargs"] == {"limit": 10, "label": "x"}
    assert (spec["timeoutSeconds"], spec["retries"]) == (60, 2)


def test_send_carries_integral_floats_as_floats(cluster, crd, namespace):
    task_id = send(cluster, namespace, "pkg.tasks.avg", "--app", "my-app", "2.0", "2", "--kwarg", "zero=-0.0")
    spec = get_json(cluster, "limetask", task_id, "-n", namespace)["spec"]
    # The API server writes 2.0 back as 2; floatPaths says which numbers are floats.
    assert (spec["args"], spec["kwargs"], spec["floatPaths"]) == ([2, 2], {"zero": 0}, ["/args/0", "-/kwargs/zero"])


def test_send_json_output_is_the_task_status_shape(cluster, crd, namespace, cli):
    done = cli("send", "pkg.tasks.add", "--app", "my-app", "1", "2", "-n", namespace, "-o", "json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status == {"id": status["id"], "status": "PENDING", "result": None}


@pytest.mark.parametrize(
    "args, message",
    [
        (["not-a-dotted-path", "--app", "my-app"], "task"),
        (["pkg.tasks.add", "--app", "bad app!"], "app"),
        (["pkg.tasks.add", "--app", "my-app", "x" * 40000], "the limit is 32768"),
        # Values the API server would change (lime_task.values), named by their place.
        (["pkg.tasks.add", "--app", "my-app", "1", "18446744073709551617"],
         "args[1]: the integer 18446744073709551617 is outside int64"),
        (["pkg.tasks.add", "--app", "my-app", "[1e400]"], "args[0][0]: inf is not a JSON number"),
        (["pkg.tasks.add", "--app", "my-app", "--kwarg", 'rows=[{"id": 1, "n": -1e999}]'],
         "kwargs['rows'][0]['n']: -inf is not a JSON number"),
        (["p." + "t" * 233, "--app", "my-app"], "at most 234"),
    ],
)
def test_send_refuses_bad_tasks_with_exit_2_and_creates_nothing(cluster, crd, namespace, args, message):
    done = run_cli(cluster, "send", *args, "-n", namespace)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert get_json(cluster, "limetasks", "-n", namespace)["items"] == []


def test_status_shows_result_and_error_in_text_and_json(cluster, crd, namespace, cli):
    ok = send(cli, namespace, "pkg.tasks.add", "--app", "my-app", "1", "2")
    bad = send(cli, namespace, "pkg.tasks.add", "--app", "my-app", "1", "x")
    patch_status(cluster, namespace, ok, state="SUCCESS", result={"sum": 3}, reason="Completed")
    error = {"type": "TypeError", "message": "unsupported operand", "traceback": "Traceback...\nTypeError: unsupported operand"}
    patch_status(cluster, namespace, bad, state="FAILURE", error=error, reason="TaskRaised")

    done = cli("status", ok, "--app", "my-app", "-n", namespace, "-o", "json")
    assert done.returncode == 0 and json.loads(done.stdout) == {"id": ok, "status": "SUCCESS", "result": {"sum": 3}}
    done = cli("status", bad, "--app", "my-app", "-n", namespace, "-o", "json")
    assert done.returncode == 0  # status reports; only wait judges the outcome
    assert json.loads(done.stdout) == {"id": bad, "status": "FAILURE", "result": None, "error": error}
    text = cli("status", bad, "--app", "my-app", "-n", namespace).stdout
    assert "status: FAILURE" in text and "error:  TypeError: unsupported operand" in text


def test_another_apps_task_is_not_found_exactly_like_a_missing_one(cluster, crd, namespace, cli):
    task_id = send(cli, namespace, "pkg.tasks.add", "--app", "my-app")
    other = cli("status", task_id, "--app", "other-app", "-n", namespace)
    missing_id = str(uuid.uuid4())
    missing = cli("status", missing_id, "--app", "other-app", "-n", namespace)
    assert other.returncode == missing.returncode == 3
    assert other.stderr.replace(task_id, "ID") == missing.stderr.replace(missing_id, "ID")
    assert "no task 'ID' for app 'other-app'" in other.stderr.replace(task_id, "ID")


def test_wait_shows_each_state_change_on_stderr_then_the_result(cluster, crd, namespace, cli):
    task_id = send(cli, namespace, "pkg.tasks.add", "--app", "my-app", "1", "2")
    waiter = subprocess.Popen(
        [*CLI, "wait", task_id, "--app", "my-app", "-n", namespace, "-o", "json", "--timeout", "120"],
        env={**cluster.env(), **cli.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert waiter.stderr.readline().strip() == f"{task_id}: PENDING"
        patch_status(cluster, namespace, task_id, state="STARTED", reason="Running")
        assert waiter.stderr.readline().strip() == f"{task_id}: STARTED"
        patch_status(cluster, namespace, task_id, state="SUCCESS", reason="Completed", result={"sum": 3})
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 0, err
    assert err.strip() == f"{task_id}: SUCCESS"
    assert json.loads(out) == {"id": task_id, "status": "SUCCESS", "result": {"sum": 3}}


def test_wait_on_a_failed_task_exits_1_with_the_error(cluster, crd, namespace, cli):
    task_id = send(cli, namespace, "pkg.tasks.add", "--app", "my-app")
    error = {"type": "ValueError", "message": "boom", "traceback": ""}
    patch_status(cluster, namespace, task_id, state="FAILURE", reason="TaskRaised", error=error)
    done = cli("wait", task_id, "--app", "my-app", "-n", namespace, "-o", "json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"] == error


def test_wait_gives_up_with_exit_4(cluster, crd, namespace, cli):
    task_id = send(cli, namespace, "pkg.tasks.add", "--app", "my-app")
    done = cli("wait", task_id, "--app", "my-app", "-n", namespace, "--timeout", "1")
    assert done.returncode == 4
    assert "did not complete within" in done.stderr and "PENDING" in done.stderr


def test_list_filters_by_app_and_state(cluster, crd, namespace, cli):
    first = send(cli, namespace, "pkg.tasks.add", "--app", "my-app")
    second = send(cli, namespace, "pkg.tasks.add", "--app", "my-app")
    other = send(cli, namespace, "pkg.tasks.add", "--app", "other-app")
    patch_status(cluster, namespace, second, state="SUCCESS", reason="Completed", result=1)

    def ids(*args):
        done = cli("list", "-n", namespace, "-o", "json", *args)
        assert done.returncode == 0, done.stderr
        return {item["id"] for item in json.loads(done.stdout)}

    assert ids() == {first, second, other}
    assert ids("--app", "my-app") == {first, second}
    assert ids("--app", "my-app", "--state", "success") == {second}
    assert ids("--app", "nobody") == set()
    table = cli("list", "-n", namespace, "--app", "my-app").stdout.splitlines()
    assert table[0].split() == ["ID", "STATE", "TASK", "APP", "AGE"] and len(table) == 3


def test_cancel_deletes_only_the_apps_own_task(cluster, crd, namespace, cli):
    task_id = send(cli, namespace, "pkg.tasks.add", "--app", "my-app")
    refused = cli("cancel", task_id, "--app", "other-app", "-n", namespace)
    assert refused.returncode == 3
    assert get_json(cluster, "limetask", task_id, "-n", namespace)["metadata"]["name"] == task_id
    done = cli("cancel", task_id, "--app", "my-app", "-n", namespace)
    assert done.returncode == 0 and done.stdout.strip() == f"deleted task {task_id}"
    wait_for(
        lambda: cluster.kubectl("get", "limetask", task_id, "-n", namespace, check=False).returncode != 0,
        "the task to be deleted",
    )
    assert cli("status", task_id, "--app", "my-app", "-n", namespace).returncode == 3


def test_logs_of_a_task_without_pod_is_a_clear_not_found(cluster, crd, namespace):
    task_id = send(cluster, namespace, "pkg.tasks.add", "--app", "my-app")
    done = run_cli(cluster, "logs", task_id, "--app", "my-app", "-n", namespace)
    assert done.returncode == 3
    assert f"task {task_id} (PENDING) has no pod, so no logs: it has not started yet" in done.stderr


def test_unreachable_cluster_exits_5(cluster, tmp_path):
    kubeconfig = tmp_path / "nowhere.kubeconfig"
    kubeconfig.write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Config
        clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
        users: [{name: u, user: {token: t}}]
        contexts: [{name: c, context: {cluster: c, user: u}}]
        current-context: c
        """))
    done = run_cli(cluster, "status", "x", "--app", "a", env={"KUBECONFIG": str(kubeconfig)})
    assert done.returncode == 5
    assert "cannot reach the Kubernetes API server" in done.stderr


def test_events_without_a_broker_url_says_how_to_give_one(cluster):
    done = run_cli(cluster, "events", "--max", "1", env={"LIME_TASK_BROKER_URL": ""})
    assert done.returncode == 2 and "LIME_TASK_BROKER_URL" in done.stderr


# -- with an operator deployed by the chart --------------------------------------------



@pytest.fixture(scope="module")
def chart_operator(cluster, crd, broker):
    """A namespace watched by an operator that the chart deployed, logged in with its
    ServiceAccount's token (in-cluster config), with the example tasks and
    tests.integration.cli_tasks importable in task pods (the node's tasks image).
    Yields the namespace."""
    namespace = f"lt-cli-{uuid.uuid4().hex[:6]}"
    release = f"lt-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    try:
        helm_install(cluster, release, namespace, merge_values(cluster.operator_chart_values(), {
            "watchNamespaces": [namespace],
            "broker": {"url": broker.url},
            # The operator pod may share the host's network: a port no other release uses.
            "operator": {"healthPort": free_loopback_port()},
        }))
        cluster.kubectl("rollout", "status", f"deployment/{release}-lime-task", "-n", namespace, "--timeout=120s")
        yield namespace
    finally:
        helm_uninstall(cluster, release, namespace)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_send_wait_runs_a_task_to_success(cluster, chart_operator):
    done = run_cli(cluster, "send", "sample_tasks.tasks.add", "--app", "cli-app", "20", "22",
                   "-n", chart_operator, "--wait", "--wait-timeout", "150", timeout=180)
    assert done.returncode == 0, done.stderr
    assert "status: SUCCESS" in done.stdout and '"sum":42' in done.stdout
    progress = done.stderr.splitlines()
    assert progress[0].endswith(": PENDING") and progress[-1].endswith(": SUCCESS")


def test_send_wait_on_a_task_that_raises_exits_1_with_its_error(cluster, chart_operator):
    done = run_cli(cluster, "send", "sample_tasks.tasks.fail", "--app", "cli-app", "no luck",
                   "-n", chart_operator, "--wait", "--wait-timeout", "150", "-o", "json", timeout=180)
    assert done.returncode == 1, done.stderr
    status = json.loads(done.stdout)
    assert status["status"] == "FAILURE"
    assert (status["error"]["type"], status["error"]["message"]) == ("ValueError", "no luck")


def test_logs_show_what_the_task_printed(cluster, chart_operator):
    done = run_cli(cluster, "send", "tests.integration.cli_tasks.chatty", "--app", "cli-app", "3",
                   "-n", chart_operator, "--wait", "--wait-timeout", "150", "-o", "json", timeout=180)
    assert done.returncode == 0, done.stderr
    task_id = json.loads(done.stdout)["id"]
    logs = run_cli(cluster, "logs", task_id, "--app", "cli-app", "-n", chart_operator)
    assert logs.returncode == 0, logs.stderr
    assert "line 0 from cli-app\nline 1 from cli-app\nline 2 from cli-app\n" in logs.stdout
    other = run_cli(cluster, "logs", task_id, "--app", "other-app", "-n", chart_operator)
    assert other.returncode == 3 and "line 0" not in other.stdout
