"""CLI commands that need no cluster: generate tasks, run, operator."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

from lime_task import cli, scaffold
from lime_task.cli_args import ExitCode
from lime_task.tasks import MARKER


def make_package(root: Path, dotted: str) -> Path:
    directory = root
    for part in dotted.split("."):
        directory = directory / part
        directory.mkdir()
        (directory / "__init__.py").write_text("")
    return directory


def test_generate_tasks_writes_an_importable_example_task(tmp_path, capsys, monkeypatch):
    package = make_package(tmp_path, "shop.billing")
    assert cli.main(["generate", "tasks", "--package", str(package)]) == 0
    out = capsys.readouterr().out
    assert f"created {package / 'tasks' / 'lime.py'}" in out
    # The example names itself by the full dotted path of the nested package.
    text = (package / "tasks" / "lime.py").read_text()
    assert "shop.billing.tasks.lime.get_lime_company" in text
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("shop.billing.tasks.lime")
    function = module.get_lime_company
    assert getattr(function, MARKER).name == "shop.billing.tasks.lime.get_lime_company"
    assert function("my-app", 1001, ["name", "city"]) == {"description": "company 1001 of my-app: name, city"}


def test_generate_tasks_refuses_to_overwrite_and_writes_nothing(tmp_path, capsys):
    package = make_package(tmp_path, "shop")
    (package / "tasks").mkdir()
    (package / "tasks" / "lime.py").write_text("# mine\n")
    assert cli.main(["generate", "tasks", "--package", str(package)]) == ExitCode.USAGE
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (package / "tasks" / "lime.py").read_text() == "# mine\n"
    assert not (package / "tasks" / "__init__.py").exists()  # checked before writing anything


def test_generate_tasks_finds_the_only_package_in_the_current_directory(tmp_path, capsys, monkeypatch):
    make_package(tmp_path, "shop")
    make_package(tmp_path, "tests")  # ignored
    monkeypatch.chdir(tmp_path)
    assert cli.main(["generate", "tasks"]) == 0
    assert (tmp_path / "shop" / "tasks" / "lime.py").is_file()


def test_generate_tasks_asks_for_package_when_ambiguous(tmp_path, capsys, monkeypatch):
    make_package(tmp_path, "one")
    make_package(tmp_path, "two")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["generate", "tasks"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "packages found: one, two" in err and "--package" in err


def test_generate_tasks_rejects_a_directory_that_is_not_importable(tmp_path, capsys):
    bad = tmp_path / "my-app"
    bad.mkdir()
    assert cli.main(["generate", "tasks", "--package", str(bad)]) == ExitCode.USAGE
    assert "'my-app' is not an identifier" in capsys.readouterr().err
    assert cli.main(["generate", "tasks", "--package", str(tmp_path / "missing")]) == ExitCode.USAGE
    assert "is not a directory" in capsys.readouterr().err


def test_dotted_package_name_stops_at_the_first_non_package(tmp_path):
    src = tmp_path / "src"  # a source root: not a package itself
    src.mkdir()
    package = make_package(src, "a.b.c")
    assert scaffold.dotted_package_name(package) == "a.b.c"
    assert scaffold.dotted_package_name(package.parent) == "a.b"


def test_run_hands_over_to_the_runner(tmp_path, monkeypatch):
    """`lime-task run` is the runner: it reads LIME_TASK and writes the termination message."""
    monkeypatch.syspath_prepend(str(tmp_path))
    package = make_package(tmp_path, "clirun")
    (package / "tasks.py").write_text("from lime_task import task\n\n@task\ndef add(app, a, b):\n    return a + b\n")
    message = tmp_path / "termination-log"
    env = {"LIME_TASK": json.dumps({"id": "t1", "task": "clirun.tasks.add", "app": "a", "args": [1, 2], "kwargs": {}, "namespace": "ns"})}
    result = subprocess.run(
        [sys.executable, "-m", "lime_task.cli", "run", "--termination-path", str(message)],
        env={**env, "PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(message.read_text()) == {"ok": True, "result": 3}


def test_run_exit_code_is_the_runners(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lime_task.cli", "run", "--termination-path", str(tmp_path / "m")],
        env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 3  # COULD_NOT_LOAD: no LIME_TASK at all
    assert "LIME_TASK" in (tmp_path / "m").read_text()


def test_operator_without_the_operator_package_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lime_task_operator", None)  # import raises ImportError
    assert cli.main(["operator"]) == ExitCode.UNAVAILABLE
    assert "pip install 'lime-task[operator]'" in capsys.readouterr().err


# ------------------------------------------------------------ logs: the tail kept in the status (#11)

def _task_with_kept_log(tail="Traceback ...\nValueError: boom\n"):
    return {
        "apiVersion": "limetask.dev/v1alpha1", "kind": "LimeTask",
        "metadata": {"name": "t-gone", "namespace": "ns", "uid": "u", "creationTimestamp": "2025-01-02T03:00:00Z"},
        "spec": {"task": "pkg.mod.fn", "app": "a"},
        "status": {"state": "FAILURE", "reason": "Evicted",
                   "lastAttempt": {"pod": "lt-t-gone-abcde", "reason": "Evicted", "logTail": tail}},
    }


def _logs(monkeypatch, obj, pods=(), output="text"):
    import argparse
    import io as io_module

    import kubernetes.client

    from lime_task import kube

    class FakeCore:
        def __init__(self, api_client):
            pass

        def list_namespaced_pod(self, namespace, label_selector):
            return type("PodList", (), {"items": list(pods)})()

    monkeypatch.setattr(cli, "_read", lambda options: obj)
    monkeypatch.setattr(kube, "connect", lambda: type("Connection", (), {"api_client": None})())
    monkeypatch.setattr(kubernetes.client, "CoreV1Api", FakeCore)
    out, err = io_module.StringIO(), io_module.StringIO()
    options = argparse.Namespace(id="t-gone", app="a", namespace="ns", output=output)
    code = cli.cmd_logs(options, cli.Io(out, err))
    return code, out.getvalue(), err.getvalue()


def test_logs_fall_back_to_the_tail_kept_in_the_status_when_the_pods_are_gone(monkeypatch):
    code, out, err = _logs(monkeypatch, _task_with_kept_log())
    assert code == ExitCode.OK
    assert out == "Traceback ...\nValueError: boom\n"
    assert "its pods are gone" in err and "lt-t-gone-abcde" in err
    code, out, _ = _logs(monkeypatch, _task_with_kept_log(), output="json")
    assert json.loads(out)["attempts"] == [{"pod": "lt-t-gone-abcde", "log": "Traceback ...\nValueError: boom\n",
                                            "kept": True}]


def test_logs_without_pods_or_a_kept_tail_say_why(monkeypatch):
    obj = _task_with_kept_log()
    del obj["status"]["lastAttempt"]
    try:
        _logs(monkeypatch, obj)
    except cli.CliError as error:
        assert "its pods are gone" in str(error)
    else:
        raise AssertionError("expected a CliError")
    assert cli.kept_log(obj) is None


# ------------------------------------------------------------ operator: its own command (#12)


def test_lime_task_operator_hands_over_to_the_operators_own_entry_point():
    # `lime-task operator` execs `python -m lime_task_operator` (the library never
    # imports the operator: .importlinter), so the chart's and image's command still work.
    result = subprocess.run([sys.executable, "-m", "lime_task.cli", "operator", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Run the Lime Task operator" in result.stdout


def test_the_operator_has_its_own_console_script():
    from importlib.metadata import entry_points

    from lime_task_operator import entry

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "lime-task-operator"]
    assert script.load() is entry.main
