"""How the HTTP API is packaged: its own extra and console script, its own image, and a
library that never imports it (an application installing lime-task gets no web stack)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from tests.unit.test_dockerfiles import base_of, instructions, last

ROOT = Path(__file__).resolve().parents[2]


def test_the_api_is_an_extra_with_its_own_console_script():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    assert {requirement.split(">")[0] for requirement in extras["api"]} == {"starlette", "uvicorn"}
    assert not any(dep.startswith(("starlette", "uvicorn")) for dep in project["project"]["dependencies"])
    assert project["project"]["scripts"]["lime-task-api"] == "lime_task_api:main"
    assert "api" in project["tool"]["setuptools"]["packages"]["find"]["where"]


def test_the_library_never_imports_the_api_package():
    offenders = []
    for path in (ROOT / "runner" / "lime_task").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {name}" for name in names
                          if name.split(".")[0] in ("lime_task_api", "starlette", "uvicorn")]
    assert offenders == []


def test_the_api_image_is_built_like_the_operators_with_the_api_extra():
    api = instructions(ROOT / "docker" / "Dockerfile.api")
    operator = instructions(ROOT / "docker" / "Dockerfile.operator")
    assert base_of(api) == base_of(operator)
    assert [rest for key, rest in api if key == "FROM"] == [rest for key, rest in operator if key == "FROM"]
    runs = " ".join(rest for key, rest in api if key == "RUN")
    assert 'pip install ".[api]"' in runs and "[operator" not in runs
    assert ("COPY", "api ./api") in api
    assert last(api, "USER") == "65532:65532"
    assert last(api, "ENTRYPOINT") == '["lime-task-api"]'


def test_the_generated_tasks_module_shows_an_http_post_the_api_accepts(tmp_path):
    import json
    import re

    from lime_task import cli
    from lime_task.http_client import DEFAULT_TOKEN_FILE
    from lime_task_api import bodies

    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    assert cli.main(["generate", "tasks", "--package", str(package)]) == 0
    text = (package / "tasks" / "lime.py").read_text()
    assert 'curl -X POST "$LIME_TASK_API_URL/v1/tasks"' in text
    assert str(DEFAULT_TOKEN_FILE) in text
    body = json.loads(re.search(r"-d '(.*)'", text).group(1))
    spec = bodies.build(bodies.parse_new_task(body), "my-app")
    assert (spec.task, spec.args) == ("shop.tasks.lime.get_lime_company", [1001, ["name"]])
