"""Pure logic of the public API: what send_task refuses and builds, how statuses read."""

import pytest

from lime_task import InvalidTaskError, TaskStatus, task
from lime_task.config import choose_namespace
from lime_task.constants import API_VERSION, KIND, LABEL_APP, MAX_ARGUMENTS_BYTES
from lime_task.sending import app_name_of, build_spec, build_task_object, new_task_id, task_name_and_options


class App:
    name = "my-app"


@pytest.mark.parametrize(
    "explicit, env, context, service_account, expected",
    [
        ("explicit", "env", "ctx", "sa", "explicit"),
        (None, "env", "ctx", "sa", "env"),
        (None, "", "ctx", "sa", "ctx"),
        (None, None, None, "sa", "sa"),
        (None, None, None, None, "default"),
        ("  ", None, None, None, "default"),
    ],
)
def test_namespace_precedence(explicit, env, context, service_account, expected):
    assert choose_namespace(explicit, env, context, service_account) == expected


def test_app_name_from_object_or_string():
    assert app_name_of(App()) == "my-app"
    assert app_name_of("other") == "other"


@pytest.mark.parametrize("app", [object(), None, 42, ""])
def test_app_without_a_name_is_refused(app):
    with pytest.raises(InvalidTaskError, match="app"):
        app_name_of(app)


def test_build_spec_defaults():
    spec = build_spec("pkg.tasks.add", "my-app", (1, 2), {"props": ["a"]})
    assert spec.to_wire() == {
        "task": "pkg.tasks.add",
        "app": "my-app",
        "args": [1, 2],
        "kwargs": {"props": ["a"]},
        "retries": 0,
    }


def test_a_top_level_args_tuple_is_fine_but_a_nested_tuple_is_refused():
    # send_task(*args) makes the top-level tuple; inside, a tuple would arrive as a list.
    assert build_spec("pkg.tasks.add", "a", (1, [2])).args == [1, [2]]
    with pytest.raises(InvalidTaskError, match=r"args\[0\]: a value of type tuple cannot travel as JSON exactly"):
        build_spec("pkg.tasks.add", "a", [(1, 2)])


def test_integral_floats_travel_with_their_places():
    spec = build_spec("pkg.tasks.avg", "a", [2.0, 1.5, -0.0], {"scale": {"x": 1e20}})
    assert spec.to_wire()["floatPaths"] == ["/args/0", "-/args/2", "/kwargs/scale/x"]
    assert "floatPaths" not in build_spec("pkg.tasks.avg", "a", [1, 1.5]).to_wire()


def test_the_senders_objects_are_copied():
    rows = [{"id": 1}]
    spec = build_spec("pkg.tasks.add", "a", [rows])
    rows[0]["id"] = 2
    assert spec.args == [[{"id": 1}]]


def test_a_task_name_too_long_for_the_routing_key_is_refused():
    name = "pkg." + "t" * 230  # 234 characters: the longest that fits
    assert build_spec(name, "a").task == name
    with pytest.raises(InvalidTaskError, match="at most 234"):
        build_spec(name + "x", "a")


@pytest.mark.parametrize(
    "args, kwargs, fragment",
    [
        ([1, {1, 2}], {}, "task 'pkg.tasks.add' cannot be sent: args[1]: a value of type set cannot travel as JSON exactly"),
        ([], {"when": object()}, "kwargs['when']: a value of type object cannot travel as JSON exactly"),
        ([float("nan")], {}, "args[0]: nan is not a JSON number"),
        ([{"rows": [{"id": 2**64 + 1}]}], {}, "args[0]['rows'][0]['id']: the integer 18446744073709551617 is outside int64"),
        ([], {"not-an-identifier": 1}, "is not a Python identifier"),
        ("abc", {}, "args of task 'pkg.tasks.add' must be a list or tuple"),
        (list(range(257)), {}, "args"),
    ],
)
def test_bad_arguments_are_refused_naming_them(args, kwargs, fragment):
    with pytest.raises(InvalidTaskError, match=None) as caught:
        build_spec("pkg.tasks.add", "a", args, kwargs)
    assert fragment in str(caught.value)


def test_arguments_over_the_size_limit_are_refused_with_the_size():
    with pytest.raises(InvalidTaskError) as caught:
        build_spec("pkg.tasks.add", "a", ["x" * MAX_ARGUMENTS_BYTES])
    assert f"the limit is {MAX_ARGUMENTS_BYTES}" in str(caught.value)
    # [["x..."],{}] adds 9 bytes of JSON around the string.
    assert f"{MAX_ARGUMENTS_BYTES + 9} bytes" in str(caught.value)


def test_float_paths_over_the_size_limit_are_refused():
    # A few KiB of arguments whose float pointers repeat a long path: megabytes of them.
    deep = floats = [1.0] * 2000
    for _ in range(40):
        deep = {"k" * 200: deep}
    with pytest.raises(InvalidTaskError, match=r"\(floatPaths\) are \d+ bytes as JSON; the limit is 32768"):
        build_spec("pkg.tasks.add", "a", [deep])
    assert build_spec("pkg.tasks.add", "a", [floats]).float_paths[-1] == "/args/0/1999"


def test_arguments_exactly_at_the_size_limit_are_accepted():
    spec = build_spec("pkg.tasks.add", "a", ["x" * (MAX_ARGUMENTS_BYTES - 9)])
    assert spec.arguments_size() == MAX_ARGUMENTS_BYTES


@pytest.mark.parametrize(
    "task_name, app, options, fragment",
    [
        ("notdotted", "a", {}, "task:"),
        ("pkg.tasks.add", "Bad App", {}, "app:"),
        ("pkg.tasks.add", "a", {"retries": -1}, "retries:"),
        ("pkg.tasks.add", "a", {"timeout_seconds": 0}, "timeout_seconds:"),
        ("pkg.tasks.add", "a", {"resources": {"limits": {"cpu": [1]}}}, "resources.limits.cpu"),
    ],
)
def test_invalid_spec_names_the_field(task_name, app, options, fragment):
    with pytest.raises(InvalidTaskError) as caught:
        build_spec(task_name, app, **options)
    assert fragment in str(caught.value)


def test_explicit_options_override_task_defaults():
    @task(name="pkg.tasks.defaults_demo", retries=2, timeout_seconds=30)
    def defaults_demo(app):
        pass

    name, defaults = task_name_and_options("pkg.tasks.defaults_demo")
    assert name == "pkg.tasks.defaults_demo"
    spec = build_spec(name, "a", defaults=defaults, retries=5, image="registry.local/tasks:1")
    assert (spec.retries, spec.timeout_seconds, spec.image) == (5, 30, "registry.local/tasks:1")


def test_unregistered_name_has_no_defaults():
    assert task_name_and_options("somewhere.else.task") == ("somewhere.else.task", None)


def test_a_plain_function_is_not_a_task_to_send():
    with pytest.raises(InvalidTaskError, match="not decorated with @task"):
        task_name_and_options(len)


def test_a_locally_defined_task_cannot_be_sent():
    @task
    def local(app):
        pass

    with pytest.raises(InvalidTaskError, match="defined inside a function"):
        task_name_and_options(local)


def test_task_object_carries_the_app_label_and_id():
    spec = build_spec("pkg.tasks.add", "my-app", [1])
    task_id = new_task_id()
    obj = build_task_object(spec, task_id, "ns1")
    assert obj["apiVersion"] == API_VERSION and obj["kind"] == KIND
    assert obj["metadata"] == {"name": task_id, "namespace": "ns1", "labels": {LABEL_APP: "my-app"}}
    assert obj["spec"]["args"] == [1]


def test_task_ids_are_unique_uuid4_strings():
    first, second = new_task_id(), new_task_id()
    assert first != second and len(first) == 36 and first[14] == "4"


def _obj(status=None):
    obj = {"metadata": {"name": "t1", "namespace": "ns"}, "spec": {"app": "a", "task": "p.t"}}
    if status is not None:
        obj["status"] = status
    return obj


def test_a_new_task_without_status_reads_as_pending():
    status = TaskStatus.from_object(_obj())
    assert (status.status, status.result, status.error) == ("PENDING", None, None)
    assert not status.is_completed()
    assert (status.app, status.namespace) == ("a", "ns")


def test_success_reads_the_result_and_serialises_to_three_keys():
    status = TaskStatus.from_object(_obj({"state": "SUCCESS", "result": {"n": 1}, "reason": "Completed"}))
    assert status.is_completed()
    assert status.to_dict() == {"id": "t1", "status": "SUCCESS", "result": {"n": 1}}


def test_failure_reads_the_error_and_no_result():
    error = {"type": "ValueError", "message": "boom", "traceback": "..."}
    status = TaskStatus.from_object(_obj({"state": "FAILURE", "error": error}))
    assert status.is_completed()
    assert (status.error, status.result) == (error, None)
    assert status.to_dict() == {"id": "t1", "status": "FAILURE", "result": None}


def test_started_is_not_completed():
    assert not TaskStatus.from_object(_obj({"state": "STARTED"})).is_completed()


def test_wait_on_a_completed_status_returns_at_once_without_the_api():
    status = TaskStatus("t1", "SUCCESS", 3)
    assert status.wait(timeout=0) is status


def test_wait_without_an_app_is_a_clear_error():
    with pytest.raises(ValueError, match="does not know its app"):
        TaskStatus("t1").wait(timeout=1)


def _waiting_on(monkeypatch, events):
    """TaskStatus.wait in direct mode against a watch that yields `events`."""
    from lime_task import api, http_client, kube

    pending = {**_obj({"state": "PENDING"}), "metadata": {"name": "t1", "namespace": "ns", "resourceVersion": "1"}}
    monkeypatch.setattr(http_client, "api_url", lambda: None)
    monkeypatch.setattr(kube, "connect", lambda: object())
    monkeypatch.setattr(api, "_read_own", lambda *a: pending)
    monkeypatch.setattr(kube, "watch_task", lambda *a: iter(events))
    status = TaskStatus("t1", "PENDING", app="a", namespace="ns")
    return status.wait(timeout=5)


def test_a_task_deleted_as_soon_as_it_finished_ends_the_wait_with_its_outcome(monkeypatch):
    """ttlSecondsAfterFinished 0: the DELETED event may be the first to show the end; it
    carries the last state (found: 'was deleted before it completed; last state PENDING'
    for a task that had succeeded)."""
    final = _obj({"state": "SUCCESS", "result": {"sum": 3}})
    status = _waiting_on(monkeypatch, [("DELETED", final)])
    assert (status.status, status.result) == ("SUCCESS", {"sum": 3})


def test_a_task_deleted_unfinished_or_of_another_app_is_not_found(monkeypatch):
    from lime_task.errors import NotFoundError

    with pytest.raises(NotFoundError, match="deleted before it completed; last state PENDING"):
        _waiting_on(monkeypatch, [("DELETED", _obj({"state": "STARTED"}))])
    other = {**_obj({"state": "SUCCESS", "result": 1}), "spec": {"app": "other", "task": "p.t"}}
    with pytest.raises(NotFoundError):
        _waiting_on(monkeypatch, [("DELETED", other)])
