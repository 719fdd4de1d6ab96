"""@task marking, options validation and the lookup the runner relies on."""

import sys

import pytest

from lime_task import task
from lime_task.tasks import MARKER, TaskLoadError, TaskOptions, load_task, options_of, registered


def test_bare_decorator_keeps_the_function_callable_and_marks_it():
    @task
    def double(app, x):
        return 2 * x

    assert double(None, 21) == 42
    options = options_of(double)
    assert isinstance(options, TaskOptions)
    assert options.name == f"{__name__}.test_bare_decorator_keeps_the_function_callable_and_marks_it.<locals>.double"
    assert options.defaults() == {}


def test_decorator_with_options_records_defaults_and_registers_name():
    @task(name="my_package.tasks.renamed", retries=3, timeout_seconds=60)
    def original(app):
        return "ran"

    assert original(None) == "ran"
    assert options_of(original).defaults() == {"retries": 3, "timeout_seconds": 60}
    assert registered("my_package.tasks.renamed") is original


@pytest.mark.parametrize(
    "options, message",
    [
        ({"retries": -1}, "retries"),
        ({"retries": 21}, "retries"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"ttl_seconds_after_finished": -5}, "ttl_seconds_after_finished"),
        ({"name": "not a path"}, "dotted import path"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        task(**options)(lambda app: None)


def test_a_name_too_long_for_the_event_routing_key_is_refused_at_decoration():
    longest = "pkg." + "t" * 230  # 234 characters: core.task.<name>.failure.v1 is 255 bytes
    task(name=longest)(lambda app: None)
    with pytest.raises(ValueError, match="235 characters; at most 234"):
        task(name=longest + "x")(lambda app: None)


def test_non_integer_retries_is_a_type_error():
    with pytest.raises(TypeError, match="retries"):
        task(retries="3")(lambda app: None)


def test_decorating_a_class_is_refused():
    with pytest.raises(TypeError, match="decorates functions"):
        task(type("Thing", (), {}))


def test_options_of_ignores_objects_that_fake_the_attribute():
    class Anything:
        def __getattr__(self, name):
            return True

    assert options_of(Anything()) is None
    assert options_of(len) is None


@pytest.fixture
def samples(monkeypatch):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parents[2] / "examples"))


def test_load_task_returns_the_decorated_function(samples):
    function = load_task("sample_tasks.tasks.add")
    assert getattr(function, MARKER).name == "sample_tasks.tasks.add"


@pytest.mark.parametrize(
    "path, message",
    [
        ("os.system", "not a Lime Task"),
        ("sample_tasks.tasks.not_a_task", "not a Lime Task"),
        ("sample_tasks.tasks.missing", "has no attribute 'missing'"),
        ("no_such_package.tasks.add", "No module named 'no_such_package'"),
        ("add", "not a dotted import path"),
        ("sample_tasks.tasks.add; rm -rf /", "not a dotted import path"),
    ],
)
def test_load_task_refuses_with_the_reason(samples, path, message):
    with pytest.raises(TaskLoadError, match=message):
        load_task(path)


def test_an_import_error_inside_the_module_is_reported_as_such(tmp_path, monkeypatch):
    (tmp_path / "broken_tasks.py").write_text("import module_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TaskLoadError, match="importing module 'broken_tasks' failed: ModuleNotFoundError"):
        load_task("broken_tasks.anything")
    sys.modules.pop("broken_tasks", None)
