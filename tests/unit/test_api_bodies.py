"""lime_task_api.bodies: decoding and checking request bodies (pure), and the OpenAPI
document checked into docs/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from lime_task.errors import InvalidTaskError
from lime_task.sending import build_spec
from lime_task_api import bodies
from lime_task_api.openapi import document, dumps

REPO = Path(__file__).resolve().parents[2]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def test_the_openapi_document_in_docs_is_the_one_the_app_serves():
    assert (REPO / "docs" / "openapi.json").read_text(encoding="utf-8") == dumps(), (
        "regenerate it: python -m lime_task_api openapi > docs/openapi.json"
    )


def test_the_openapi_document_names_every_option_and_route():
    doc = document()
    assert set(doc["components"]["schemas"]["Options"]["properties"]) == set(bodies.OPTION_NAMES)
    assert set(doc["components"]["schemas"]["NewTask"]["properties"]) == set(bodies.REQUEST_MEMBERS)
    assert {"/v1/tasks", "/v1/tasks/{id}", "/v1/tasks/{id}/events"} <= set(doc["paths"])


def test_a_body_is_decoded_exactly():
    value = bodies.decode_json(b'{"task": "a.b", "args": [1.0, -0.0, 9223372036854775807, "\\u0000"]}')
    assert value["args"] == [1.0, -0.0, 2**63 - 1, "\x00"]
    assert [type(item) for item in value["args"]] == [float, float, int, str]


@settings(max_examples=200)
@given(json_values)
def test_any_json_body_is_a_new_task_or_a_422_never_another_error(value):
    raw = json.dumps(value).encode()
    try:
        decoded = bodies.decode_json(raw)
    except bodies.RequestProblem as problem:  # NaN, Infinity
        assert problem.status == 400
        return
    try:
        new = bodies.parse_new_task(decoded)
        bodies.build(new, "billing")
    except bodies.RequestProblem as problem:
        assert problem.status == 422 and problem.message


@settings(max_examples=200)
@given(st.lists(json_values, max_size=4), st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True),
                                                        json_values, max_size=3))
def test_the_api_accepts_exactly_what_send_task_accepts(args, kwargs):
    """One implementation: the same arguments are refused by build_spec (send_task) and
    by the API, with the same message; accepted ones give the same spec."""
    try:
        direct = build_spec("a.b", "billing", args, kwargs)
    except InvalidTaskError as error:
        direct = error
    body = json.dumps({"task": "a.b", "args": args, "kwargs": kwargs}).encode()
    try:
        via_api = bodies.build(bodies.parse_new_task(bodies.decode_json(body)), "billing")
    except bodies.RequestProblem as problem:
        assert problem.status in (400, 422)
        if problem.status == 422:
            assert isinstance(direct, InvalidTaskError) and problem.message == str(direct)
        return
    assert not isinstance(direct, Exception)
    assert via_api.to_wire() == direct.to_wire()


def test_a_value_problem_names_its_place_as_the_field():
    body = {"task": "a.b", "args": [1, {"rows": [2**70]}]}
    with pytest.raises(bodies.RequestProblem) as caught:
        bodies.build(bodies.parse_new_task(body), "billing")
    assert caught.value.field == "args[1]['rows'][0]"


def test_app_from_the_credential_wins_and_is_checked_by_the_same_rules():
    new = bodies.parse_new_task({"task": "a.b"})
    assert bodies.build(new, "billing").app == "billing"
    with pytest.raises(bodies.RequestProblem) as caught:
        bodies.build(new, "not valid")
    assert caught.value.field == "app"


@pytest.mark.parametrize("raw, expected", [(None, None), ("0", 0.0), ("2.5", 2.5), ("86400", 86400.0)])
def test_wait_parses_seconds(raw, expected):
    assert bodies.parse_wait(raw) == expected


@pytest.mark.parametrize("raw", ["-1", "86401", "inf", "nan", "", "1e999", "ten"])
def test_bad_waits_are_refused(raw):
    with pytest.raises(bodies.RequestProblem) as caught:
        bodies.parse_wait(raw)
    assert caught.value.field == "wait"
