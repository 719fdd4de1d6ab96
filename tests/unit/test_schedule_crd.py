"""crds/limetaskschedule.yaml: its task template is exactly the LimeTask spec schema, its
names fit beside LimeTask's, and its cron shape rule accepts and refuses what the
operator does (the CEL regex, run here with Python's re)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from lime_task import constants
from lime_task_operator import schedule

ROOT = Path(__file__).parents[2]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / "crds" / name).read_text())


@pytest.fixture(scope="module")
def crd():
    return load("limetaskschedule.yaml")


@pytest.fixture(scope="module")
def version(crd):
    return crd["spec"]["versions"][0]


def test_chart_copy_is_equal():
    assert (ROOT / "charts/lime-task/crds/limetaskschedule.yaml").read_bytes() == \
        (ROOT / "crds/limetaskschedule.yaml").read_bytes(), "run scripts/sync-chart-crd"


def test_task_template_is_the_limetask_spec_schema_without_immutability(version):
    task_spec = copy.deepcopy(load("limetask.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
                              ["properties"]["spec"])
    template = copy.deepcopy(version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["taskTemplate"])
    assert task_spec.pop("x-kubernetes-validations")  # a schedule's template may change
    task_spec.pop("description"), template.pop("description")
    assert template == task_spec, ("taskTemplate drifted from crds/limetask.yaml's spec schema: copy it over "
                                   "(without x-kubernetes-validations)")


def test_names_and_category_match_limetask(crd):
    names, task_names = crd["spec"]["names"], load("limetask.yaml")["spec"]["names"]
    assert crd["metadata"]["name"] == constants.SCHEDULE_CRD_NAME
    assert names["kind"] == constants.SCHEDULE_KIND and names["plural"] == constants.SCHEDULE_PLURAL
    assert names["shortNames"] == [constants.SCHEDULE_SHORT_NAME]
    # "lime", shared with LimeTask (`kubectl get lime` lists both). Not "limetask": kubectl
    # resolves a category before a singular name, so a category named like LimeTask's
    # singular made `kubectl get limetask NAME` ambiguous once two kinds were in it.
    assert names["categories"] == task_names["categories"] == [constants.CATEGORY] == ["lime"]
    assert not set(names["categories"]) & {names["singular"], task_names["singular"]}


def test_printer_columns(version):
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Schedule"] == ".spec.schedule"
    assert columns["Suspend"] == ".spec.suspend"
    assert columns["Active"] == ".status.activeCount"
    assert columns["Last"] == ".status.lastScheduleTime"
    assert columns["Next"] == ".status.nextScheduleTime"


def test_every_field_is_explained(version):
    def walk(node, path):
        for name, child in (node.get("properties") or {}).items():
            if name not in ("metadata",):
                assert child.get("description"), f"{path}.{name} has no description for kubectl explain"
                walk(child, f"{path}.{name}")
    walk(version["schema"]["openAPIV3Schema"], "limetaskschedule")


def test_status_fields(version):
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"lastScheduleTime", "nextScheduleTime", "lastSuccessfulTime", "active", "activeCount", "conditions",
            "observedGeneration"} <= set(status)
    assert status["active"]["maxItems"] == schedule.MAX_ACTIVE_LISTED


def test_name_limit_matches_the_operator(crd):
    rules = [r["rule"] for r in crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]]
    assert f"size(self.metadata.name) <= {schedule.MAX_SCHEDULE_NAME}" in rules


def cel_pattern(version) -> re.Pattern:
    rule = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["schedule"][
        "x-kubernetes-validations"][0]["rule"]
    literal = re.fullmatch(r"self\.matches\('(.*)'\)", rule).group(1)
    return re.compile(literal.replace("\\\\", "\\"))


@pytest.mark.parametrize("text", ["* * * * *", "30 2 * * MON-FRI", " */5  1,2 L * 5#2 ", "@hourly", "@annually"])
def test_cel_shape_accepts_what_the_operator_parses(version, text):
    assert cel_pattern(version).search(text)
    schedule.parse_cron(text, None)


@pytest.mark.parametrize("text", ["* * * *", "* * * * * *", "TZ=UTC * * * * *", "@reboot", "", "0 2 * * * ; rm"])
def test_cel_shape_refuses_what_the_operator_refuses(version, text):
    assert not cel_pattern(version).search(text)
    with pytest.raises(schedule.InvalidSchedule):
        schedule.parse_cron(text, None)
