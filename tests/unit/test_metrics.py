"""Metric label sets stay bounded, and the cache gauges count what the cache holds."""

from collections import Counter

from lime_task_operator import metrics


def test_only_the_largest_apps_keep_their_name():
    counts = Counter({f"app{i}": i for i in range(1, 101)})
    labels = metrics.bounded_apps(counts, limit=3)
    assert {app for app, label in labels.items() if label != metrics.OTHER_APP} == {"app100", "app99", "app98"}
    assert labels["app1"] == metrics.OTHER_APP


def test_cache_collector_sums_other_apps_and_counts_outstanding_events():
    tasks = [{"spec": {"app": f"a{i % 60}"}, "status": {"state": "SUCCESS"}} for i in range(600)]
    tasks += [{"spec": {"app": "big"}, "status": {}} for _ in range(100)]
    tasks += [{"spec": {"app": "big"}, "status": {"state": "FAILURE"}, "compact": True}]
    collected = {family.name: family for family in metrics.CacheCollector(lambda: tasks, True).collect()}
    samples = {(s.labels["app"], s.labels["state"]): s.value for s in collected["limetask_tasks"].samples}
    assert samples[("big", "PENDING")] == 100
    assert sum(samples.values()) == 701
    assert len({app for app, _ in samples}) <= metrics.APP_LABEL_LIMIT + 1
    assert samples[(metrics.OTHER_APP, "SUCCESS")] == 600 - 49 * 10  # 49 of the 60 apps keep their name
    (outstanding,) = collected["limetask_events_outstanding"].samples
    assert outstanding.value == 600  # the compact FAILURE's event is settled
