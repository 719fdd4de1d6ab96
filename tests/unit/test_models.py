"""The shared pydantic models: what they accept, refuse and put on the wire."""

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from lime_task.constants import MAX_ARGUMENTS_BYTES
from lime_task.models import Condition, LimeTaskSpec, LimeTaskStatus, RunnerTask


def test_spec_round_trips_through_camel_case():
    spec = LimeTaskSpec.model_validate(
        {"task": "pkg.tasks.add", "app": "my-app", "timeoutSeconds": 60, "ttlSecondsAfterFinished": 0}
    )
    assert spec.timeout_seconds == 60 and spec.ttl_seconds_after_finished == 0
    assert spec.to_wire() == {
        "task": "pkg.tasks.add",
        "app": "my-app",
        "args": [],
        "kwargs": {},
        "retries": 0,
        "timeoutSeconds": 60,
        "ttlSecondsAfterFinished": 0,
    }


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"task": "single"}, "task"),
        ({"task": "pkg..double"}, "task"),
        ({"task": "pkg.1starts_with_digit"}, "task"),
        ({"app": "-leading-dash"}, "app"),
        ({"app": "a" * 64}, "app"),
        ({"retries": 21}, "retries"),
        ({"timeoutSeconds": 604801}, "timeoutSeconds"),
        ({"args": list(range(257))}, "args"),
        ({"kwargs": {f"k{i}": i for i in range(257)}}, "kwargs"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_spec_refuses_bad_fields(fields, field):
    with pytest.raises(ValidationError) as caught:
        LimeTaskSpec.model_validate({"task": "pkg.tasks.add", "app": "my-app", **fields})
    assert field in {str(e["loc"][0]) for e in caught.value.errors()}


def test_arguments_size_is_compact_json_bytes():
    spec = LimeTaskSpec(task="p.t", app="a", args=["\u00e9"], kwargs={"k": 1})
    assert spec.arguments_size() == len('[["\\u00e9"],{"k":1}]')
    spec.check_arguments_size()
    with pytest.raises(ValueError, match=f"the limit is {MAX_ARGUMENTS_BYTES}"):
        LimeTaskSpec(task="p.t", app="a", args=["x" * MAX_ARGUMENTS_BYTES]).check_arguments_size()


def test_status_with_conditions_serialises_for_the_api():
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    status = LimeTaskStatus(
        state="SUCCESS",
        result={"n": 1},
        reason="Completed",
        conditions=[Condition(type="Succeeded", status="True", reason="Completed", last_transition_time=when)],
    )
    wire = status.to_wire()
    assert wire["conditions"] == [
        {"type": "Succeeded", "status": "True", "reason": "Completed", "message": "", "lastTransitionTime": "2026-01-02T03:04:05Z"}
    ]
    assert wire["state"] == "SUCCESS" and wire["result"] == {"n": 1}


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "Yes"},
        {"reason": "not camel case"},
        {"reason": ""},
        {"type": "Bad Type"},
        {"observedGeneration": -1},
    ],
)
def test_condition_refuses_non_conventional_values(fields):
    base = {"type": "Succeeded", "status": "True", "reason": "Completed", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    with pytest.raises(ValidationError):
        Condition.model_validate({**base, **fields})


@pytest.mark.parametrize("fields", [{"state": "DONE"}, {"attempts": -1}, {"reason": "Has Space"}])
def test_status_refuses_bad_values(fields):
    with pytest.raises(ValidationError):
        LimeTaskStatus.model_validate(fields)


def test_runner_task_uses_plain_names_and_refuses_extras():
    task = RunnerTask.model_validate({"id": "t", "task": "p.t", "app": "a", "namespace": "ns"})
    assert (task.args, task.kwargs, task.namespace) == ([], {}, "ns")
    with pytest.raises(ValidationError):
        RunnerTask.model_validate({"id": "t", "task": "p.t", "app": "a", "timeoutSeconds": 1})
