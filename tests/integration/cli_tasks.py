"""A task that prints, for `lime-task logs` (tests/integration/test_cli.py).

Imported by the runner inside a task pod (the tasks image, docker/Dockerfile.tasks, has
every tests/integration/*_tasks.py), never by the tests themselves.
"""

from lime_task import task


@task
def chatty(app, lines):
    for number in range(lines):
        print(f"line {number} from {app.name}", flush=True)
    return {"printed": lines}
