"""The runner's contract: exit codes and termination messages for every outcome.

main() runs in-process with a temporary termination file; one test runs
`python -m lime_task.runner` as a real subprocess, as a task pod does.
"""

import json
import signal
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lime_task.constants import TERMINATION_MESSAGE_LIMIT
from lime_task.runner import ExitCode, main

EXAMPLES = Path(__file__).parents[2] / "examples"

EDGE_TASKS = '''
import asyncio
import sys

from lime_task import task


@task
def whoami(app):
    return {"type": type(app).__name__, "name": app.name}


@task
def with_kwargs(app, a, *, scale=1):
    return a * scale


@task
def raises_type_error(app):
    # A TypeError raised inside the task is the task failing, not "bad arguments".
    raise TypeError("inside the task")


@task
def exits(app):
    sys.exit(7)


@task
def returns_coroutine(app):
    async def inner():
        return "awaited"
    return inner()


@task
def returns_nan(app):
    return float("nan")


@task
def huge_error(app):
    raise RuntimeError("m" * 10_000)


@task
def chained_error(app, depth):
    # A long traceback: a chain of causes, each printed in full before the last error.
    error = None
    for layer in range(depth):
        try:
            raise ValueError(f"layer {layer} " + "detail " * 10) from error
        except ValueError as caught:
            error = caught
    raise KeyError("bottom") from error


@task
def unicode_result(app):
    return "\u00e9" * 2100


def make_app(name):
    return {"made-for": name}


class Custom:
    def __init__(self, name):
        self.name = name.upper()


def failing_factory(name):
    raise ConnectionError("database down")


not_callable = 42
'''


@pytest.fixture(scope="module")
def edge_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("edge")
    (directory / "runner_edge_tasks.py").write_text(textwrap.dedent(EDGE_TASKS))
    return directory


@pytest.fixture
def run(monkeypatch, tmp_path, edge_dir):
    """Run main() for a LIME_TASK; return (exit code, parsed termination message)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.syspath_prepend(str(edge_dir))
    path = tmp_path / "termination-log"
    monkeypatch.setenv("LIME_TASK_TERMINATION_PATH", str(path))
    monkeypatch.delenv("LIME_TASK_APP_FACTORY", raising=False)

    def _run(task=None, *, raw=None, factory=None, **fields):
        if raw is None:
            raw = json.dumps({"id": "t-1", "task": task, "app": "demo-app", **fields})
        monkeypatch.setenv("LIME_TASK", raw)
        if factory is not None:
            monkeypatch.setenv("LIME_TASK_APP_FACTORY", factory)
        code = main([])
        text = path.read_text()
        assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
        return code, json.loads(text)

    return _run


def test_success_writes_the_result(run):
    code, message = run("sample_tasks.tasks.add", args=[2, 3])
    assert code == ExitCode.SUCCESS == 0
    assert message == {"ok": True, "result": {"app": "demo-app", "sum": 5, "description": "added 2 and 3"}}


def test_kwargs_reach_the_task(run):
    assert run("runner_edge_tasks.with_kwargs", args=[3], kwargs={"scale": 4}) == (0, {"ok": True, "result": 12})


def test_async_task_runs_under_asyncio(run):
    code, message = run("sample_tasks.tasks.async_add", args=[1, 2])
    assert (code, message["result"]["sum"]) == (0, 3)


def test_a_returned_coroutine_is_awaited(run):
    assert run("runner_edge_tasks.returns_coroutine") == (0, {"ok": True, "result": "awaited"})


def test_default_application_has_the_app_name(run):
    assert run("runner_edge_tasks.whoami")[1]["result"] == {"type": "Application", "name": "demo-app"}


def test_the_app_factory_builds_the_application(run):
    code, message = run("runner_edge_tasks.whoami", factory="runner_edge_tasks:Custom")
    assert (code, message["result"]) == (0, {"type": "Custom", "name": "DEMO-APP"})


def test_task_raising_exits_1_with_type_message_and_traceback(run):
    code, message = run("sample_tasks.tasks.fail", args=["it broke"])
    assert code == ExitCode.TASK_RAISED == 1
    error = message["error"]
    assert message["ok"] is False
    assert (error["type"], error["message"]) == ("ValueError", "it broke")
    assert "sample_tasks/tasks.py" in error["traceback"] and "raise ValueError" in error["traceback"]
    assert "lime_task/runner.py" not in error["traceback"]


def test_type_error_inside_the_task_is_the_task_raising(run):
    code, message = run("runner_edge_tasks.raises_type_error")
    assert (code, message["error"]["type"]) == (1, "TypeError")


def test_sys_exit_in_a_task_is_a_failure_not_a_silent_exit(run):
    code, message = run("runner_edge_tasks.exits")
    assert (code, message["error"]["type"]) == (1, "SystemExit")


def test_factory_raising_is_retriable_like_the_task(run):
    code, message = run("runner_edge_tasks.whoami", factory="runner_edge_tasks:failing_factory")
    assert code == 1
    assert message["error"] == {**message["error"], "type": "ConnectionError", "message": "database down"}


@pytest.mark.parametrize(
    "factory, fragment",
    [
        ("no colon here", "is not of the form 'module:callable'"),
        ("runner_edge_tasks:missing", "has no attribute 'missing'"),
        ("runner_edge_tasks:not_callable", "is not callable"),
        ("no_such_module_xyz:make", "importing 'no_such_module_xyz' failed"),
    ],
)
def test_bad_factory_cannot_load(run, factory, fragment):
    code, message = run("runner_edge_tasks.whoami", factory=factory)
    assert code == ExitCode.COULD_NOT_LOAD == 3
    assert message["error"]["type"] == "CouldNotLoad"
    assert fragment in message["error"]["message"]


@pytest.mark.parametrize(
    "task, fields, fragment",
    [
        ("os.system", {"args": ["echo never"]}, "'os.system' is not a Lime Task"),
        ("sample_tasks.tasks.not_a_task", {}, "is not a Lime Task"),
        ("sample_tasks.tasks.nope", {}, "has no attribute 'nope'"),
        ("missing_pkg.tasks.add", {}, "No module named 'missing_pkg'"),
        ("sample_tasks.tasks.add", {"args": [1]}, "missing a required argument: 'b'"),
        ("sample_tasks.tasks.add", {"args": [1, 2, 3]}, "arguments do not fit sample_tasks.tasks.add(app, a, b)"),
        ("sample_tasks.tasks.add", {"args": [1, 2], "kwargs": {"c": 1}}, "unexpected keyword argument 'c'"),
    ],
)
def test_could_not_load_exits_3_naming_the_problem(run, task, fields, fragment):
    code, message = run(task, **fields)
    assert code == 3
    assert message["error"]["type"] == "CouldNotLoad"
    assert fragment in message["error"]["message"]


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("", "LIME_TASK is not set"),
        ("{not json", "LIME_TASK is not valid JSON"),
        (json.dumps({"id": "x", "app": "a"}), "task: Field required"),
        (json.dumps({"id": "x", "task": "a.b", "app": "bad app!"}), "app: String should match pattern"),
        (json.dumps({"id": "x", "task": "a.b", "app": "a", "args": {"no": "list"}}), "args: Input should be a valid list"),
        (json.dumps({"id": "x", "task": "a.b", "app": "a", "extra": 1}), "extra: Extra inputs are not permitted"),
    ],
)
def test_malformed_lime_task_env_exits_3(run, raw, fragment):
    code, message = run(raw=raw)
    assert code == 3
    assert fragment in message["error"]["message"]


def test_huge_result_exits_4_and_gives_the_size(run):
    code, message = run("sample_tasks.tasks.huge_result")
    assert code == ExitCode.INVALID_RESULT == 4
    assert message["error"]["type"] == "InvalidResult"
    assert "10011 bytes" in message["error"]["message"] and "4096" in message["error"]["message"]


def test_multibyte_result_is_measured_in_bytes(run):
    code, message = run("runner_edge_tasks.unicode_result")
    assert code == 4
    assert "4202 bytes" in message["error"]["message"]


@pytest.mark.parametrize(
    "task, fragment",
    [
        ("sample_tasks.tasks.unserialisable", "result['values']: a value of type set cannot travel as JSON exactly"),
        ("runner_edge_tasks.returns_nan", "result: nan is not a JSON number"),
    ],
)
def test_result_that_is_not_json_exits_4_naming_the_place(run, task, fragment):
    code, message = run(task)
    assert code == 4
    assert message["error"]["type"] == "InvalidResult"
    assert fragment in message["error"]["message"]


def test_long_traceback_is_cut_from_the_front(run):
    code, message = run("runner_edge_tasks.chained_error", args=[100])
    assert code == 1
    traceback = message["error"]["traceback"]
    assert traceback.startswith("...\n")
    assert traceback.rstrip().endswith("KeyError: 'bottom'")


def test_huge_error_message_is_cut_to_fit(run):
    code, message = run("runner_edge_tasks.huge_error")
    assert code == 1
    assert message["error"]["type"] == "RuntimeError"
    assert message["error"]["message"].startswith("mmmm")


def test_unwritable_termination_path_still_returns_the_exit_code(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("LIME_TASK", json.dumps({"id": "t", "task": "sample_tasks.tasks.fail", "app": "a", "args": ["x"]}))
    code = main(["--termination-path", str(tmp_path / "missing-dir" / "log")])
    assert code == 1
    assert "cannot write the termination message" in capsys.readouterr().err


def test_logs_what_runs_and_how_long_it_took(run, caplog):
    caplog.set_level("INFO", logger="lime_task.runner")
    run("sample_tasks.tasks.add", args=[1, 1])
    text = caplog.text
    assert "running sample_tasks.tasks.add for app demo-app (task t-1)" in text
    assert "succeeded in" in text


def test_python_m_runner_in_a_subprocess_refuses_os_system(tmp_path):
    marker = tmp_path / "must-not-exist"
    termination = tmp_path / "termination-log"
    env = {
        **os.environ,
        "PYTHONPATH": str(EXAMPLES),
        "LIME_TASK_TERMINATION_PATH": str(termination),
        "LIME_TASK": json.dumps({"id": "t", "task": "os.system", "app": "a", "args": [f"touch {marker}"]}),
    }
    done = subprocess.run([sys.executable, "-m", "lime_task.runner"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert not marker.exists()
    assert json.loads(termination.read_text())["error"]["type"] == "CouldNotLoad"


def test_python_m_runner_in_a_subprocess_succeeds_and_logs_to_stdout(tmp_path):
    termination = tmp_path / "termination-log"
    env = {
        **os.environ,
        "PYTHONPATH": str(EXAMPLES),
        "LIME_TASK_TERMINATION_PATH": str(termination),
        "LIME_TASK": json.dumps({"id": "t", "task": "sample_tasks.tasks.hello", "app": "a", "args": ["you"]}),
    }
    done = subprocess.run([sys.executable, "-m", "lime_task.runner"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(termination.read_text()) == {"ok": True, "result": "hello you from a"}
    assert "running sample_tasks.tasks.hello" in done.stdout and "succeeded in" in done.stdout


def test_the_runner_does_not_import_the_kubernetes_client():
    """Task pods need no API access; importing the client would only slow every start."""
    code = "import sys, lime_task.runner, lime_task; lime_task.task; print('kubernetes' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


# ------------------------------------------------------------ every outcome is reported (#11)

REPORTING_EDGES = '''
import sys

from lime_task import task


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")


class Custom(BaseException):
    pass


@task
def interrupted(app):
    raise KeyboardInterrupt


@task
def base_exception(app):
    raise Custom("beyond Exception")


@task
def unprintable(app):
    raise Unprintable()


@task
def surrogate_message(app):
    raise ValueError(b"caf\\xe9".decode("utf-8", "surrogateescape"))


@task
def exits_zero(app):
    sys.exit(0)
'''


@pytest.fixture
def reporting_edges(tmp_path, monkeypatch):
    (tmp_path / "reporting_edges.py").write_text(textwrap.dedent(REPORTING_EDGES))
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(2)\n")
    (tmp_path / "interrupts_on_import.py").write_text("raise KeyboardInterrupt\n")
    (tmp_path / "base_on_import.py").write_text("class B(BaseException):\n    pass\nraise B('odd')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # unittest.__main__ runs test discovery in the working directory on import.
    monkeypatch.chdir(tmp_path)
    for name in ("exits_on_import", "interrupts_on_import", "base_on_import"):
        sys.modules.pop(name, None)
    yield tmp_path
    for name in ("venv.__main__", "unittest.__main__"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    "task, fragment",
    [
        ("venv.__main__.main", "SystemExit"),  # argparse exits 2 on import (seen on a cluster)
        ("unittest.__main__.main", "SystemExit"),  # runs unittest.main() on import, exits
        ("exits_on_import.main", "sys.exit(2)"),
        ("interrupts_on_import.main", "KeyboardInterrupt"),
        ("base_on_import.main", "B: odd"),
    ],
)
def test_any_failing_import_is_could_not_load_never_retried(run, reporting_edges, task, fragment):
    code, message = run(task)
    assert code == ExitCode.COULD_NOT_LOAD == 3
    assert message["error"]["type"] == "CouldNotLoad"
    assert fragment in message["error"]["message"]
    assert task.rsplit(".", 1)[0] in message["error"]["message"]


@pytest.mark.parametrize(
    "task, error_type, fragment",
    [
        ("reporting_edges.interrupted", "KeyboardInterrupt", "interrupted"),
        ("reporting_edges.base_exception", "Custom", "beyond Exception"),
        ("reporting_edges.unprintable", "Unprintable", "cannot be printed"),
        ("reporting_edges.exits_zero", "SystemExit", "sys.exit(0)"),
        ("reporting_edges.surrogate_message", "ValueError", "caf?"),
    ],
)
def test_any_base_exception_in_the_task_is_reported_and_retriable(run, reporting_edges, task, error_type, fragment):
    code, message = run(task)
    assert code == ExitCode.TASK_RAISED
    assert message["ok"] is False
    assert message["error"]["type"] == error_type
    assert fragment in message["error"]["message"]
    assert "reporting_edges.py" in message["error"]["traceback"]


def test_a_failure_while_reporting_still_writes_a_report(monkeypatch, tmp_path):
    import lime_task.runner as runner_module

    def broken(environ):
        raise MemoryError("while encoding")

    monkeypatch.setattr(runner_module, "_run", broken)
    path = tmp_path / "termination-log"
    code = runner_module.run({}, path)
    report = json.loads(path.read_text())
    assert code == ExitCode.TASK_RAISED
    assert report["error"]["type"] == "MemoryError"
    assert "while reporting" in report["error"]["message"]


def test_python_m_runner_reports_a_module_that_exits_on_import(tmp_path):
    path = tmp_path / "termination-log"
    env = {**os.environ, "LIME_TASK": json.dumps({"id": "t", "task": "venv.__main__.main", "app": "a"}),
           "LIME_TASK_TERMINATION_PATH": str(path)}
    done = subprocess.run([sys.executable, "-m", "lime_task.runner"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert json.loads(path.read_text())["error"]["type"] == "CouldNotLoad"


STOPPABLE = '''
import threading, time
from lime_task import task

@task
def cleans_up(app, marker):
    try:
        time.sleep(120)
    finally:
        open(marker, "w").write("cleaned up")

@task
def swallows_exceptions(app):
    while True:
        try:
            time.sleep(120)
        except Exception:  # a task's broad handler must not swallow the pod's stop
            pass

@task
def leaves_a_thread(app):
    threading.Thread(target=time.sleep, args=(120,)).start()  # not a daemon
    time.sleep(120)

@task
async def awaits(app):
    import asyncio
    await asyncio.sleep(120)
'''


@pytest.mark.parametrize("task, args", [
    ("stoppable.cleans_up", ["MARKER"]), ("stoppable.swallows_exceptions", []),
    ("stoppable.leaves_a_thread", []), ("stoppable.awaits", []),
])
def test_sigterm_stops_the_task_at_once_with_143_and_no_report(tmp_path, task, args):
    """Kubernetes stops a pod (deadline, cancel, eviction) with SIGTERM, then SIGKILL after
    the grace period (30 s). The runner is PID 1 in its container, where SIGTERM without
    a handler is ignored: it must stop the task itself."""
    (tmp_path / "stoppable.py").write_text(STOPPABLE)
    marker, termination = tmp_path / "marker", tmp_path / "termination-log"
    args = [str(marker) if a == "MARKER" else a for a in args]
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "LIME_TASK_TERMINATION_PATH": str(termination),
           "LIME_TASK": json.dumps({"id": "t", "task": task, "app": "a", "args": args})}
    proc = subprocess.Popen([sys.executable, "-m", "lime_task.runner"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:  # the task is running once the runner says so
            if "running stoppable." in line:
                break
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        rest = proc.stdout.read()
    finally:
        proc.kill()
        proc.stdout.close()
    assert code == 143, rest
    assert "the pod is being stopped (SIGTERM)" in rest
    assert not termination.exists()  # no report: the operator tells why from the Job and the pod
    if task == "stoppable.cleans_up":
        assert marker.read_text() == "cleaned up"
