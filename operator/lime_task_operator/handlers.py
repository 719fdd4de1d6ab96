"""The kopf handlers: feed the indexes and nudge the reconciler, nothing else.

All are async on purpose: they run on the event loop, where the reconciler's queues
live (sync handlers would run in threads).

Three watches (LimeTasks, our Jobs, their pods) keep in-memory indexes; kopf fills
them from the initial listing before any other handler runs, which is what lets the
reconciler count running tasks correctly right after a restart.
"""

from __future__ import annotations

from typing import Any

import kopf

from lime_task.constants import GROUP, LABEL_MANAGED_BY, LABEL_TASK_ID, MANAGED_BY, PLURAL, VERSION

from . import kopf_settings, views
from .kube import Kube
from .reconciler import Reconciler

OURS = {LABEL_MANAGED_BY: MANAGED_BY}


@kopf.index(GROUP, VERSION, PLURAL)
async def lt_tasks(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict:
    return {(namespace, name): views.task_view(body)}


@kopf.index("batch", "v1", "jobs", labels=OURS)
async def lt_jobs(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> dict | None:
    task = labels.get(LABEL_TASK_ID)
    return {(namespace, task): views.job_view(body)} if task else None


@kopf.index("v1", "pods", labels=OURS)
async def lt_pods(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> dict | None:
    task = labels.get(LABEL_TASK_ID)
    return {(namespace, task): views.pod_view(body)} if task else None


@kopf.on.event(GROUP, VERSION, PLURAL)
async def task_event(type: str | None, body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    memo.reconciler.on_task_event(type, (namespace, name), body)


@kopf.on.event("batch", "v1", "jobs", labels=OURS)
async def job_event(namespace: str, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    if labels.get(LABEL_TASK_ID):
        memo.reconciler.on_child_event((namespace, labels[LABEL_TASK_ID]))


@kopf.on.event("v1", "pods", labels=OURS)
async def pod_event(namespace: str, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    if labels.get(LABEL_TASK_ID):
        memo.reconciler.on_child_event((namespace, labels[LABEL_TASK_ID]))


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, lt_tasks: kopf.Index,
            lt_jobs: kopf.Index, lt_pods: kopf.Index, logger: Any, **_: Any) -> None:
    kopf_settings.apply(settings, namespaced=bool(getattr(memo, "namespaces", None)))
    config = memo.config
    publisher, publish_error = _publisher(config)
    memo.reconciler = Reconciler(config, Kube(), lt_tasks, lt_jobs, lt_pods, publisher, publish_error)
    memo.reconciler.start()
    logger.info("lime-task operator started (max running %s, per app %s, events %s)",
                config.max_running or "unlimited", config.max_running_per_app or "unlimited",
                "on" if publisher else "disabled")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    reconciler = getattr(memo, "reconciler", None)
    if reconciler is not None:
        await reconciler.stop()


def _publisher(config: Any) -> tuple[Any, type[Exception]]:
    from . import events

    return events.make_publisher(config), events.PublishError
