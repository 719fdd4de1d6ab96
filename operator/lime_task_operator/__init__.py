"""The Lime Task operator: runs each LimeTask as a Kubernetes Job (kopf).

`main(argv)` runs it in-process (used by `python -m lime_task_operator` and
`lime-task operator`). Modules: handlers (kopf wiring), reconciler (sequencing),
jobs / status / queue (pure decisions), kube (the only API caller), settings, events.
"""


def main(argv=None) -> int:
    from .entry import main as run

    return run(argv)


__all__ = ["main"]
