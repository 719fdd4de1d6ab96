"""What the local cluster's container images are made of, and their names: pure logic.

Every image is named by a digest of all its inputs (the recipe, the files it copies, the
parent image's name and the Python wheels it installs), so an image is rebuilt exactly
when one of them changes, and a pod's image name says which inputs it ran. Tags are
never ``latest``: a ``latest`` tag makes kubelet default to pulling, and there is no
registry to pull from here.

``images.py`` does the building; this module only decides what to build and what it is
called, so that both are unit-tested without buildah.
"""

from __future__ import annotations

import fnmatch
import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

# Registry-less names: "localhost/" is where buildah puts local images, and containerd
# and kubelet take it as a registry host, so the name is never rewritten to docker.io.
PREFIX = "localhost/lime-task-"
DIGEST_CHARS = 16

# Never part of an image: caches, build output, the repository's own metadata. The same
# list is handed to buildah (--ignorefile), so hashed inputs and copied files agree.
IGNORED = ("**/__pycache__", "**/*.pyc", "**/*.egg-info", ".git", ".venv", "**/.pytest_cache")

# The Debian release and packages of the base image. minbase + python3 is the smallest
# Debian that runs Python; python3-venv provides the venv that puts `python` (the
# runner's command) first on PATH and keeps pip from refusing installs (PEP 668).
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_NAME = "base-debian12-python3.11"
VENV = "/opt/venv"


class ImageSpecError(ValueError):
    """An image recipe refers to something that does not exist or cannot be hashed."""


@dataclass(frozen=True)
class ImageSpec:
    """One image to build from a Dockerfile in the repository.

    ``name``: short name (the reference is ``PREFIX + name + ":" + digest``).
    ``dockerfile``: path relative to the repository root. ``inputs``: files and folders
    (relative) that the Dockerfile copies. ``parent``: the spec name whose reference is
    passed as build argument ``parent_arg``. ``wheels``: whether pip installs from the
    wheelhouse during the build.
    """

    name: str
    dockerfile: str
    inputs: tuple[str, ...]
    parent: str
    parent_arg: str
    wheels: bool = True


# The images of the local cluster, in build order (a parent before its children).
SPECS: tuple[ImageSpec, ...] = (
    ImageSpec("runner", "docker/Dockerfile.runner", ("pyproject.toml", "README.md", "runner", "operator"),
              parent=BASE_NAME, parent_arg="BASE_IMAGE"),
    ImageSpec("operator", "docker/Dockerfile.operator", ("pyproject.toml", "README.md", "runner", "operator"),
              parent=BASE_NAME, parent_arg="BASE_IMAGE"),
    # The runner plus the task packages the tests and the demo send tasks to.
    ImageSpec("tasks", "docker/Dockerfile.tasks",
              ("examples/sample_tasks", "examples/03-app-factory/factory_demo", "tests/__init__.py",
               "tests/integration/__init__.py", "tests/integration/*_tasks.py"),
              parent="runner", parent_arg="RUNNER_IMAGE", wheels=False),
)


def reference(name: str, digest: str) -> str:
    """``localhost/lime-task-<name>:<first 16 hex of digest>``."""
    if len(digest) < DIGEST_CHARS or not all(c in "0123456789abcdef" for c in digest):
        raise ImageSpecError(f"image {name}: digest must be lowercase hex of at least {DIGEST_CHARS} chars, got {digest!r}")
    return f"{PREFIX}{name}:{digest[:DIGEST_CHARS]}"


def is_ignored(relative: str) -> bool:
    """Whether a repository-relative POSIX path matches IGNORED (any of its parents too)."""
    parts = relative.split("/")
    for i in range(1, len(parts) + 1):
        head = "/".join(parts[:i])
        for pattern in IGNORED:
            bare = pattern.removeprefix("**/")
            if fnmatch.fnmatch(head, pattern) or fnmatch.fnmatch(parts[i - 1], bare):
                return True
    return False


def walk_inputs(root: Path, inputs: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    """(relative path, content) of every input file, sorted, IGNORED left out.

    An input with ``*`` is a glob (as in a Dockerfile COPY). Raises ImageSpecError for an
    input that does not exist or a glob that matches nothing (a recipe naming a missing
    file must fail here, not produce an image without it).
    """
    expanded: list[str] = []
    for item in inputs:
        if "*" in item:
            matches = sorted(p.relative_to(root).as_posix() for p in root.glob(item) if p.is_file())
            if not matches:
                raise ImageSpecError(f"image input {item!r} matches no file under {root}")
            expanded += [m for m in matches if not is_ignored(m)]
        else:
            expanded.append(item)
    for item in sorted(set(expanded)):
        path = root / item
        if path.is_file():
            yield item, path.read_bytes()
        elif path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                rel = f.relative_to(root).as_posix()
                if not is_ignored(rel):
                    yield rel, f.read_bytes()
        else:
            raise ImageSpecError(f"image input {item!r} does not exist under {root}")


def digest(parts: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over (name, content) pairs, each length-prefixed so no two lists collide."""
    h = hashlib.sha256()
    for name, content in parts:
        for chunk in (name.encode(), content):
            h.update(len(chunk).to_bytes(8, "big"))
            h.update(chunk)
    return h.hexdigest()


def wheel_requirements(pyproject_text: str, extras: Iterable[str] = ("operator",)) -> list[str]:
    """Every requirement an image build installs with pip: the project's dependencies,
    the given optional extras and the build system's own requirements (pip builds the
    project in an isolated environment that needs them too). Sorted, duplicates removed.

    Raises ImageSpecError when pyproject.toml has no [project] dependencies.
    """
    data = tomllib.loads(pyproject_text)
    project = data.get("project") or {}
    if "dependencies" not in project:
        raise ImageSpecError("pyproject.toml: [project] has no dependencies list")
    reqs = list(project["dependencies"])
    optional = project.get("optional-dependencies") or {}
    for extra in extras:
        if extra not in optional:
            raise ImageSpecError(f"pyproject.toml: no optional dependency group {extra!r}")
        reqs += optional[extra]
    reqs += (data.get("build-system") or {}).get("requires", [])
    return sorted(set(reqs))


def pip_conf(wheel_dir: str) -> str:
    """The pip configuration mounted at /etc/pip.conf inside builds: wheels only from the
    wheelhouse, never the network, so a build is repeatable and needs no certificates."""
    return f"[global]\nno-index = true\nfind-links = {wheel_dir}\n"


def base_digest(recipe: str) -> str:
    """Digest of the base image: its recipe text (the build commands), suite and packages."""
    return digest([("recipe", recipe.encode()), ("suite", DEBIAN_SUITE.encode()),
                   ("packages", " ".join(DEBIAN_PACKAGES).encode())])
