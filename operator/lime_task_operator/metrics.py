"""Prometheus metrics of the operator (prometheus_client, the Prometheus project's own
Python library), served on ``--metrics-port`` / ``LIME_TASK_OPERATOR_METRICS_PORT``.

Names follow the Prometheus conventions (a `limetask_` namespace, base units, `_total`
for counters, `_seconds` for durations). Every label set is bounded:
- `state` (4 values) and `reason` (the reasons of docs/architecture.md, a closed set);
- `app` only on `limetask_tasks`, and only for the ``APP_LABEL_LIMIT`` apps with the most
  tasks; the rest are summed under ``app="_other"`` (app names are user input: without a
  bound, a client could create a new time series per task);
- `kind` of reconcile errors: the exception class name (a closed set in our code);
- `queue` of reconcile passes: the operator's work queues (`reconcile`, `publish`, `schedule`);
- `resource` of watch events: the resources the informers watch (a closed set);
- `verb`, `resource` and `code` of API requests (HTTP verbs, the few resources the
  operator calls, HTTP status codes).

Counters are updated where things happen; the gauges of tasks by state and of
outstanding events are computed from the cache when Prometheus scrapes, so they cost
nothing between scrapes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterable, Optional

from prometheus_client import CollectorRegistry, Counter as PromCounter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

# Apps shown by name in limetask_tasks (the largest ones); the rest are "_other".
APP_LABEL_LIMIT = 50
OTHER_APP = "_other"
# Task run times from a second to a day; queue waits and event lags from 10 ms to an hour.
DURATION_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)

REGISTRY = CollectorRegistry(auto_describe=True)

TASKS_SEEN = PromCounter("limetask_tasks_created_total",
                         "LimeTasks this operator process saw for the first time without a state",
                         registry=REGISTRY)
TASKS_FINISHED = PromCounter("limetask_tasks_finished_total",
                             "LimeTasks this operator process moved to SUCCESS or FAILURE",
                             ["state", "reason"], registry=REGISTRY)
TASK_DURATION = Histogram("limetask_task_duration_seconds",
                          "Run time of finished tasks, from the first start to the end",
                          buckets=DURATION_BUCKETS, registry=REGISTRY)
QUEUE_WAIT = Histogram("limetask_task_queue_wait_seconds",
                       "From a task's creation until its Job was created (queueing and admission)",
                       buckets=WAIT_BUCKETS, registry=REGISTRY)
EVENT_LAG = Histogram("limetask_event_publish_lag_seconds",
                      "From a task's end until the broker confirmed its event",
                      buckets=WAIT_BUCKETS, registry=REGISTRY)
RECONCILE_ERRORS = PromCounter("limetask_reconcile_errors_total",
                               "Reconcile and publish passes that failed and were retried, by error class",
                               ["kind"], registry=REGISTRY)
RECONCILES = PromCounter("limetask_reconcile_total",
                         "Reconcile passes (one decision on a task's latest known state), by work queue",
                         ["queue"], registry=REGISTRY)
WATCH_EVENTS = PromCounter("limetask_watch_events_total",
                           "Watch events the operator's informers received (bookmarks not included), by resource",
                           ["resource"], registry=REGISTRY)
API_REQUESTS = PromCounter("limetask_kubernetes_api_requests_total",
                           "Kubernetes API requests made by the operator (watches not included)",
                           ["verb", "resource", "code"], registry=REGISTRY)


def bounded_apps(counts: Counter, limit: int = APP_LABEL_LIMIT) -> dict[str, str]:
    """app → label value: the `limit` apps with the most tasks keep their name, the rest
    become OTHER_APP."""
    named = {app for app, _ in counts.most_common(limit)}
    return {app: (app if app in named else OTHER_APP) for app in counts}


class CacheCollector:
    """limetask_tasks{app,state} and limetask_events_outstanding, from the cache at scrape."""

    def __init__(self, tasks: Callable[[], Iterable[dict[str, Any]]], events_enabled: bool) -> None:
        self._tasks = tasks
        self._events_enabled = events_enabled

    def collect(self):
        by_app_state: Counter = Counter()
        per_app: Counter = Counter()
        outstanding = 0
        for task in self._tasks():
            app = (task.get("spec") or {}).get("app") or ""
            state = (task.get("status") or {}).get("state") or "PENDING"
            by_app_state[(app, state)] += 1
            per_app[app] += 1
            if self._events_enabled and state in ("SUCCESS", "FAILURE") and not task.get("compact"):
                outstanding += 1
        labels = bounded_apps(per_app)
        tasks = GaugeMetricFamily("limetask_tasks", "LimeTasks the operator knows, by app and state "
                                  f"(the {APP_LABEL_LIMIT} largest apps by name, the rest as {OTHER_APP})",
                                  labels=["app", "state"])
        summed: Counter = Counter()
        for (app, state), count in by_app_state.items():
            summed[(labels[app], state)] += count
        for (app, state), count in sorted(summed.items()):
            tasks.add_metric([app, state], count)
        yield tasks
        events = GaugeMetricFamily("limetask_events_outstanding",
                                   "Finished tasks whose event the broker has not confirmed yet")
        events.add_metric([], outstanding)
        yield events


def serve(port: int, collector: Optional[CacheCollector] = None, address: str = "0.0.0.0") -> None:
    """Serve /metrics on `port` (a daemon thread); register the cache collector."""
    if collector is not None:
        REGISTRY.register(collector)
    start_http_server(port, addr=address, registry=REGISTRY)
