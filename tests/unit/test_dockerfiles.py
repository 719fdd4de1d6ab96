"""Structure of the Dockerfiles (the local cluster builds them with buildah; see
devcluster/images.py, and tests/integration/test_kubelet_node.py for the built images).

A small parser reads the instructions so that the checks are about what Docker would
execute, not about comments or formatting.
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    result, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def last(pairs, keyword):
    values = [rest for key, rest in pairs if key == keyword]
    assert values, f"no {keyword} instruction"
    return values[-1]


def base_of(pairs) -> str:
    """The FROM argument with ${ARG} replaced by the ARG's default, as Docker resolves it."""
    args = {}
    for key, rest in pairs:
        if key == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default
        if key == "FROM":
            for name, default in args.items():
                rest = rest.replace("${%s}" % name, default)
            return rest
    raise AssertionError("no FROM instruction")


def test_base_image_is_a_build_argument_defaulting_to_slim_python():
    """The local cluster passes its own Debian base as BASE_IMAGE; elsewhere the upstream image."""
    for name in ("Dockerfile.operator", "Dockerfile.runner"):
        pairs = instructions(ROOT / "docker" / name)
        assert pairs[:2] == [("ARG", "BASE_IMAGE=python:3.11-slim"), ("FROM", "${BASE_IMAGE}")], name
        assert base_of(pairs) == "python:3.11-slim"


def test_tasks_image_builds_on_the_runner_and_keeps_its_user_and_command():
    pairs = instructions(ROOT / "docker" / "Dockerfile.tasks")
    assert pairs[1] == ("FROM", "${RUNNER_IMAGE}")
    assert last(pairs, "USER") == "65532:65532"
    assert not any(key in ("CMD", "ENTRYPOINT") for key, _ in pairs)
    # The packages reach sys.path through a .pth file: a PYTHONPATH in ENV would be
    # replaced by a task's own PYTHONPATH.
    assert not any(key == "ENV" and "PYTHONPATH" in rest for key, rest in pairs)
    assert any(key == "RUN" and "lime-tasks.pth" in rest and "/opt/lime-tasks" in rest for key, rest in pairs)


def test_operator_image_is_slim_python_with_the_operator_extra_as_non_root():
    pairs = instructions(ROOT / "docker" / "Dockerfile.operator")
    assert base_of(pairs) == "python:3.11-slim"
    assert any(key == "RUN" and 'pip install ".[operator]"' in rest for key, rest in pairs)
    assert last(pairs, "USER") == "65532:65532"
    assert json.loads(last(pairs, "ENTRYPOINT")) == ["lime-task", "operator"]


def test_runner_image_is_the_library_only_as_non_root_running_the_runner():
    pairs = instructions(ROOT / "docker" / "Dockerfile.runner")
    assert base_of(pairs) == "python:3.11-slim"
    installs = [rest for key, rest in pairs if key == "RUN" and "pip install" in rest]
    assert installs and not any("operator]" in rest for rest in installs)
    assert last(pairs, "USER") == "65532:65532"
    assert json.loads(last(pairs, "CMD")) == ["python", "-m", "lime_task.runner"]
    assert not any(key == "ENTRYPOINT" for key, _ in pairs)  # the operator sets the command


def test_user_is_set_after_every_install_step():
    """A RUN after the last USER would run as the unprivileged user and fail to install."""
    for name in ("Dockerfile.operator", "Dockerfile.runner"):
        pairs = instructions(ROOT / "docker" / name)
        keys = [key for key, _ in pairs]
        assert max(i for i, k in enumerate(keys) if k == "RUN") < keys.index("USER"), name


def test_copied_paths_exist_in_the_repository():
    for name in ("Dockerfile.operator", "Dockerfile.runner", "Dockerfile.tasks"):
        for key, rest in instructions(ROOT / "docker" / name):
            if key == "COPY":
                *sources, _ = rest.split()
                for source in sources:
                    found = list(ROOT.glob(source)) if "*" in source else [ROOT / source]
                    assert found and all(f.exists() for f in found), (name, source)


def test_parser_joins_continuations_and_skips_comments():
    sample = ROOT / "docker" / "Dockerfile.runner"
    pairs = instructions(sample)
    assert all(not rest.endswith("\\") for _, rest in pairs)
    assert all(not key.startswith("#") for key, _ in pairs)
