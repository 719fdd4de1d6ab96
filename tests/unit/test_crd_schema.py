"""The CRD (crds/limetask.yaml) and the pydantic models (lime_task.models) must agree.

Both are hand-written, for different readers (the API server and Python code); this test
compares them through the models' JSON schema: field names, required fields, enums,
patterns, bounds and defaults, so neither can drift alone.
"""

from pathlib import Path

import pytest
import yaml

from lime_task import constants, models

CRD_PATH = Path(__file__).parents[2] / "crds" / "limetask.yaml"
CONSTRAINTS = ("pattern", "maxLength", "minLength", "minimum", "maximum", "maxItems", "enum")


@pytest.fixture(scope="module")
def crd():
    return yaml.safe_load(CRD_PATH.read_text())


@pytest.fixture(scope="module")
def root(crd):
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _resolve(schema, defs):
    """A model field's JSON schema without $ref and without the Optional null branch."""
    if "$ref" in schema:
        schema = {**defs[schema["$ref"].split("/")[-1]], **{k: v for k, v in schema.items() if k != "$ref"}}
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        if len(branches) == 1:
            schema = {**_resolve(branches[0], defs), **{k: v for k, v in schema.items() if k != "anyOf"}}
    return schema


def _model_schema(model):
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return schema, schema.get("$defs", {})


def _compare(model, crd_schema, path):
    schema, defs = _model_schema(model)
    assert set(schema["properties"]) == set(crd_schema["properties"]), f"{path}: field names differ"
    assert set(schema.get("required", [])) == set(crd_schema.get("required", [])), f"{path}: required differ"
    by_alias = {info.alias or python: info for python, info in model.model_fields.items()}
    for name, crd_field in crd_schema["properties"].items():
        field = _resolve(schema["properties"][name], defs)
        for key in CONSTRAINTS:
            assert field.get(key) == crd_field.get(key), f"{path}.{name}: {key} differs"
        info = by_alias[name]
        if info.is_required():
            continue
        default = info.get_default(call_default_factory=True)
        if "default" in crd_field:
            assert default == crd_field["default"], f"{path}.{name}: default differs"
        else:
            # No CRD default: the model's default must be "absent" (None, or empty).
            assert default in (None, [], {}, ""), f"{path}.{name}: model default {default!r} not in the CRD"


def test_names_come_from_constants(crd):
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == constants.CRD_NAME
    assert crd["spec"]["group"] == constants.GROUP
    assert [v["name"] for v in crd["spec"]["versions"]] == [constants.VERSION]
    assert (names["kind"], names["plural"], names["singular"]) == (constants.KIND, constants.PLURAL, constants.SINGULAR)
    assert names["shortNames"] == [constants.SHORT_NAME]
    assert names["categories"] == [constants.CATEGORY]
    assert crd["spec"]["scope"] == "Namespaced"


def test_spec_agrees(root):
    _compare(models.LimeTaskSpec, root["properties"]["spec"], "spec")


def test_status_agrees(root):
    status = root["properties"]["status"]
    _compare(models.LimeTaskStatus, status, "status")
    _compare(models.TaskError, status["properties"]["error"], "status.error")
    _compare(models.EventRecord, status["properties"]["event"], "status.event")
    _compare(models.LastAttempt, status["properties"]["lastAttempt"], "status.lastAttempt")
    _compare(models.TaskError, status["properties"]["lastAttempt"]["properties"]["error"], "status.lastAttempt.error")
    _compare(models.Condition, status["properties"]["conditions"]["items"], "status.conditions[]")


def test_resources_agree(root):
    _compare(models.Resources, root["properties"]["spec"]["properties"]["resources"], "spec.resources")


def test_state_enum_is_the_four_states(root):
    assert root["properties"]["status"]["properties"]["state"]["enum"] == list(constants.STATES)


def test_bounds_enforced_by_validators_match(root):
    spec = root["properties"]["spec"]["properties"]
    assert spec["kwargs"]["maxProperties"] == models.MAX_KWARGS_PROPERTIES
    assert spec["args"]["maxItems"] == models.MAX_ARGS_ITEMS
    result_paths = root["properties"]["status"]["properties"]["resultFloatPaths"]
    assert result_paths["items"]["maxLength"] == models.RESULT_FLOAT_PATH_MAX_LENGTH
    assert result_paths["maxItems"] == models.TERMINATION_FLOAT_PATHS_MAX


def test_spec_is_immutable_by_cel(root):
    rules = root["properties"]["spec"]["x-kubernetes-validations"]
    assert [r["rule"] for r in rules] == ["self == oldSelf"]
    assert "immutable" in rules[0]["message"]


def test_free_form_json_only_where_intended(root):
    """Only args items, kwargs and status.result may hold unknown fields."""
    found = []

    def walk(schema, path):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            found.append(path)
        for name, child in schema.get("properties", {}).items():
            walk(child, f"{path}.{name}")
        if "items" in schema:
            walk(schema["items"], f"{path}[]")
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"], f"{path}{{}}")

    walk(root, "")
    assert sorted(found) == [".spec.args[]", ".spec.kwargs", ".status.result"]


def test_every_field_has_a_description(root):
    missing = []

    def walk(schema, path):
        for name, child in schema.get("properties", {}).items():
            if name != "metadata" and not child.get("description"):
                missing.append(f"{path}.{name}")
            walk(child, f"{path}.{name}")
        if "items" in schema:
            walk(schema["items"], f"{path}[]")

    walk(root, "")
    assert missing == []


def test_conditions_follow_the_api_conventions(root):
    conditions = root["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    items = conditions["items"]["properties"]
    assert items["status"]["enum"] == ["True", "False", "Unknown"]
    assert items["reason"]["pattern"] == models.REASON_PATTERN
    assert items["lastTransitionTime"]["format"] == "date-time"


def test_printer_columns(crd):
    columns = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert {n: (c["jsonPath"], c.get("priority", 0)) for n, c in columns.items()} == {
        "State": (".status.state", 0),
        "Task": (".spec.task", 0),
        "App": (".spec.app", 0),
        "Age": (".metadata.creationTimestamp", 0),
        "Duration": (".status.duration", 1),
        "Reason": (".status.reason", 1),
        "Attempts": (".status.attempts", 1),
        "Message": (".status.message", 1),
    }


def test_status_is_a_subresource(crd):
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_the_reason_description_lists_every_reason_the_operator_writes(root):
    """Every reason transitions.py / attempts.py can write is explained in the CRD (kubectl explain)."""
    from lime_task_operator import attempts, transitions

    described = root["properties"]["status"]["properties"]["reason"]["description"]
    reasons = {
        transitions.QUEUED, transitions.PENDING, transitions.RUNNING, transitions.COMPLETED, transitions.TASK_RAISED,
        transitions.COULD_NOT_LOAD, transitions.INVALID_RESULT, transitions.DEADLINE_EXCEEDED, transitions.POD_FAILED,
        transitions.CANCELLED, transitions.INVALID_TASK, transitions.OOM_KILLED, transitions.EVICTED, transitions.PREEMPTED,
        transitions.NODE_LOST, transitions.POD_DELETED, transitions.UNSCHEDULABLE, *attempts.STUCK_WAITING_REASONS,
    }
    missing = sorted(reason for reason in reasons if reason not in described)
    assert not missing, f"reasons not described in the CRD: {missing}"
