"""Values through the real API server, the operator and the runner (issue #10, kinds 1, 3, 4).

- lime_task.values.simulate_api_server, the model the property-based unit test uses,
  is checked here against the real API server, with fixed tricky values and with
  values hypothesis makes.
- The API server's own limits, measured: nesting depth and the task name length.
- Arguments reach a task function exactly (floats with an integral value included);
  a result reaches status.result, get_status() and the event body exactly; a result
  that cannot is refused by the runner naming its place.
- Poison objects (args nested 600 / 3,000 / 9,000 levels) do not stop `lime-task list`,
  `status` or `wait`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client

from devcluster.config import REPO_ROOT
from lime_task import get_status, send_task_with_options, values
from lime_task.constants import GROUP, PLURAL, VERSION
from lime_task.events import EventConsumer, pattern_for
from lime_task.models import LimeTaskSpec

from ._operator_helpers import Api, state
from .chart_support import run_cli
from .value_tasks import leaves

pytestmark = pytest.mark.integration

TASKS = "tests.integration.value_tasks"
APP = "values-app"

# Values at every edge the rules name; each is accepted and must arrive exactly.
TRICKY_ARGS = [
    2.0, -0.0, 1e20, 1e21, 1.5, 0.1, 5e-324, 1.7976931348623157e308, 2**63 - 1, -(2**63), 2**53 + 1,
    "a\x00b", "\U0001f600", "\ufffe", "", True, None,
    {"rows": [{"id": 1, "parent": None}, None], "": 0, "z": 1.0, "a/b~": [], "apiVersion": {}},
]
TRICKY_KWARGS = {"ratio": 3.0, "zero": 0, "nested": {"y": [[-1.0]], "x": None}}


def same(a, b):
    """Equal values of the same types all the way down, -0.0 told from 0.0."""
    return json.dumps(leaves(a)) == json.dumps(leaves(b))


@pytest.fixture
def custom(cluster):
    with cluster.api_client() as api:
        yield client.CustomObjectsApi(api)


def _object(name, args, kwargs=None, **spec):
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LimeTask",
        "metadata": {"name": name},
        "spec": {"task": "pkg.tasks.probe", "app": APP, "args": args, "kwargs": kwargs or {}, **spec},
    }


def _create_raw(cluster, namespace, text):
    """POST a LimeTask given as JSON text, exactly as written (json.dumps cannot make a
    deep one, and would escape what the test wants to send raw)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
        handle.write(text)
        handle.flush()
        return cluster.kubectl(
            "create", "--raw", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}", "-f", handle.name,
            check=False,
        )


# --------------------------------------------------------------------------------------
# The model of the API server against the real one
# --------------------------------------------------------------------------------------


def test_the_api_server_changes_values_as_the_model_says(custom, crd, namespace):
    sent = TRICKY_ARGS + [2**63, 2**64 + 1, -(2**63) - 1, {"b": 1, "a": 2, "c": {"z": 1, "y": 2}}]
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _object("model", sent))
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "model")
    expected = values.simulate_api_server(sent)
    for read in (created["spec"]["args"], stored["spec"]["args"]):
        assert same(read, expected)
        # What the rules are about, spelled out: the int64 overflow and integral floats.
        assert read[-4:-1] == [9223372036854776000, 18446744073709552000, -9223372036854776000]
        assert (type(read[0]), read[1], type(read[2])) == (int, 0, int)
        assert list(read[-1]) == ["a", "b", "c"] and list(read[-1]["c"]) == ["y", "z"]  # keys sorted


def test_a_lone_surrogate_becomes_u_fffd_on_the_api_server(cluster, crd, namespace, custom):
    text = json.dumps(_object("surrogate", ["a\ud800b"]))  # ensure_ascii: "a\\ud800b"
    assert "\\ud800" in text
    assert _create_raw(cluster, namespace, text).returncode == 0
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "surrogate")
    assert stored["spec"]["args"] == ["a\ufffdb"]
    assert values.problems(["a\ud800b"], "args")[0].place == "args[0]"


_accepted = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(min_value=values.INT64_MIN, max_value=values.INT64_MAX),
        st.floats(allow_nan=False, allow_infinity=False),
        st.floats(allow_nan=False, allow_infinity=False).map(float.__floor__).map(float),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_accepted)
def test_the_model_matches_the_real_api_server_for_generated_values(custom, crd, namespace, value):
    name = f"g-{uuid.uuid4().hex[:10]}"
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _object(name, [value]))
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)["spec"]["args"][0]
    assert same(stored, values.simulate_api_server(value))
    assert same(values.restore(stored, values.float_paths(value)), value)


def test_a_spec_made_with_kubectl_gets_its_floats_from_float_paths(cluster, crd, namespace, custom):
    manifest = _object("kubectl-floats", [2, {"avg": 3}], {"zero": 0}, floatPaths=["/args/0", "/args/1/avg", "-/kwargs/zero"])
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "kubectl-floats")
    spec = LimeTaskSpec.model_validate(stored["spec"])  # what the operator does
    assert same([spec.args, spec.kwargs], [[2.0, {"avg": 3.0}], {"zero": -0.0}])


# --------------------------------------------------------------------------------------
# The API server's limits, measured
# --------------------------------------------------------------------------------------


def test_the_api_server_nests_at_most_10000_levels(cluster, crd, namespace):
    """The object, spec and args count: args 9,998 deep is stored, 9,999 refused (Go's
    encoding/json maxNestingDepth 10,000). values.MAX_DEPTH is far below."""

    def deep(name, depth):
        return json.dumps(_object(name, [])).replace('"args": []', '"args": ' + "[" * depth + "]" * depth)

    assert _create_raw(cluster, namespace, deep("deep-9998", 9998)).returncode == 0
    refused = _create_raw(cluster, namespace, deep("deep-9999", 9999))
    assert refused.returncode != 0 and "exceeded max depth" in refused.stderr


def test_a_task_name_is_at_most_234_characters(cluster, crd, namespace):
    """core.task.<name>.failure.v1 must fit AMQP's 255-byte shortstr."""
    longest = "p." + "t" * 232
    ok = cluster.kubectl("create", "-n", namespace, "-f", "-", check=False,
                         input=json.dumps({**_object("name-234", []), "spec": {"task": longest, "app": APP}}))
    assert ok.returncode == 0, ok.stderr
    too_long = cluster.kubectl("create", "-n", namespace, "-f", "-", check=False,
                               input=json.dumps({**_object("name-235", []), "spec": {"task": longest + "x", "app": APP}}))
    assert too_long.returncode != 0 and "234" in too_long.stderr


# --------------------------------------------------------------------------------------
# Through a real task
# --------------------------------------------------------------------------------------


@pytest.fixture
def values_operator(operator, namespace, broker):
    """An operator for the namespace that can import value_tasks, publishing events to
    an exchange of this test's own."""
    exchange = f"values-{uuid.uuid4().hex[:8]}"
    extra_env = json.dumps({"PYTHONPATH": f"{REPO_ROOT / 'examples'}:{REPO_ROOT}"})
    operator(namespace, EXTRA_ENV=extra_env, BROKER_URL=broker.url, EXCHANGE=exchange)
    return exchange


def test_arguments_reach_the_task_exactly(cluster, namespace, values_operator, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    sent = send_task_with_options(f"{TASKS}.leaves_of_arguments", APP, TRICKY_ARGS, TRICKY_KWARGS, namespace=namespace)
    api = Api(cluster.api_client(), namespace)
    done = api.wait_state(sent.id, "SUCCESS", "FAILURE", timeout=120)
    assert state(done) == "SUCCESS", done["status"]
    # The task saw floats as floats (2.0, -0.0, 1e20), ints as ints, every key and null.
    assert done["status"]["result"] == leaves({"args": TRICKY_ARGS, "kwargs": TRICKY_KWARGS})


def test_a_result_reaches_status_get_status_and_the_event_exactly(cluster, namespace, broker, values_operator, monkeypatch):
    """Needs the operator to write status.resultFloatPaths (values.float_paths of the
    result) and the status as a JSON patch, so that nulls inside the result stay."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    result = [TRICKY_ARGS, TRICKY_KWARGS]
    with EventConsumer(pattern_for(successes=True), url=broker.url, exchange=values_operator) as consumer:
        sent = send_task_with_options(f"{TASKS}.echo", APP, [result], namespace=namespace)
        api = Api(cluster.api_client(), namespace)
        done = api.wait_state(sent.id, "SUCCESS", "FAILURE", timeout=120)
        assert state(done) == "SUCCESS", done["status"]
        events = []
        consumer.run(events.append, max_messages=1, timeout=60)
    assert same(values.status_result(done["status"]), result)
    assert same(get_status(sent.id, APP, namespace=namespace).result, result)
    assert [event.task_id for event in events] == [sent.id]
    assert same(events[0].result, result)


def test_a_result_outside_int64_is_refused_by_the_runner_naming_it(cluster, namespace, values_operator, monkeypatch):
    """add(2**62 + 1, 2**62) came back off by 191; now the task fails and says why."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    sent = send_task_with_options("sample_tasks.tasks.add", APP, [2**62 + 1, 2**62], namespace=namespace)
    done = Api(cluster.api_client(), namespace).wait_state(sent.id, "SUCCESS", "FAILURE", timeout=120)
    assert state(done) == "FAILURE" and done["status"]["reason"] == "InvalidResult"
    assert "result['sum']: the integer 9223372036854775809 is outside int64" in done["status"]["error"]["message"]


def test_a_result_whose_float_places_the_status_cannot_hold_is_refused_by_the_runner(
        cluster, namespace, values_operator, monkeypatch):
    """{'~' * 2050: 1.0} is 2,058 bytes of JSON, but the pointer to its float is 4,101
    characters: the API server refused the status (FAILURE/StatusRejected, the result
    lost after the work was done). Now the runner refuses it, naming the place."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    sent = send_task_with_options(f"{TASKS}.echo", APP, [{"~" * 2050: 1.0}], namespace=namespace)
    done = Api(cluster.api_client(), namespace).wait_state(sent.id, "SUCCESS", "FAILURE", timeout=120)
    assert (state(done), done["status"]["reason"]) == ("FAILURE", "InvalidResult"), done["status"]
    assert "is a JSON pointer of 4101 characters" in done["status"]["error"]["message"]
    assert "result['~~~~" in done["status"]["error"]["message"]


def test_a_value_that_reads_like_the_cut_marker_arrives_and_reads_back_exactly(
        cluster, namespace, values_operator, monkeypatch):
    """The text that marked a cut part was fixed: a task sent or returning it could not
    be read back (get_status raised 'nested deeper than 200 levels', the CLI noted a
    false 'invalid')."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    marker = "<lime-task: nested deeper than 200 levels; not decoded>"
    sent = send_task_with_options(f"{TASKS}.echo", APP, [marker], namespace=namespace)
    done = Api(cluster.api_client(), namespace).wait_state(sent.id, "SUCCESS", "FAILURE", timeout=120)
    assert state(done) == "SUCCESS", done["status"]
    assert get_status(sent.id, APP, namespace=namespace).result == marker
    shown = subprocess.run([sys.executable, "-m", "lime_task.cli", "status", sent.id, "--app", APP, "-n", namespace,
                            "-o", "json"], capture_output=True, text=True, timeout=60, env=cluster.env())
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["result"] == marker and "invalid" not in shown.stderr


# --------------------------------------------------------------------------------------
# Poison objects and the CLI
# --------------------------------------------------------------------------------------


def test_list_status_and_wait_survive_poison_objects(cluster, crd, namespace, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    canary = send_task_with_options("pkg.tasks.canary", APP, [1.0], namespace=namespace).id
    poison = {}
    for depth in (600, 3000, 9000):
        name = f"poison-{depth}"
        text = json.dumps(_object(name, [])).replace('"args": []', '"args": [' + "[" * depth + "]" * depth + "]")
        created = _create_raw(cluster, namespace, text)
        assert created.returncode == 0, created.stderr
        poison[name] = depth

    listed = run_cli(cluster, "list", "-n", namespace, "-o", "json", timeout=60)
    assert listed.returncode == 0, listed.stderr
    items = {item["id"]: item for item in json.loads(listed.stdout)}
    assert set(items) == {canary, *poison}
    assert "invalid" not in items[canary]
    for name in poison:
        assert items[name]["invalid"].startswith("spec['args'][0][0]"), items[name]
        assert "nested deeper than" in items[name]["invalid"]

    table = run_cli(cluster, "list", "-n", namespace, timeout=60)
    assert table.returncode == 0, table.stderr
    assert "NOTE" in table.stdout.splitlines()[0] and "poison-9000" in table.stdout

    shown = run_cli(cluster, "status", "poison-9000", "--app", APP, "-n", namespace, "-o", "json", timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "PENDING"
    text = run_cli(cluster, "status", "poison-3000", "--app", APP, "-n", namespace, timeout=60)
    assert text.returncode == 0 and "invalid:" in text.stdout
    assert get_status("poison-9000", APP, namespace=namespace).status == "PENDING"

    # `wait` follows a poison task through its watch until it ends.
    waiter = subprocess.Popen(
        [sys.executable, "-m", "lime_task.cli", "wait", "poison-9000", "--app", APP, "-n", namespace,
         "--timeout", "60", "-o", "json"],
        env=cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(3)
    with cluster.api_client() as api:
        # _preload_content=False: the test's own client could not decode the answer.
        client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "poison-9000",
            {"status": {"state": "FAILURE", "reason": "InvalidTask",
                        "error": {"type": "InvalidTask", "message": "args nested too deep", "traceback": ""}}},
            _preload_content=False,
        )
    out, err = waiter.communicate(timeout=90)
    assert waiter.returncode == 1, err  # FAILURE
    assert json.loads(out)["status"] == "FAILURE"
