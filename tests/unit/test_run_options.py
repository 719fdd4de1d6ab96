"""One definition of the run options (lime_task.run_options): every way of sending a task
derives its keywords, body members and flags from it, and none lists them by hand."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import yaml

from lime_task import api, cli, cli_args, run_options, schedules, sending, tasks
from lime_task.models import LimeTaskSpec
from lime_task_api import bodies, openapi

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = run_options.OPTIONS


def keyword_options(function) -> tuple[str, ...]:
    """The keyword-only parameters of `function`'s signature that are run options."""
    parameters = inspect.signature(function).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name in run_options.NAMES)


@pytest.mark.parametrize("function", [api.send_task_with_options, sending.build_spec, schedules.build_schedule])
def test_the_sending_functions_show_every_option_in_their_signature(function):
    assert keyword_options(function) == run_options.NAMES


def test_task_shows_the_options_it_takes_as_defaults():
    assert keyword_options(tasks.task) == tuple(option.name for option in run_options.TASK_DEFAULTS)
    assert {"retries", "timeout_seconds", "ttl_seconds_after_finished"} == set(keyword_options(tasks.task))


def test_every_option_is_a_spec_field_with_the_crd_bounds():
    crd = yaml.safe_load((ROOT / "crds" / "limetask.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    for option in OPTIONS:
        field = LimeTaskSpec.model_fields[option.name]
        assert field.alias == option.wire
        bounds = {type(item).__name__: getattr(item, type(item).__name__.lower(), None) for item in field.metadata}
        assert (bounds.get("Ge"), bounds.get("Le")) == ((option.low, option.high) if option.kind is int else (None, None))
        schema = spec[option.wire]
        assert schema["type"] == {int: "integer", str: "string", dict: "object"}[option.kind]
        assert (schema.get("minimum"), schema.get("maximum")) == (option.low, option.high)
        if option.members:
            assert tuple(schema["properties"]) == option.members


def test_the_http_api_takes_the_options_by_their_spec_names():
    assert bodies.OPTION_NAMES == {option.wire: option.name for option in OPTIONS}
    document = openapi.document()
    assert list(document["components"]["schemas"]["Options"]["properties"]) == [option.wire for option in OPTIONS]
    body = {"task": "a.b", "options": {"timeoutSeconds": 60, "retries": 2, "image": "img:1",
                                       "resources": {"limits": {"cpu": "1"}}, "ttlSecondsAfterFinished": 0}}
    assert bodies.parse_new_task(body).options == {"timeout_seconds": 60, "retries": 2, "image": "img:1",
                                                    "resources": {"limits": {"cpu": "1"}},
                                                    "ttl_seconds_after_finished": 0}


def test_the_cli_flags_map_to_the_options():
    parsed = cli.parse(["send", "p.t", "--app", "a", "--timeout", "60", "--retries", "2", "--image", "img:1",
                        "--ttl", "0"])
    assert cli_args.run_options_of(parsed) == {"timeout_seconds": 60, "retries": 2, "image": "img:1",
                                               "ttl_seconds_after_finished": 0}
    created = cli.parse(["schedule", "create", "s", "--cron", "@daily", "--task", "p.t", "--app", "a", "--ttl", "5"])
    assert cli_args.run_options_of(created)["ttl_seconds_after_finished"] == 5


@pytest.mark.parametrize("call", [
    lambda: api.send_task_with_options("p.t", "a", timeout=5),
    lambda: sending.build_spec("p.t", "a", ttl=5),
    lambda: schedules.build_schedule("n", "@daily", "p.t", "a", time_out=5),
    lambda: tasks.task(image="img:1"),  # image is not a @task default
])
def test_an_unknown_option_is_refused_naming_it_and_the_options(call):
    with pytest.raises(TypeError, match=r"unexpected keyword argument '\w+'; the run options are "):
        call()


# Code that sends tasks or parses sending requests: it must take the options from
# lime_task.run_options. The distinctive names of the options are enough to find a list
# written by hand (a new list would name them all).
PLACES = [
    "runner/lime_task/api.py", "runner/lime_task/sending.py", "runner/lime_task/tasks.py",
    "runner/lime_task/http_client.py", "runner/lime_task/schedules.py", "runner/lime_task/cli.py",
    "runner/lime_task/cli_args.py", "runner/lime_task/cli_schedule.py",
    "api/lime_task_api/bodies.py", "api/lime_task_api/openapi.py", "api/lime_task_api/service.py",
]


@pytest.mark.parametrize("path", PLACES)
def test_no_place_lists_the_options_by_hand(path):
    names = [name for option in OPTIONS for name in (option.name, option.wire) if "_" in name or name != name.lower()]
    text = (ROOT / path).read_text()
    listed = [name for name in names if re.search(rf"\b{name}\b", text)]
    assert not listed, f"{path} names run options {listed}: derive them from lime_task.run_options"
