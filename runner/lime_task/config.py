"""Which namespace the library works in: a pure decision, given what the caller found.

Order: an explicit `namespace=` argument, else env LIME_TASK_NAMESPACE, else the
namespace of the kubeconfig's current context, else the namespace of the pod's service
account (in-cluster), else "default".
"""

from __future__ import annotations

from typing import Optional

DEFAULT_NAMESPACE = "default"


def choose_namespace(
    explicit: Optional[str] = None,
    env: Optional[str] = None,
    context: Optional[str] = None,
    service_account: Optional[str] = None,
) -> str:
    for candidate in (explicit, env, context, service_account):
        if candidate and candidate.strip():
            return candidate.strip()
    return DEFAULT_NAMESPACE
