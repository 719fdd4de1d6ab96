"""The chart and the operator agree on settings: every LIME_TASK_OPERATOR_* variable the
Deployment sets is one the operator reads, and the task ServiceAccount reaches the Job.

Pure: the variable names are read from the template text, the operator's side from
lime_task_operator.settings and the Job builder.
"""

import re
from pathlib import Path

import pytest

from lime_task_operator import jobs, settings

DEPLOYMENT = Path(__file__).resolve().parents[2] / "charts" / "lime-task" / "templates" / "deployment.yaml"


def chart_variables() -> set[str]:
    return set(re.findall(r"name: (LIME_TASK_OPERATOR_[A-Z_]+)", DEPLOYMENT.read_text()))


def test_every_variable_the_chart_sets_changes_a_setting():
    names = chart_variables()
    assert len(names) == 14
    samples = {
        "DEFAULT_IMAGE": "example.org/tasks:1",
        "APP_IMAGES": '{"a": "example.org/a:1"}',
        "ALLOWED_IMAGES": "example.org/",
        "MAX_RUNNING": "3",
        "MAX_RUNNING_PER_APP": "2",
        "DEFAULT_TTL_SECONDS": "60",
        "CONTAINER_START_TIMEOUT_SECONDS": "30",
        "KUBE_EVENTS": "all",
        "METRICS_PORT": "9090",
        "EXTRA_ENV": '{"X": "1"}',
        "EXCHANGE": "other_exchange",
        "NAMESPACES": "a,b",
        "BROKER_URL": "amqp://127.0.0.1/",
        "TASK_SERVICE_ACCOUNT": "lime-task-task",
    }
    default = settings.load_settings({})
    for name in names:
        short = name[len(settings.PREFIX):]
        assert short in samples, f"the chart sets {name}, which this test does not know"
        changed = settings.load_settings({name: samples[short]})
        assert changed != default, f"the operator ignores {name}, which the chart sets"


def test_task_service_account_becomes_the_task_pods_account():
    task = {
        "metadata": {"name": "t1", "namespace": "ns", "uid": "u1"},
        "spec": {"task": "pkg.tasks.add", "app": "a", "args": [], "kwargs": {}, "retries": 0},
    }
    config = settings.load_settings(
        {"LIME_TASK_OPERATOR_DEFAULT_IMAGE": "img", "LIME_TASK_OPERATOR_TASK_SERVICE_ACCOUNT": "lime-task-task"}
    )
    pod = jobs.build_job(task, config)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "lime-task-task"
    assert pod["automountServiceAccountToken"] is False
    without = jobs.build_job(task, settings.load_settings({"LIME_TASK_OPERATOR_DEFAULT_IMAGE": "img"}))
    assert "serviceAccountName" not in without["spec"]["template"]["spec"]


def test_a_bad_task_service_account_name_is_refused_by_name():

    with pytest.raises(settings.SettingsError, match="TASK_SERVICE_ACCOUNT: 'Bad_Name'"):
        settings.load_settings({"LIME_TASK_OPERATOR_TASK_SERVICE_ACCOUNT": "Bad_Name"})
