"""kopf scans no CRDs or namespaces, cluster-wide or namespaced: it serves no resource.

A namespaced install (the chart's watchNamespaces) has no rights to list CRDs or
namespaces; with scanning on, kopf retried those 403s for about a minute at start-up.
The informers (lime_task_operator.informer) do the watching.
"""

import kopf

from lime_task_operator import handlers, kopf_settings


def test_namespaced_operator_declares_the_restricted_mode():
    settings = kopf.OperatorSettings()
    kopf_settings.apply(settings, namespaced=True)
    assert settings.scanning.disabled is True


def test_cluster_wide_operator_does_not_scan_either():
    settings = kopf.OperatorSettings()
    kopf_settings.apply(settings)
    assert settings.scanning.disabled is True


def test_no_kopf_resource_handler_is_registered():
    # Resource handlers would bring back kopf's per-object workers and index wait.
    registry = kopf.get_default_registry()
    assert handlers.startup is not None
    assert not registry._watching.get_all_handlers()
    assert not registry._changing.get_all_handlers()
    assert not registry._indexing.get_all_handlers()
