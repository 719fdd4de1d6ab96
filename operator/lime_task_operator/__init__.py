"""The Lime Task operator: runs each LimeTask as a Kubernetes Job (kopf).

`main(argv)` runs it in-process (used by `python -m lime_task_operator` and the
`lime-task-operator` command). Modules: handlers (kopf wiring), reconciler (sequencing),
jobs / transitions / attempts / admission (pure decisions), kube (the only API caller),
settings, publisher (the broker publisher); docs/architecture.md lists them all.
"""


def main(argv=None) -> int:
    from .entry import main as run

    return run(argv)


__all__ = ["main"]
