"""Tasks that report what a task pod can see and do, for the chart's operator test and
the real node's tests (tests/integration/test_kubelet_node.py).

Imported by the runner inside a task pod (from the tasks image, docker/Dockerfile.tasks),
never by the tests themselves.
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


@task
def identity(app, probe_dir="/opt/lime-tasks"):
    """Who the task process is and what it may change: uid/gid, the token, and whether
    the image's files (``probe_dir``) and the root file system are writable."""
    def writable(path):
        try:
            with open(os.path.join(path, ".lime-probe"), "w"):
                pass
            return True
        except OSError:
            return False

    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "token": os.path.exists(os.path.join(SERVICE_ACCOUNT_DIR, "token")),
        "imageWritable": writable(probe_dir),
        "rootWritable": writable("/"),
    }


@task
def allocate(app, mebibytes):
    """Allocate and touch ``mebibytes`` MiB (a memory limit below that ends in an OOM kill)."""
    block = bytearray(mebibytes * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return {"allocated": mebibytes}


@task
def say(app, *lines):
    """Print each line to standard output (for `kubectl logs` and `lime-task logs`)."""
    for line in lines:
        print(line, flush=True)
    return {"lines": len(lines)}
