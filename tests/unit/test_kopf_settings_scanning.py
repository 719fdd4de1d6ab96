"""kopf's cluster-wide scanning is switched off exactly when the operator serves a namespace list.

A namespaced install (the chart's watchNamespaces) has no rights to list CRDs or
namespaces; without this, kopf retries those 403s for about a minute at start-up.
"""

import kopf

from lime_task_operator import kopf_settings


def test_namespaced_operator_declares_the_restricted_mode():
    settings = kopf.OperatorSettings()
    kopf_settings.apply(settings, namespaced=True)
    assert settings.scanning.disabled is True


def test_cluster_wide_operator_keeps_watching_crds_and_namespaces():
    settings = kopf.OperatorSettings()
    kopf_settings.apply(settings)
    assert settings.scanning.disabled is False
