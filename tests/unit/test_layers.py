"""The import contracts in .importlinter hold, and they catch an upward import.

lint-imports (import-linter) builds the import graph of lime_task, lime_task_operator,
lime_task_api and devcluster, function-level imports included, and checks the contracts that
docs/architecture.md draws as layers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """lint-imports over the packages under `root` (runner/, operator/, api/, devcluster/)."""
    path = os.pathsep.join(str(root / part) for part in ("runner", "operator", "api", "."))
    env = dict(os.environ, PYTHONPATH=path)
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of the packages and the contracts, to inject bad imports into."""
    root = tmp_path_factory.mktemp("layers")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "runner" / "lime_task", root / "runner" / "lime_task", ignore=ignore)
    shutil.copytree(ROOT / "operator" / "lime_task_operator", root / "operator" / "lime_task_operator", ignore=ignore)
    shutil.copytree(ROOT / "api" / "lime_task_api", root / "api" / "lime_task_api", ignore=ignore)
    shutil.copytree(ROOT / "devcluster", root / "devcluster", ignore=ignore)
    shutil.copy(ROOT / ".importlinter", root / ".importlinter")
    return root


@pytest.mark.parametrize(
    "module,line,contract,reported",
    [
        ("runner/lime_task/models.py", "import lime_task_operator.transitions",
         "Servers (operator, HTTP API) above the library, and apart", "lime_task.models -> lime_task_operator.transitions"),
        ("runner/lime_task/cli.py", "import lime_task_api.app",
         "Servers (operator, HTTP API) above the library, and apart", "lime_task.cli -> lime_task_api.app"),
        ("api/lime_task_api/service.py", "from lime_task_operator import jobs",
         "Servers (operator, HTTP API) above the library, and apart", "lime_task_api.service -> lime_task_operator.jobs"),
        ("api/lime_task_api/app.py", "from kubernetes.client.rest import ApiException",
         "Only the kube modules import the Kubernetes client", "lime_task_api.app -> kubernetes"),
        ("runner/lime_task/values.py", "from lime_task import kube",
         "Library layers", "lime_task.values -> lime_task.kube"),
        # The run options' one definition sits below everything that sends a task.
        ("runner/lime_task/run_options.py", "from lime_task import sending",
         "Library layers", "lime_task.run_options -> lime_task.sending"),
        ("runner/lime_task/api.py", "from kubernetes import client",
         "Only the kube modules import the Kubernetes client", "lime_task.api -> kubernetes"),
        ("operator/lime_task_operator/transitions.py", "import urllib3",
         "Only the kube modules import the Kubernetes client", "lime_task_operator.transitions -> urllib3"),
        # Indirect: the runner imports termination, which would import the client's home.
        ("runner/lime_task/termination.py", "from lime_task import kube",
         "The runner (task pods' command) never imports the Kubernetes client", "lime_task.termination -> lime_task.kube"),
        ("operator/lime_task_operator/jobs.py", "import devcluster.config",
         "Product code never imports devcluster", "lime_task_operator.jobs -> devcluster.config"),
    ],
)
def test_an_upward_import_breaks_its_contract(tree, module, line, contract, reported):
    path = tree / module
    original = path.read_text()
    # Inside a function: the contracts see every import, not only the top-level ones.
    path.write_text(original + f"\n\ndef _injected():\n    {line}\n")
    try:
        result = lint_imports(tree)
    finally:
        path.write_text(original)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout
    assert reported in broken, result.stdout
