"""The value rules (lime_task.values): what is refused, naming the place and the rule,
and that everything accepted survives the trip through the API server exactly."""

import collections
import datetime
import decimal
import enum
import json
import math
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lime_task import TaskStatus, values
from lime_task.events import routing_key
from lime_task.models import TASK_PATH_MAX, LimeTaskSpec
from lime_task.termination import InvalidResult, parse_report, success_message
from lime_task.values import ValueProblem


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


def nested(depth, leaf=None):
    """`depth` lists inside each other (built iteratively: deep values must not need
    recursion to exist)."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def same(a, b):
    """Equal values of the same types all the way down, -0.0 told from 0.0 (iterative)."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if type(x) is list:
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y))
        elif type(x) is dict:
            if set(x) != set(y):
                return False
            stack.extend((x[k], y[k]) for k in x)
        elif type(x) is float:
            if x != y or math.copysign(1, x) != math.copysign(1, y):
                return False
        elif x != y:
            return False
    return True


def through_the_api_server(value):
    """send -> JSON text -> what the API server stores and returns -> JSON text -> read."""
    sent = json.loads(json.dumps(value, allow_nan=False))
    return json.loads(json.dumps(values.simulate_api_server(sent)))


# --------------------------------------------------------------------------------------
# Refusals name the place and the rule
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, place, rule",
    [
        ((1, 2), "v", "a value of type tuple cannot travel as JSON exactly (it would arrive as a list"),
        ({"a": {1, 2}}, "v['a']", "a value of type set cannot"),
        ([b"x"], "v[0]", "a value of type bytes cannot"),
        ([decimal.Decimal("1.10")], "v[0]", "a value of type Decimal cannot"),
        ({"when": datetime.datetime(2026, 1, 1)}, "v['when']", "a value of type datetime cannot"),
        ([uuid.UUID(int=1)], "v[0]", "a value of type UUID cannot"),
        ([Colour.RED], "v[0]", "subclass of int"),
        ([Name("x")], "v[0]", "subclass of str"),
        ([collections.OrderedDict(a=1)], "v[0]", "subclass of dict"),
        ([object()], "v[0]", "a value of type object cannot"),
        ({"rows": [{"id": 2**63}]}, "v['rows'][0]['id']", "outside int64"),
        ([-(2**63) - 1], "v[0]", "outside int64"),
        ([float("nan")], "v[0]", "nan is not a JSON number"),
        ([float("-inf")], "v[0]", "-inf is not a JSON number"),
        (["ok", "a\ud800b"], "v[1]", "lone surrogate '\\ud800' at index 1"),
        ({"k\udfff": 1}, "v['k\\udfff']", "the key has a lone surrogate"),
        ({1: "one"}, "v[1]", "the key 1 is of type int; JSON keys are strings"),
        ({None: 0}, "v[None]", "the key None is of type NoneType"),
    ],
)
def test_refusals_name_the_place_and_the_rule(value, place, rule):
    with pytest.raises(ValueProblem) as caught:
        values.check(value, "v")
    assert caught.value.place == place
    assert rule in caught.value.rule
    assert str(caught.value).startswith(f"{place}: ")


@pytest.mark.parametrize(
    "value",
    [
        None, True, False, 0, 2**63 - 1, -(2**63), 1.5, 1.0, -0.0, 1e300, 5e-324, "", "a\x00b",
        "\ufffe\uffff", "\U0001f600", {"": 1}, {"apiVersion": "v1", "metadata": {"name": 1}},
        nested(values.MAX_DEPTH),
    ],
)
def test_values_that_travel_exactly_are_accepted(value):
    assert values.problems(value, "v") == []


def test_messages_stay_short_for_huge_keys_and_integers():
    with pytest.raises(ValueProblem) as caught:
        values.check({"k" * 5400: [10**5000]}, "v")  # str(10**5000) itself would raise
    assert caught.value.place == "v['" + "k" * 40 + "'...(5400 characters)][0]"
    assert "the integer <int of 16610 bits> is outside int64" in caught.value.rule
    assert len(str(caught.value)) < 300
    for key in (10**5000, (1,) * 1000):
        with pytest.raises(ValueProblem) as caught:
            values.check({key: 1}, "v")
        assert "is of type" in caught.value.rule and len(str(caught.value)) < 300
    with pytest.raises(ValueProblem) as caught:
        values.check_arguments((), {"x" * 1000: (1,)})
    assert caught.value.place.startswith("kwargs['xxxx") and len(caught.value.place) < 100


def test_depth_is_bounded_at_max_depth_levels():
    values.check(nested(values.MAX_DEPTH, 1), "v")
    with pytest.raises(ValueProblem, match=f"nested deeper than {values.MAX_DEPTH} levels"):
        values.check(nested(values.MAX_DEPTH + 1, 1), "v")


@pytest.mark.parametrize("depth", [1_000, 10_000, 200_000])
def test_any_depth_is_checked_without_recursion(depth):
    with pytest.raises(ValueProblem) as caught:
        values.check(nested(depth), "args[0]")
    # The place is shortened, not 200,000 subscripts long.
    assert caught.value.place.startswith("args[0][0][0]")
    assert "more)" in caught.value.place and len(str(caught.value)) < 300


def test_a_value_that_contains_itself_is_refused_not_looped_on():
    loop = []
    loop.append(loop)
    with pytest.raises(ValueProblem, match="contains itself"):
        values.check({"x": loop}, "v")


def test_problems_are_listed_in_document_order_up_to_the_limit():
    found = values.problems([(1,), {"a": float("nan")}, 2**64, "ok"], "result", limit=2)
    assert [p.place for p in found] == ["result[0]", "result[1]['a']"]


def test_arguments_allow_a_top_level_tuple_and_name_kwargs():
    values.check_arguments((1, [2.0]), {"x": {"y": 1}})
    with pytest.raises(ValueProblem) as caught:
        values.check_arguments((), {"x": {"y": (1,)}})
    assert caught.value.place == "kwargs['x']['y']"
    with pytest.raises(ValueProblem, match="a keyword argument name must be a str"):
        values.check_arguments((), {1: 2})
    with pytest.raises(ValueProblem, match="must be a list or tuple"):
        values.check_arguments("ab", {})


# --------------------------------------------------------------------------------------
# Integral floats: pointers beside the value
# --------------------------------------------------------------------------------------


def test_float_paths_are_json_pointers_in_document_order():
    value = {"a/b": [1.0, 1.5, 2], "t~": -0.0, "big": 1e20, "huge": 1e300}
    assert values.float_paths(value) == ["/a~1b/0", "-/t~0", "/big", "/huge"]
    assert values.float_paths(3.0) == [""]
    assert values.float_paths(-0.0) == ["-"]
    assert values.float_paths([1, "x", 0.5]) == []


def test_restore_gives_back_the_floats_without_changing_its_input():
    stored = {"a/b": [1, 1.5, 2], "t~": 0, "big": 100000000000000000000}
    restored = values.restore(stored, ["/a~1b/0", "-/t~0", "/big"])
    assert same(restored, {"a/b": [1.0, 1.5, 2], "t~": -0.0, "big": 1e20})
    assert same(stored, {"a/b": [1, 1.5, 2], "t~": 0, "big": 100000000000000000000})
    assert same(values.restore(3, [""]), 3.0)
    assert same(values.restore(0, ["-"]), -0.0)


@pytest.mark.parametrize(
    "paths, fragment",
    [
        (["args/0"], "not a JSON pointer"),
        (["/args/9"], "no index '9'"),
        (["/args/01"], "no index '01'"),
        (["/kwargs/missing"], "no key 'missing'"),
        (["/args/1"], "points at a str, not a number"),
        (["/args/2"], "points at a bool"),
        (["-/args/0"], "marks a negative zero but points at 1"),
        ([7], "it is a int, not a str"),
        (["/args/0/x"], "cannot look up 'x' in a int"),
        (["/a~2"], "'~' must be followed by 0 or 1"),
    ],
)
def test_a_bad_float_path_is_refused_naming_it(paths, fragment):
    value = {"args": [1, "x", True], "kwargs": {}}
    with pytest.raises(ValueProblem) as caught:
        values.restore(value, paths, root="floatPaths")
    assert caught.value.place == "floatPaths[0]"
    assert fragment in caught.value.rule
    # Lenient reading skips what it cannot use and keeps the rest.
    assert values.restore(value, paths + ["/args/0"], strict=False)["args"][0] == 1.0


def test_status_result_restores_and_tolerates_a_corrupt_status():
    assert same(values.status_result({"result": {"avg": 2}, "resultFloatPaths": ["/avg"]}), {"avg": 2.0})
    assert values.status_result({"result": [1], "resultFloatPaths": ["/9", None]}) == [1]
    assert values.status_result({"result": {"x": None}}) == {"x": None}
    assert values.status_result(None) is None


# --------------------------------------------------------------------------------------
# The model of the API server
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number, text",
    [
        # Each pair as the real kube-apiserver v1.34 wrote it back (see the module doc).
        (1.0, "1"), (-0.0, "-0"), (1e20, "100000000000000000000"), (1e21, "1e+21"), (1.5, "1.5"),
        (1e-7, "1e-7"), (1e-6, "0.000001"), (5e-324, "5e-324"), (0.1, "0.1"),
        (1.2345678901234568e29, "1.2345678901234568e+29"), (2.0**64, "18446744073709552000"),
        (-2.5e-10, "-2.5e-10"), (1.7976931348623157e308, "1.7976931348623157e+308"), (123.0e-3, "0.123"),
    ],
)
def test_go_float_text(number, text):
    assert values.go_float_text(number) == text
    assert float(json.loads(text)) == number


def test_simulated_api_server_changes_what_the_real_one_changes():
    sent = {"z": 1.0, "a": [2**64 + 1, -0.0, 1e20, 1.5, 2**63 - 1, 1e21]}
    back = through_the_api_server(sent)
    assert list(back) == ["a", "z"]  # keys sorted
    assert same(back, {"a": [18446744073709552000, 0, 100000000000000000000, 1.5, 2**63 - 1, 1e21], "z": 1})


# --------------------------------------------------------------------------------------
# The property: refused with a place, or exact after the trip
# --------------------------------------------------------------------------------------

_keys = st.one_of(st.text(max_size=6), st.integers(-3, 3), st.none())
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.floats(allow_nan=False, allow_infinity=False).map(float.__floor__).map(float),  # integral
    st.sampled_from([0.0, -0.0, 1e20, 1e21, 2.0**63, 2.0**64, -1.0]),
    st.text(),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),  # lone surrogates
    st.binary(max_size=3),
    st.decimals(allow_nan=False, places=2),
)
json_ish = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner),
        st.dictionaries(_keys, inner, max_size=4),
        st.frozensets(st.integers(), max_size=2),
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(json_ish)
def test_every_value_is_refused_with_a_place_or_arrives_exactly(value):
    found = values.problems(value, "result")
    if found:
        assert all(p.place.startswith("result") and p.rule for p in found)
        with pytest.raises(ValueProblem):
            values.check(value, "result")
        return
    paths = values.float_paths(value)
    back = values.restore(through_the_api_server(value), paths)
    assert same(back, value)
    # The pointers themselves survive the trip too (they are plain strings).
    assert through_the_api_server(paths) == paths


@settings(max_examples=200, deadline=None)
@given(st.lists(json_ish, max_size=3), st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True), json_ish, max_size=3))
def test_a_spec_the_sender_accepts_reaches_the_operator_exactly(args, kwargs):
    try:
        spec = LimeTaskSpec(task="pkg.tasks.t", app="a", args=args, kwargs=kwargs)
    except ValueError as error:  # pydantic's ValidationError names the place
        assert "args[" in str(error) or "kwargs[" in str(error)
        return
    stored = through_the_api_server(spec.to_wire())
    read = LimeTaskSpec.model_validate(stored)  # what the operator does
    assert same(read.args, args) and same(read.kwargs, kwargs)
    assert read.float_paths == spec.float_paths


def test_a_stored_integral_float_beyond_int64_is_restored_before_the_int64_rule():
    # 1e20 is stored as the integer 100000000000000000000: fine where floatPaths lists it.
    stored = {"task": "a.b", "app": "x", "args": [100000000000000000000], "floatPaths": ["/args/0"]}
    assert same(LimeTaskSpec.model_validate(stored).args, [1e20])
    with pytest.raises(ValueError, match=r"args\[0\]: the integer 100000000000000000000 is outside int64"):
        LimeTaskSpec.model_validate({**stored, "floatPaths": None})


@pytest.mark.parametrize(
    "spec, problem",
    [
        ({"args": [1, 2.5], "kwargs": {"x": None}}, None),
        ({"args": [100000000000000000000], "floatPaths": ["/args/0"]}, None),
        ({"args": [100000000000000000000]}, "spec.args[0]: the integer 100000000000000000000 is outside int64"),
        ({"args": [nested(9_000)]}, "spec.args[0][0][0]"),
        ({"kwargs": {"k": {"": [nested(101)]}}}, "spec.kwargs['k']['']"),
        ({"args": [1], "floatPaths": ["/args/3"]}, "spec.floatPaths[0]: '/args/3' is not the place of a float"),
        ({"args": "x"}, "spec.args: must be a list or tuple"),
        ("nope", "spec: not an object"),
    ],
)
def test_spec_problem_names_the_place_in_a_stored_spec(spec, problem):
    found = values.spec_problem(spec)
    assert found == problem if problem is None else found.startswith(problem)


@settings(max_examples=300, deadline=None)
@given(json_ish)
def test_a_result_is_refused_by_the_runner_or_reaches_get_status_exactly(result):
    """runner -> termination message -> the operator's parse -> status (through the
    API server) -> get_status / the CLI / the event body."""
    try:
        message = success_message(result, limit=10**9)  # size has its own tests
    except InvalidResult as refused:
        assert "the task's result cannot be reported exactly: result" in str(refused)
        return
    report = parse_report(message)
    status = through_the_api_server({"state": "SUCCESS", **values.result_fields(report.result)})
    assert same(values.status_result(status), result)
    assert same(TaskStatus.from_object({"metadata": {"name": "t"}, "status": status}).result, result)


@pytest.mark.parametrize(
    "message, fragment",
    [
        ('{"ok":true,"result":' + "[" * 2040 + "]" * 2040 + "}", "result[0][0][0]"),  # 4096 bytes
        ('{"ok":true,"result":{"n":1e400}}', "result['n']: inf is not a JSON number"),
        ('{"ok":true,"result":[18446744073709551617]}', "result[0]: the integer 18446744073709551617 is outside int64"),
    ],
)
def test_a_report_the_runner_would_not_write_is_an_invalid_result_not_a_crash(message, fragment):
    report = parse_report(message)
    assert not report.ok and report.error["type"] == "InvalidResult"
    assert fragment in report.error["message"]


def test_result_fields_list_float_paths_only_when_there_are_any():
    assert values.result_fields({"n": 1}) == {"result": {"n": 1}}
    assert values.result_fields([2.0, -0.0]) == {"result": [2.0, -0.0], "resultFloatPaths": ["/0", "-/1"]}


def test_a_kubectl_spec_with_a_bad_float_path_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"floatPaths\[1\]: '/args/5' is not the place of a float"):
        LimeTaskSpec.model_validate({"task": "a.b", "app": "x", "args": [1], "floatPaths": ["/args/0", "/args/5"]})


def test_the_operators_refusal_reads_as_place_and_rule():
    from pydantic import ValidationError

    from lime_task.models import describe_errors

    with pytest.raises(ValidationError) as caught:
        LimeTaskSpec.model_validate({"task": "a.b", "app": "x", "args": [100000000000000000000]})
    assert describe_errors(caught.value, "spec") == (
        "spec: args[0]: the integer 100000000000000000000 is outside int64 (-9223372036854775808 .. "
        "9223372036854775807); the API server would store it as an inexact float. Send it as a str"
    )


def test_a_kubectl_spec_nested_too_deep_is_refused_without_recursion():
    with pytest.raises(ValueError, match=r"args\[0\]\[0\].*nested deeper than 100 levels"):
        LimeTaskSpec.model_validate({"task": "a.b", "app": "x", "args": [nested(9_000)]})


# --------------------------------------------------------------------------------------
# Reading responses that hold a poison object
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [600, 3_000, 9_000, 100_000])
def test_decode_bounded_cuts_what_json_cannot_decode_and_keeps_the_rest(depth):
    text = '{"items": [{"a": "[{\\"]", "spec": {"args": [' + "[" * depth + "1" + "]" * depth + ']}}, {"b": [[2]]}]}'
    if depth >= 1_000:  # Python's own decoder gives up here (the kind-4 crash)
        with pytest.raises(RecursionError):
            json.loads(text)
    value, cut = values.decode_bounded(text, max_depth=50)
    assert cut
    assert value["items"][0]["a"] == '[{"]' and value["items"][1] == {"b": [[2]]}
    assert values.cut_place(value["items"][0]).startswith("spec['args'][0][0][0]")
    assert values.cut_place(value["items"][1]) is None


@pytest.mark.parametrize("text", ['[1, {"a": "]]}{"}]', '"x"', "3", '{"k": [[[]]], "s": "\\"[" }', "[]"])
def test_decode_bounded_is_json_loads_for_shallow_text(text):
    assert values.decode_bounded(text) == (json.loads(text), False)
    assert values.decode_bounded(text.encode()) == (json.loads(text), False)


def test_decode_bounded_keeps_exactly_max_depth_levels():
    assert values.decode_bounded(json.dumps(nested(5)), max_depth=5) == (nested(5), False)
    value, cut = values.decode_bounded(json.dumps(nested(6)), max_depth=5)
    assert cut and value == nested(5, values.TOO_DEEP)


def test_decode_bounded_refuses_text_that_is_not_json():
    with pytest.raises(json.JSONDecodeError):
        values.decode_bounded("[1, ")


# --------------------------------------------------------------------------------------
# The task name bound (AMQP shortstr)
# --------------------------------------------------------------------------------------


def test_the_longest_task_name_makes_a_255_byte_routing_key():
    name = "p." + "t" * (TASK_PATH_MAX - 2)
    assert len(routing_key(name, "FAILURE").encode()) == 255
    assert len(routing_key(name, "SUCCESS").encode()) == 255


def test_a_value_equal_to_the_old_fixed_cut_marker_is_an_ordinary_string():
    """The marker was a fixed text that a task could send or return: every read of that
    task then said it was cut (the HTTP API answered 503). It is random per process now."""
    old_marker = "<lime-task: nested deeper than 200 levels; not decoded>"
    obj = {"status": {"result": old_marker}, "spec": {"args": [old_marker, values.TOO_DEEP[:-1]]}}
    value, cut = values.decode_bounded(json.dumps(obj))
    assert (value, cut) == (obj, False)
    assert values.cut_place(value) is None
    assert old_marker != values.TOO_DEEP and len(values.TOO_DEEP) > len(old_marker) + 32
