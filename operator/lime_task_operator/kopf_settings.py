"""Every kopf setting the operator relies on, in one place (applied at start-up).

kopf runs the operator's lifecycle only: start-up and clean-up, the health endpoint,
logging and posting. LimeTasks, Jobs and pods are watched by our own informers
(informer.py says why), so no kopf resource handler exists and kopf's watch, worker and
batching settings play no part; the watch timeouts that matter live in informer.py.
"""

from __future__ import annotations

import logging

import kopf

from lime_task.constants import GROUP


def apply(settings: kopf.OperatorSettings, namespaced: bool = False) -> None:
    """``namespaced``: the operator serves a fixed list of namespaces (its RBAC is then a
    Role per namespace, with no cluster-scoped rights). It makes no difference to kopf
    any more: kopf scans nothing either way."""
    # Our own annotation prefix and finalizer name, should kopf ever store anything on
    # a LimeTask (no kopf.io/* annotations on user objects).
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
    # The operator's API calls are coroutines and its broker calls have their own thread;
    # kopf's executor (for sync handlers, of which there are none) stays small.
    settings.execution.max_workers = 4
    # kopf would list and watch CRDs and namespaces to discover what to serve; with no
    # resource handlers there is nothing to discover, and a namespaced install has no
    # rights to list them (kopf retried each 403 for ~54 s at start-up).
    settings.scanning.disabled = True
