"""The termination-message contract: what the runner writes, the operator reads back.

Round trips through lime_task.termination's writer and parser, for any text, within
kubelet's 4096-byte limit; and the exit codes are the ones the Job and the verdict use.
"""

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lime_task.constants import TERMINATION_MESSAGE_LIMIT
from lime_task.termination import (
    NON_RETRIABLE_EXIT_CODES,
    ExitCode,
    InvalidResult,
    Report,
    failure_message,
    parse_report,
    success_message,
)
from lime_task_operator import jobs

# Any text, lone surrogates included (they come from bytes decoded with surrogateescape).
TEXT = st.text(alphabet=st.characters(codec=None), max_size=6000)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT, TEXT)
def test_any_failure_round_trips_within_the_limit(error_type, message, traceback):
    text = failure_message(error_type, message, traceback)
    assert len(text.encode("utf-8")) <= TERMINATION_MESSAGE_LIMIT
    report = parse_report(text)
    assert report is not None and report.ok is False
    assert set(report.error) == {"type", "message", "traceback"}
    clean = message.encode("utf-8", "replace").decode("utf-8")
    if len(json.dumps(clean, ensure_ascii=False).encode()) + len(json.dumps(error_type).encode()) < 3000:
        # Short enough to fit whole: the message arrives exactly (after "?" for
        # lone surrogates); the traceback may have been cut from the front.
        assert report.error["message"] == clean
        assert clean_tail(traceback).endswith(report.error["traceback"].removeprefix("...\n"))


def clean_tail(text):
    return text.encode("utf-8", "replace").decode("utf-8")


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_small_results_round_trip_exactly(value):
    text = success_message(value)
    assert parse_report(text) == Report(ok=True, result=value)


def test_garbage_is_no_report():
    for text in (None, "", "{", "[1]", '{"result": 1}', '{"ok": "yes"}', "Traceback (most recent call last):"):
        assert parse_report(text) is None


def test_failure_report_with_odd_fields_keeps_strings_only():
    report = parse_report('{"ok": false, "error": {"type": 3, "message": "m"}}')
    assert report == Report(ok=False, error={"type": "", "message": "m", "traceback": ""})
    assert parse_report('{"ok": false, "error": "x"}') == Report(ok=False, error={"type": "", "message": "", "traceback": ""})


def test_exit_codes_are_defined_once_and_used_by_the_job():
    assert [int(code) for code in ExitCode] == [0, 1, 3, 4]
    assert set(NON_RETRIABLE_EXIT_CODES) == {ExitCode.COULD_NOT_LOAD, ExitCode.INVALID_RESULT}
    [rule] = jobs.pod_failure_policy()["rules"]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"]["values"] == [3, 4]
    # Plain ints: the Job is sent as JSON.
    assert all(type(value) is int for value in rule["onExitCodes"]["values"])


@pytest.mark.parametrize("result, fragment", [
    # 2,058 bytes of JSON, but its pointer '/~0~0…' is 4,101 characters (found by a helper).
    ({"~" * 2050: 1.0}, "is a JSON pointer of 4101 characters"),
    ({"/" * 2050: [1.0]}, "is a JSON pointer of 4103 characters"),
    # Each pointer fits, together they do not: 600 floats under a 90-character key.
    ({"k" * 90: [1.0] * 600}, "resultFloatPaths) are"),
])
def test_a_result_whose_float_places_the_status_cannot_hold_is_invalid_naming_why(result, fragment):
    assert len(json.dumps(result)) <= TERMINATION_MESSAGE_LIMIT
    with pytest.raises(InvalidResult, match=re.escape(fragment)) as raised:
        success_message(result)
    assert "result[" in str(raised.value) or "resultFloatPaths" in str(raised.value)


def test_a_result_whose_float_places_fit_is_reported():
    result = {"~" * 1000: 1.0, "rows": [2.0] * 100}
    assert json.loads(success_message(result)) == {"ok": True, "result": result}
