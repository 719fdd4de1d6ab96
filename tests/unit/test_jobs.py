"""The Job built for a LimeTask (pure builder)."""

import json

import pytest

from lime_task.constants import LABEL_APP, LABEL_MANAGED_BY, LABEL_TASK_ID, MAX_ARGUMENTS_BYTES
from lime_task_operator.jobs import InvalidTask, build_job, image_allowed, job_name, owner_uid
from lime_task_operator.settings import Settings

SETTINGS = Settings(default_image="runner:default", extra_env={"PYTHONPATH": "/srv/examples"})


def task(name="3f2b6c1e-0000-4000-8000-000000000001", **spec):
    body = {"task": "sample_tasks.tasks.add", "app": "billing", "args": [1, 2], "kwargs": {}}
    body.update(spec)
    return {
        "apiVersion": "limetask.dev/v1alpha1",
        "kind": "LimeTask",
        "metadata": {"name": name, "namespace": "ns1", "uid": "uid-1"},
        "spec": body,
    }


def container(job):
    return job["spec"]["template"]["spec"]["containers"][0]


def env(job):
    return {item["name"]: item["value"] for item in container(job)["env"]}


def test_job_name_is_deterministic_and_short():
    assert job_name("abc") == "lt-abc"
    long = "x" * 80
    assert job_name(long) == job_name(long)
    assert len(job_name(long)) <= 63
    assert job_name(long) != job_name("x" * 81)
    # Dots are legal in a LimeTask name; "a.b" and "a-b" must not share a Job.
    assert job_name("a.b") != job_name("a-b")
    assert "." not in job_name("a.b") and len(job_name("a.b")) <= 63


def test_job_is_owned_by_the_task_and_labelled():
    job = build_job(task(), SETTINGS)
    assert job["metadata"]["name"] == "lt-3f2b6c1e-0000-4000-8000-000000000001"
    assert job["metadata"]["namespace"] == "ns1"
    [owner] = job["metadata"]["ownerReferences"]
    assert owner["uid"] == "uid-1" and owner["controller"] and owner["blockOwnerDeletion"]
    assert owner["kind"] == "LimeTask" and owner["apiVersion"] == "limetask.dev/v1alpha1"
    assert owner_uid(job) == "uid-1"
    expected = {LABEL_TASK_ID: task()["metadata"]["name"], LABEL_APP: "billing", LABEL_MANAGED_BY: "lime-task-operator"}
    assert job["metadata"]["labels"] == expected
    assert job["spec"]["template"]["metadata"]["labels"] == expected


def test_runner_gets_the_whole_task_as_json():
    job = build_job(task(kwargs={"b": 2}, args=[1]), SETTINGS)
    c = container(job)
    assert c["command"] == ["python", "-m", "lime_task.runner"]
    assert c["name"] == "task"
    assert json.loads(env(job)["LIME_TASK"]) == {
        "id": "3f2b6c1e-0000-4000-8000-000000000001",
        "task": "sample_tasks.tasks.add",
        "app": "billing",
        "args": [1],
        "kwargs": {"b": 2},
        "namespace": "ns1",
    }
    assert env(job)["LIME_TASK_NAMESPACE"] == "ns1"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"


def test_extra_env_is_merged_but_cannot_replace_the_task():
    settings = Settings(default_image="img", extra_env={"PYTHONPATH": "/x", "LIME_TASK": "hijack"})
    values = env(build_job(task(), settings))
    assert values["PYTHONPATH"] == "/x"
    assert json.loads(values["LIME_TASK"])["task"] == "sample_tasks.tasks.add"
    assert [item["name"] for item in container(build_job(task(), settings))["env"]].count("LIME_TASK") == 1


def test_timeout_retries_and_non_retriable_exit_codes():
    job = build_job(task(timeoutSeconds=30, retries=2), SETTINGS)
    assert job["spec"]["activeDeadlineSeconds"] == 30
    assert job["spec"]["backoffLimit"] == 2
    [rule] = job["spec"]["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"] == {"containerName": "task", "operator": "In", "values": [3, 4]}
    no_timeout = build_job(task(), SETTINGS)
    assert "activeDeadlineSeconds" not in no_timeout["spec"]
    assert no_timeout["spec"]["backoffLimit"] == 0


def test_pod_is_hardened():
    pod = build_job(task(), SETTINGS)["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = pod["containers"][0]["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is False


def test_resources_are_copied_as_strings():
    job = build_job(task(resources={"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": 1}}), SETTINGS)
    assert container(job)["resources"] == {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "1"}}
    assert "resources" not in container(build_job(task(), SETTINGS))


def test_image_choice_task_then_app_then_default():
    settings = Settings(default_image="default:1", app_images={"billing": "billing:2"}, allowed_images=("own",))
    assert container(build_job(task(image="own:3"), settings))["image"] == "own:3"
    assert container(build_job(task(), settings))["image"] == "billing:2"
    assert container(build_job(task(app="other"), settings))["image"] == "default:1"


def test_image_outside_allowed_prefixes_is_invalid():
    settings = Settings(default_image="registry.local/runner", allowed_images=("registry.local/",))
    assert container(build_job(task(image="registry.local/mine:1"), settings))["image"] == "registry.local/mine:1"
    with pytest.raises(InvalidTask, match="image 'evil.example/miner:1' is not allowed"):
        build_job(task(image="evil.example/miner:1"), settings)


def test_by_default_a_task_may_name_only_the_configured_images():
    settings = Settings(default_image="registry.local/runner:1", app_images={"billing": "registry.local/billing:2"})
    assert container(build_job(task(image="registry.local/billing:2"), settings))["image"] == "registry.local/billing:2"
    for image in ("registry.local/runner:2", "evil.example/miner:1", "registry.local/runner:1x"):
        with pytest.raises(InvalidTask, match="LIME_TASK_OPERATOR_ALLOWED_IMAGES \\(now: none\\)"):
            build_job(task(image=image), settings)


@pytest.mark.parametrize("entry,image,allowed", [
    ("registry.local/team/", "registry.local/team/app:1", True),
    ("registry.local/team/", "registry.local/teamx/app:1", False),
    ("registry.local/runner", "registry.local/runner", True),
    ("registry.local/runner", "registry.local/runner:1.2", True),
    ("registry.local/runner", "registry.local/runner@sha256:" + "a" * 64, True),
    ("registry.local/runner", "registry.local/runner-evil:1", False),
    ("registry.local", "registry.local.attacker.example/x:1", False),
])
def test_allowed_images_match_a_registry_path_or_one_repository(entry, image, allowed):
    assert image_allowed(image, (entry,)) is allowed


def test_no_image_for_the_app_is_invalid():
    with pytest.raises(InvalidTask, match="no image configured for app 'billing'"):
        build_job(task(), Settings())


def test_arguments_over_the_limit_are_invalid():
    with pytest.raises(InvalidTask, match=f"the limit is {MAX_ARGUMENTS_BYTES}"):
        build_job(task(args=["x" * MAX_ARGUMENTS_BYTES]), SETTINGS)


def test_spec_that_the_schema_should_have_refused_is_invalid():
    with pytest.raises(InvalidTask, match="invalid spec: task"):
        build_job(task(task="not a dotted path"), SETTINGS)


def test_a_replacement_pod_never_runs_beside_a_terminating_one():
    job = build_job(task(retries=3), SETTINGS)
    assert job["spec"]["podReplacementPolicy"] == "Failed"
    # Disruptions (eviction, node loss) count against retries: no Ignore rule, which
    # would re-run a task with retries=0.
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert [rule["action"] for rule in rules] == ["FailJob"]
    assert all("onPodConditions" not in rule for rule in rules)
    json.dumps(job)  # plain JSON for the API server (exit codes as ints, not enum members)
