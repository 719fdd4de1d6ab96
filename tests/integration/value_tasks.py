"""A task that reports exactly what it received, for tests/integration/test_values.py.

Imported by the runner inside a task pod (the test's operator puts the repository root
on PYTHONPATH) and by the test itself, for `leaves`.
"""

from lime_task import task


def leaves(value):
    """Every scalar in `value` as [JSON pointer, repr], sorted by pointer: repr tells 1
    from 1.0 and -0.0 from 0.0, and the sorting makes the key order not matter.
    Containers are listed too (as their type name), so [] and {} count. Iterative."""
    found = []
    stack = [("", value)]
    while stack:
        pointer, item = stack.pop()
        if type(item) is list:
            found.append([pointer, "list"])
            stack.extend((f"{pointer}/{i}", child) for i, child in enumerate(item))
        elif type(item) is dict:
            found.append([pointer, "dict"])
            stack.extend((f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}", child) for key, child in item.items())
        else:
            found.append([pointer, repr(item)])
    return sorted(found)


@task
def leaves_of_arguments(app, *args, **kwargs):
    """What the task function received, as `leaves` of {"args": [...], "kwargs": {...}}."""
    return leaves({"args": list(args), "kwargs": kwargs})


@task
def echo(app, value):
    """Return the value received, unchanged."""
    return value
