"""Every kopf setting the operator relies on, in one place (applied at start-up)."""

from __future__ import annotations

import logging

import kopf

from lime_task.constants import GROUP

# The API server ends a watch after this many seconds and kopf starts a new one; the
# client gives up a little later. Without both, a watch whose connection silently died
# (a load balancer, a restarted API server) could leave the operator deaf forever.
WATCH_SERVER_TIMEOUT = 240
WATCH_CLIENT_TIMEOUT = 270
WATCH_CONNECT_TIMEOUT = 10
# Concurrent per-object kopf workers (asyncio tasks; our handlers only feed indexes and
# nudge the reconciler's own bounded queue). A worker keeps its slot for IDLE_TIMEOUT
# after its object's last event, so the slots must cover the objects that change within
# that time: each task brings three (task, Job, pod). With kopf's default idle timeout
# (5s) and a limit of 32, a 200-task burst was throttled to ~3 tasks/s.
WORKER_LIMIT = 200
IDLE_TIMEOUT = 0.5


def apply(settings: kopf.OperatorSettings, namespaced: bool = False) -> None:
    """``namespaced``: the operator serves a fixed list of namespaces (its RBAC is then a
    Role per namespace, with no cluster-scoped rights)."""
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT
    settings.watching.connect_timeout = WATCH_CONNECT_TIMEOUT
    settings.queueing.worker_limit = WORKER_LIMIT
    settings.queueing.idle_timeout = IDLE_TIMEOUT
    # Our own annotation prefix, should kopf ever store handler progress or a diff-base
    # on a LimeTask (no kopf.io/* annotations on user objects).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/operator"
    # One operator per scope; no KopfPeering resources needed (or RBAC for them).
    settings.peering.standalone = True
    # Transitions are recorded as Events by the reconciler itself; kopf posts only
    # its own warnings and errors, not every log line.
    settings.posting.enabled = True
    settings.posting.level = logging.WARNING
    # Sync code runs in the reconciler's own pools; kopf's executor stays small.
    settings.execution.max_workers = 4
    # With a namespace list, kopf would still list and watch CRDs and namespaces cluster-
    # wide, which the chart's namespaced Role rightly does not allow: it retries each 403
    # for ~54s (18 ERROR lines) before falling back to exactly this. Declaring the
    # restricted mode skips that: the named namespaces are taken as they are, and the
    # LimeTask CRD must exist when the operator starts (the chart installs it first).
    settings.scanning.disabled = namespaced
