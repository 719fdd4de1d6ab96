"""Tasks that report what a task pod can see of the cluster, for the chart's operator test.

Imported by the runner inside a task pod (the operator's EXTRA_ENV puts the repository
root on PYTHONPATH), never by the tests themselves.
"""

import os

from lime_task import task

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@task
def credentials(app):
    """Whether this pod holds a ServiceAccount token, and whether it knows where the API is."""
    return {
        "token": os.path.exists(os.path.join(SERVICE_ACCOUNT_DIR, "token")),
        "serviceHost": os.environ.get("KUBERNETES_SERVICE_HOST", ""),
    }
