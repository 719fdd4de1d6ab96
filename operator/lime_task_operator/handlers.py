"""The kopf wiring: start the informers and the reconciler, report health, stop them.

kopf runs the operator's lifecycle (start-up and clean-up, the health endpoint, logging
and posting its own warnings). The watching itself is done by our informers
(informer.py explains why not kopf's per-object watches and indexes), so no resource
handler is registered here.

Health (`--liveness URL`, the chart's probes): the probe fails until every informer
has applied its first complete list and the reconciler runs, and again whenever an
informer has heard nothing from the API server for longer than ``STALE_AFTER_SECONDS``
(a watch is re-opened at least every few minutes and bookmarks arrive in between), so
an operator that cannot serve is never reported ready.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

import kopf

from lime_task.constants import GROUP, LABEL_MANAGED_BY, MANAGED_BY, PLURAL, VERSION

from . import kopf_settings, metrics, schedule_controller, views
from .cache import JOBS, PODS, Cache
from .informer import WATCH_READ_TIMEOUT, Informer, Resource
from .kube import Kube
from .reconciler import Reconciler

log = logging.getLogger(__name__)

TASKS = Resource(GROUP, VERSION, PLURAL)
JOB_RESOURCE = Resource("batch", "v1", "jobs")
POD_RESOURCE = Resource("", "v1", "pods")
OURS = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
# An informer silent for longer than a watch can last (plus a margin) is deaf.
STALE_AFTER_SECONDS = WATCH_READ_TIMEOUT + 60


class Wiring:
    """The informers of one operator process and what they feed."""

    def __init__(self, config: Any, namespaces: list[str], kube: Kube, reconciler: Reconciler,
                 cache: Cache) -> None:
        self.config = config
        self.cache = cache
        self.reconciler = reconciler
        self.informers: list[Informer] = []
        self.started = time.monotonic()
        self.synced_at: Optional[float] = None
        scopes: list[Optional[str]] = list(namespaces) or [None]
        for namespace in scopes:
            self.informers.append(Informer(kube, TASKS, namespace, "", self._reduce_task, self._on_task,
                                           self._on_synced))
            self.informers.append(Informer(kube, JOB_RESOURCE, namespace, OURS, self._reduce_job,
                                           self._on_child(JOBS), self._on_synced))
            self.informers.append(Informer(kube, POD_RESOURCE, namespace, OURS, self._reduce_pod,
                                           self._on_child(PODS), self._on_synced))

    # ------------------------------------------------------------ reductions

    def _reduce_task(self, body: dict[str, Any]) -> Any:
        metadata = body.get("metadata") or {}
        key = (metadata.get("namespace") or "", metadata.get("name") or "")
        return key, views.task_view(body, self.config.events_enabled)

    @staticmethod
    def _reduce_job(body: dict[str, Any]) -> Any:
        owner = views.task_key_of_child(body)
        return (owner, views.job_view(body)) if owner else None

    @staticmethod
    def _reduce_pod(body: dict[str, Any]) -> Any:
        owner = views.task_key_of_child(body)
        return (owner, views.pod_view(body)) if owner else None

    # ------------------------------------------------------------ deliveries

    def _on_task(self, kind: str, key: Any, owner: Any, view: Any) -> None:
        if kind == "DELETED":
            self.cache.drop_task(key)
        elif not self.cache.put_task(key, view):
            return  # our own write, already decided on (write-through)
        self.reconciler.on_task_event(kind, key, view)

    def _on_child(self, child_kind: str):
        def deliver(kind: str, key: Any, owner: Any, view: Any) -> None:
            if kind == "DELETED":
                owner = self.cache.drop_child(child_kind, key)
            elif not self.cache.put_child(child_kind, key, owner, view):
                return
            if owner is not None:
                self.reconciler.on_child_event(owner)
        return deliver

    def _on_synced(self) -> None:
        if self.synced_at is None and all(informer.synced for informer in self.informers):
            self.synced_at = time.monotonic()
            dropped = self.cache.prune()
            self.reconciler.start()
            log.info("lime-task operator started: caches synced in %.1fs, %s (%d children of "
                     "finished tasks not kept); serving", self.synced_at - self.started,
                     self.cache.counts(), dropped)

    # ------------------------------------------------------------ lifecycle and health

    def start(self) -> None:
        for informer in self.informers:
            informer.start()

    def stop(self) -> None:
        for informer in self.informers:
            informer.stop()

    def health(self) -> dict[str, Any]:
        """The probe's answer; raises while the operator cannot serve."""
        if self.synced_at is None:
            waiting = [i.name for i in self.informers if not i.synced]
            raise kopf.PermanentError(f"not ready: waiting for the first list of {', '.join(waiting)}")
        now = time.monotonic()
        deaf = [i.name for i in self.informers if now - i.last_contact > STALE_AFTER_SECONDS]
        if deaf:
            raise kopf.PermanentError(f"not ready: no answer from the API server for {', '.join(deaf)}")
        return {"synced": True, **self.cache.counts(), "queue": self.reconciler.main.depth}


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    namespaces = list(getattr(memo, "namespaces", None) or [])
    kopf_settings.apply(settings, namespaced=bool(namespaces))
    config = memo.config
    publisher, publish_error = _publisher(config)
    kube = Kube()
    cache = Cache()
    reconciler = Reconciler(config, kube, cache, publisher, publish_error)
    memo.wiring = Wiring(config, namespaces, kube, reconciler, cache)
    memo.reconciler = reconciler
    memo.kube = kube
    if config.metrics_port:
        metrics.serve(config.metrics_port, metrics.CacheCollector(cache.task_views, config.events_enabled))
    memo.wiring.start()
    # LimeTaskSchedules (#15): their own informers and queue, outside the readiness gate.
    memo.schedules = schedule_controller.start(config, namespaces, kube)
    logger.info("lime-task operator starting (max running %s, per app %s, events %s, %s)",
                config.max_running or "unlimited", config.max_running_per_app or "unlimited",
                "on" if publisher else "disabled",
                ("namespaces " + ",".join(namespaces)) if namespaces else "cluster-wide")


@kopf.on.probe(id="lime-task")
async def probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    wiring: Optional[Wiring] = getattr(memo, "wiring", None)
    if wiring is None:
        raise kopf.PermanentError("not ready: starting")
    return wiring.health()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    wiring: Optional[Wiring] = getattr(memo, "wiring", None)
    if wiring is not None:
        wiring.stop()
        await wiring.reconciler.stop()
    schedules = getattr(memo, "schedules", None)
    if schedules is not None:
        await schedules.stop()
    kube: Optional[Kube] = getattr(memo, "kube", None)
    if kube is not None:
        await kube.close()


def _publisher(config: Any) -> tuple[Any, type[Exception]]:
    from . import publisher

    return publisher.make_publisher(config), publisher.PublishError
