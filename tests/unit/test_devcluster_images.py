"""Image naming, input hashing and the wheelhouse requirements (devcluster.imagespec)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devcluster import imagespec
from devcluster.imagespec import ImageSpecError

ROOT = Path(__file__).resolve().parents[2]


def test_reference_is_local_and_never_latest():
    ref = imagespec.reference("runner", "ab" * 32)
    assert ref == "localhost/lime-task-runner:" + "ab" * 8
    assert not ref.endswith(":latest")


@pytest.mark.parametrize("bad", ["", "abc", "Z" * 64, "latest" + "0" * 20])
def test_reference_refuses_a_digest_that_is_not_hex(bad):
    with pytest.raises(ImageSpecError, match="digest"):
        imagespec.reference("runner", bad)


@given(st.lists(st.tuples(st.text(max_size=5), st.binary(max_size=5)), max_size=4),
       st.lists(st.tuples(st.text(max_size=5), st.binary(max_size=5)), max_size=4))
def test_digest_differs_whenever_the_inputs_differ(a, b):
    """Length-prefixing: ("ab", "c") and ("a", "bc") are different inputs, so differ."""
    assert (imagespec.digest(a) == imagespec.digest(b)) == (a == b)


def test_walk_inputs_leaves_out_caches_and_names_a_missing_input(tmp_path):
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"x")
    (tmp_path / "pkg" / "m.py").write_text("print(1)\n")
    (tmp_path / "pkg" / "x.egg-info").mkdir()
    (tmp_path / "pkg" / "x.egg-info" / "PKG-INFO").write_text("x")
    (tmp_path / "f.txt").write_text("f")
    assert [name for name, _ in imagespec.walk_inputs(tmp_path, ["pkg", "f.txt"])] == ["f.txt", "pkg/m.py"]
    with pytest.raises(ImageSpecError, match="'nope' does not exist"):
        list(imagespec.walk_inputs(tmp_path, ["nope"]))


def test_an_edited_input_changes_the_image_name(tmp_path):
    (tmp_path / "a.py").write_text("1")
    before = imagespec.digest(imagespec.walk_inputs(tmp_path, ["a.py"]))
    (tmp_path / "a.py").write_text("2")
    assert imagespec.digest(imagespec.walk_inputs(tmp_path, ["a.py"])) != before


def test_every_spec_input_exists_and_parents_come_first():
    built = {imagespec.BASE_NAME}
    for spec in imagespec.SPECS:
        assert spec.parent in built, spec.name
        assert list(imagespec.walk_inputs(ROOT, (spec.dockerfile, *spec.inputs)))
        built.add(spec.name)


def test_wheel_requirements_cover_dependencies_extras_and_the_build_system():
    text = """
[build-system]
requires = ["setuptools>=68", "wheel"]
[project]
dependencies = ["pika>=1.3", "wheel"]
[project.optional-dependencies]
operator = ["kopf>=1.45"]
"""
    assert imagespec.wheel_requirements(text) == ["kopf>=1.45", "pika>=1.3", "setuptools>=68", "wheel"]
    with pytest.raises(ImageSpecError, match="no optional dependency group 'web'"):
        imagespec.wheel_requirements(text, extras=("web",))
    with pytest.raises(ImageSpecError, match="no dependencies"):
        imagespec.wheel_requirements("[project]\nname = 'x'\n")


def test_the_project_pyproject_gives_the_wheelhouse_requirements():
    reqs = imagespec.wheel_requirements((ROOT / "pyproject.toml").read_text())
    assert any(r.startswith("kopf") for r in reqs) and any(r.startswith("setuptools") for r in reqs)


def test_pip_conf_never_reaches_the_network():
    conf = imagespec.pip_conf("/wheels")
    assert "no-index = true" in conf and "find-links = /wheels" in conf


def test_glob_inputs_expand_like_a_dockerfile_copy(tmp_path):
    (tmp_path / "t").mkdir()
    for name in ("a_tasks.py", "b_tasks.py", "helpers.py"):
        (tmp_path / "t" / name).write_text(name)
    names = [n for n, _ in imagespec.walk_inputs(tmp_path, ["t/*_tasks.py"])]
    assert names == ["t/a_tasks.py", "t/b_tasks.py"]
    with pytest.raises(ImageSpecError, match="matches no file"):
        list(imagespec.walk_inputs(tmp_path, ["t/*_nothing.py"]))


def test_every_test_task_module_is_in_the_tasks_image():
    """A new tests/integration/*_tasks.py must reach the image without editing the recipe."""
    tasks = next(s for s in imagespec.SPECS if s.name == "tasks")
    names = {n for n, _ in imagespec.walk_inputs(ROOT, tasks.inputs)}
    assert {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "integration").glob("*_tasks.py")} <= names
    assert "tests/integration/pod_tasks.py" in names


def test_prune_keeps_only_the_current_archives_and_wheelhouse(tmp_path, monkeypatch):
    from devcluster import images
    from devcluster.config import ClusterConfig

    cfg = ClusterConfig.from_env({"LIME_CACHE": str(tmp_path)})
    d = images.images_dir(cfg)
    (d / "wheels-new").mkdir(parents=True)
    (d / "wheels-old").mkdir()
    for name in ("runner-aaaa", "runner-bbbb", "base-debian12-python3.11-cccc"):
        (d / f"{name}.tar").write_bytes(b"x")
    calls = []
    monkeypatch.setattr(images.subprocess, "run", lambda args, **kw: calls.append(args))
    current = {"runner": "localhost/lime-task-runner:bbbb",
               "base-debian12-python3.11": "localhost/lime-task-base-debian12-python3.11:cccc"}
    now = time.time()
    assert images.prune(cfg, current, d / "wheels-new", now=now) == []  # superseded, but recent
    removed = images.prune(cfg, current, d / "wheels-new", now=now + images.PRUNE_AFTER_SECONDS + 1)
    assert removed == ["localhost/lime-task-runner:aaaa"]
    assert sorted(p.name for p in d.iterdir()) == ["base-debian12-python3.11-cccc.tar", "runner-bbbb.tar",
                                                   "wheels-new"]
    assert calls and calls[0][-2:] == ["rmi", "localhost/lime-task-runner:aaaa"]
    assert images.archive_path(cfg, "localhost/lime-task-runner:bbbb") == d / "runner-bbbb.tar"


def test_apt_install_updates_the_package_lists_only_when_install_fails(monkeypatch):
    from types import SimpleNamespace

    from devcluster import images

    calls = []

    def fake_run(args, **kw):
        calls.append(args[:2])
        # The first install fails (no lists on a fresh machine), the second succeeds.
        failing = args[1] == "install" and sum(c[1] == "install" for c in calls) == 1
        return SimpleNamespace(returncode=100 if failing else 0, stdout="", stderr="E: Unable to locate package")

    monkeypatch.setattr(images.subprocess, "run", fake_run)
    images.apt_install(["buildah"])
    assert calls == [["apt-get", "install"], ["apt-get", "update"], ["apt-get", "install"]]

    calls.clear()
    monkeypatch.setattr(images.subprocess, "run",
                        lambda args, **kw: (calls.append(args[:2]), SimpleNamespace(returncode=100, stdout="",
                                                                                    stderr="E: broken"))[1])
    with pytest.raises(images.ImageBuildError, match="(?s)apt-get install.*E: broken"):
        images.apt_install(["buildah"])
