"""What the operator keeps per object (views) and the cache that groups them by task."""

from __future__ import annotations

import json

from lime_task_operator import cache as cache_module
from lime_task_operator import views
from lime_task_operator.cache import JOBS, PODS, Cache


def task(name="t1", state=None, args=None, confirmed=False, **status):
    body = {"metadata": {"name": name, "namespace": "ns", "uid": "u1", "resourceVersion": "5",
                         "managedFields": [{"manager": "x" * 500}], "labels": {"a": "b"}},
            "spec": {"task": "pkg.mod.fn", "app": "demo", "args": args if args is not None else [1, 2],
                     "kwargs": {}, "ttlSecondsAfterFinished": 60},
            "status": dict(status)}
    if state:
        body["status"]["state"] = state
        body["status"]["result"] = {"rows": [None, {"parent": None}]}
        body["status"]["finishedAt"] = "2026-11-30T00:00:00Z"
        body["status"]["conditions"] = [{"type": "Succeeded", "status": "True", "reason": "Completed"}]
    if confirmed:
        body["status"]["event"] = {"routingKey": "k", "messageId": "m", "confirmedAt": "2026-11-30T00:00:01Z"}
    return body


def test_finished_task_with_confirmed_event_keeps_only_what_the_ttl_needs():
    view = views.task_view(task(state="SUCCESS", confirmed=True))
    assert views.is_compact(view)
    assert "result" not in view["status"] and "args" not in view["spec"]
    assert view["spec"]["ttlSecondsAfterFinished"] == 60
    assert view["status"]["finishedAt"] and view["status"]["event"]["confirmedAt"]
    assert "managedFields" not in view["metadata"]
    assert len(json.dumps(view)) < 600


def test_finished_task_waiting_for_its_event_keeps_its_result():
    view = views.task_view(task(state="SUCCESS"))
    assert not views.is_compact(view)
    assert view["status"]["result"] == {"rows": [None, {"parent": None}]}


def test_events_disabled_tasks_are_compact_once_they_say_so():
    body = task(state="FAILURE")
    assert not views.is_compact(views.task_view(body, events_enabled=False))
    body["status"]["conditions"].append({"type": "EventPublished", "status": "False", "reason": "EventsDisabled"})
    assert views.is_compact(views.task_view(body, events_enabled=False))
    assert not views.is_compact(views.task_view(body, events_enabled=True))


def test_large_arguments_are_not_kept_inline():
    small = views.task_view(task(args=["x" * 100]))
    assert small["spec"]["args"] == ["x" * 100] and "argumentsOmitted" not in small
    large = views.task_view(task(args=["x" * (views.INLINE_ARGUMENTS_BYTES + 1)]))
    assert "args" not in large["spec"] and large["argumentsOmitted"] is True


def test_arguments_nested_too_deep_mark_the_task_invalid_without_recursion():
    deep = []
    for _ in range(5000):  # built in a loop: json.loads would hit the recursion limit
        deep = [deep]
    view = views.task_view(task(args=[deep]))
    assert "args" not in view["spec"]
    assert f"more than {views.MAX_ARGUMENT_DEPTH} levels" in view["invalid"]
    ok = views.task_view(task(args=json.loads("[" * views.MAX_ARGUMENT_DEPTH + "]" * views.MAX_ARGUMENT_DEPTH)))
    assert "invalid" not in ok


def test_depth():
    assert views.depth(1, 10) == 0
    assert views.depth([], 10) == 1
    assert views.depth({"a": [1, {"b": []}]}, 10) == 4
    assert views.depth(json.loads("[" * 50 + "]" * 50), 10) == 11  # gives up past the limit


def test_pod_view_keeps_the_verdict_fields_and_not_the_spec():
    pod = {"metadata": {"name": "p", "namespace": "ns", "annotations": {views.ANNOTATION_TASK_NAME: "t1"}},
           "spec": {"containers": [{"name": "task", "env": [{"name": "LIME_TASK", "value": "x" * 9000}]}]},
           "status": {"phase": "Failed", "reason": "Evicted", "message": "low on memory",
                      "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}],
                      "containerStatuses": [{"name": "task", "restartCount": 0, "state": {"terminated": {
                          "exitCode": 137, "reason": "OOMKilled", "message": "y" * 4000}}}]}}
    view = views.pod_view(pod)
    terminated = view["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated == {"exitCode": 137, "reason": "OOMKilled", "message": "y" * 4000}
    assert view["status"]["conditions"][0]["reason"] == "EvictionByEvictionAPI"
    assert "spec" not in view
    assert views.task_key_of_child(pod) == ("ns", "t1")


def test_cache_drops_children_of_finished_tasks():
    c = Cache()
    c.put_child(PODS, ("ns", "p1"), ("ns", "t1"), {"pod": 1})
    c.put_child(JOBS, ("ns", "j1"), ("ns", "t1"), {"job": 1})
    c.put_task(("ns", "t1"), views.task_view(task()))
    assert c.pods(("ns", "t1")) == [{"pod": 1}] and c.job(("ns", "t1")) == {"job": 1}
    c.put_task(("ns", "t1"), views.task_view(task(state="SUCCESS", confirmed=True)))
    assert c.pods(("ns", "t1")) == [] and c.job(("ns", "t1")) is None
    assert c.put_child(PODS, ("ns", "p2"), ("ns", "t1"), {"pod": 2}) is False
    assert c.counts() == {"tasks": 1, JOBS: 0, PODS: 0}


def test_cache_prune_after_sync_drops_children_listed_before_their_task():
    c = Cache()
    c.put_child(PODS, ("ns", "p1"), ("ns", "t1"), {"pod": 1})
    c._tasks[("ns", "t1")] = views.task_view(task(state="SUCCESS", confirmed=True))
    assert c.prune() == 1 and c.pods(("ns", "t1")) == []


def test_cache_moves_a_child_whose_owner_changed():
    c = Cache()
    c.put_child(PODS, ("ns", "p1"), ("ns", "t1"), {"v": 1})
    c.put_child(PODS, ("ns", "p1"), ("ns", "t2"), {"v": 2})
    assert c.pods(("ns", "t1")) == [] and c.pods(("ns", "t2")) == [{"v": 2}]
    assert c.drop_child(PODS, ("ns", "p1")) == ("ns", "t2")
    assert cache_module.PODS == PODS


def job(ready=0, active=1, **status):
    return {"metadata": {"name": "j1", "namespace": "ns", "resourceVersion": "7",
                         "ownerReferences": [{"uid": "u1"}]},
            "status": {"active": active, "ready": ready, "terminating": 0, "startTime": "2026-11-30T00:00:00Z",
                       "uncountedTerminatedPods": {}, **status}}


def test_job_view_keeps_what_decisions_read_and_drops_the_counters_they_do_not():
    view = views.job_view(job(conditions=[{"type": "Complete", "status": "True", "lastProbeTime": "x",
                                           "lastTransitionTime": "2026-11-30T00:00:02Z"}], succeeded=1))
    assert view["status"] == {"startTime": "2026-11-30T00:00:00Z", "uncountedTerminatedPods": {}, "succeeded": 1,
                              "conditions": [{"type": "Complete", "status": "True",
                                              "lastTransitionTime": "2026-11-30T00:00:02Z"}]}
    assert view["metadata"]["ownerReferences"] == [{"uid": "u1"}]


def test_a_job_update_of_only_ready_or_active_starts_no_reconcile_pass():
    c = Cache()
    owner = ("ns", "t1")
    assert c.put_child(JOBS, ("ns", "j1"), owner, views.job_view(job())) is True
    assert c.put_child(JOBS, ("ns", "j1"), owner, views.job_view(job(ready=1))) is False
    assert c.put_child(JOBS, ("ns", "j1"), owner, views.job_view(job(ready=1, active=0, succeeded=1))) is True


def test_pod_view_keeps_only_the_conditions_decisions_read():
    conditions = [{"type": t, "status": "True"} for t in
                  ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
    pod = {"metadata": {"name": "p"}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"}]}}
    c = Cache()
    assert c.put_child(PODS, ("ns", "p"), ("ns", "t1"), views.pod_view(pod)) is True
    assert views.pod_view(pod)["status"]["conditions"][0]["reason"] == "Unschedulable"
    pod["status"]["conditions"] = conditions  # scheduled, started: nothing kept, a change
    assert views.pod_view(pod)["status"]["conditions"] == []
    assert c.put_child(PODS, ("ns", "p"), ("ns", "t1"), views.pod_view(pod)) is True
    pod["status"]["conditions"] = conditions[-1:]  # Ready & co. changed: nothing decisions read did
    assert c.put_child(PODS, ("ns", "p"), ("ns", "t1"), views.pod_view(pod)) is False


def test_a_jobs_start_time_alone_starts_no_pass_but_is_kept_for_the_decision_that_reads_it():
    c = Cache()
    first = job()
    del first["status"]["startTime"]
    assert c.put_child(JOBS, ("ns", "j1"), ("ns", "t1"), views.job_view(first)) is True
    assert c.put_child(JOBS, ("ns", "j1"), ("ns", "t1"), views.job_view(job())) is False
    assert c.job(("ns", "t1"))["status"]["startTime"] == "2026-11-30T00:00:00Z"


def test_a_container_being_created_is_kept_as_not_reported_and_a_stuck_one_is_kept():
    def pod(*statuses):
        return {"metadata": {"name": "p"}, "status": {"phase": "Pending", "containerStatuses": list(statuses)}}

    creating = {"name": "task", "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
    stuck = {"name": "task", "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull", "message": "no"}}}
    again = {**creating, "restartCount": 1, "lastState": {"terminated": {"exitCode": 1}}}
    assert views.pod_view(pod(creating)) == views.pod_view(pod())
    assert views.pod_view(pod(stuck))["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"
    assert views.pod_view(pod(again))["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 1
    c = Cache()
    assert c.put_child(PODS, ("ns", "p"), ("ns", "t1"), views.pod_view(pod())) is True
    assert c.put_child(PODS, ("ns", "p"), ("ns", "t1"), views.pod_view(pod(creating))) is False
