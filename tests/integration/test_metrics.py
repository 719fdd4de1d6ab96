"""The operator's Prometheus endpoint, scraped after a run, counts the tasks it ran."""

from __future__ import annotations

import urllib.request

import pytest

from devcluster import testing

from ._operator_helpers import Api, state

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_metrics_count_the_tasks_that_ran(cluster, operator, namespace):
    port = testing.free_loopback_port()
    operator(namespace, METRICS_PORT=port)
    with cluster.api_client() as api_client:
        api = Api(api_client, namespace)
        ok = [api.create("sample_tasks.tasks.add", i, 1) for i in range(2)]
        bad = api.create("sample_tasks.tasks.fail", "boom")
        for name in ok + [bad]:
            api.wait_state(name, "SUCCESS", "FAILURE")
        assert [state(api.get(n)) for n in ok] == ["SUCCESS", "SUCCESS"]
    m = scrape(port)
    assert m['limetask_tasks_finished_total{reason="Completed",state="SUCCESS"}'] == 2
    assert m['limetask_tasks_finished_total{reason="TaskRaised",state="FAILURE"}'] == 1
    assert m["limetask_tasks_created_total"] == 3
    assert m['limetask_tasks{app="demo",state="SUCCESS"}'] == 2
    assert m['limetask_tasks{app="demo",state="FAILURE"}'] == 1
    assert m["limetask_task_queue_wait_seconds_count"] == 3
    assert m["limetask_task_duration_seconds_count"] == 3
    assert m["limetask_events_outstanding"] == 0  # events disabled here
    assert m['limetask_kubernetes_api_requests_total{code="201",resource="jobs",verb="POST"}'] == 3
    patches = sum(v for k, v in m.items()
                  if k.startswith("limetask_kubernetes_api_requests_total") and 'resource="limetasks/status"' in k)
    # At most three status writes per successful task (PENDING with the Job, STARTED,
    # SUCCESS with the event's outcome), four for the failed one (its failed attempt is
    # recorded before the Job's verdict).
    assert 3 <= patches <= 3 * 2 + 4
    # KUBE_EVENTS=failures (the default): one Event, for the failed task.
    assert m['limetask_kubernetes_api_requests_total{code="201",resource="events",verb="POST"}'] == 1
