"""Builds the local cluster's images without a registry or a Docker daemon, with buildah.

- ``base-debian12-python3.11``: Debian bookworm minbase from debootstrap, python3 and a
  venv at /opt/venv first on PATH (so ``python`` exists, as the runner's command needs).
  Honestly named: it is not the upstream ``python:3.11-slim``, which cannot be pulled here.
- ``runner``, ``operator``: docker/Dockerfile.runner and Dockerfile.operator, unchanged
  but for their base (build argument BASE_IMAGE).
- ``tasks``: docker/Dockerfile.tasks, the runner plus the sample task packages.
- ``pause``: the pod sandbox image, a static C program FROM scratch.

Python packages come from a wheelhouse that pip downloads on the host (where the pip
configuration and certificates work) and that RUN steps see read-only with pip set to
``no-index``: builds need no network, and they install exactly the wheels hashed into
the image names. Every image is kept as a docker-archive in the cache
(``<cache>/images/<name>-<digest>.tar``), which is what the node imports; buildah's own
storage sits beside it, never in /var/lib/containers.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from . import imagespec
from .config import REPO_ROOT, ClusterConfig
from .imagespec import BASE_NAME, VENV

DEBIAN_MIRROR = "http://deb.debian.org/debian"

# The base image's build commands; their text is part of the base image's digest.
BASE_RECIPE = f"""
debootstrap --variant=minbase --include={','.join(imagespec.DEBIAN_PACKAGES)} {imagespec.DEBIAN_SUITE} ROOTFS MIRROR
chroot ROOTFS python3 -m venv {VENV}
rm -rf ROOTFS/var/lib/apt/lists/* ROOTFS/var/cache/apt/* ROOTFS/var/cache/debconf/*-old ROOTFS/usr/share/doc
rm -rf ROOTFS/usr/share/man ROOTFS/usr/share/info ROOTFS/usr/share/locale ROOTFS/var/log/* ROOTFS/tmp/*
env PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
"""

PAUSE_C = r"""
/* The pod sandbox's process: holds the pod's namespaces, reaps orphans, exits on
 * SIGTERM/SIGINT. A static binary, so the image needs nothing else. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction term = {.sa_handler = stop}, child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  sigaction(SIGTERM, &term, NULL);
  sigaction(SIGINT, &term, NULL);
  sigaction(SIGCHLD, &child, NULL);
  for (;;) pause();
}
"""

DEBIAN_TOOLS = {"buildah": "buildah", "debootstrap": "debootstrap", "gcc": "gcc"}


class ImageBuildError(RuntimeError):
    """An image could not be built; the message names the image and the failing command."""


def log(msg: str) -> None:
    print(f"[images] {msg}", file=sys.stderr, flush=True)


def images_dir(cfg: ClusterConfig) -> Path:
    return cfg.cache_dir / "images"


def archive_path(cfg: ClusterConfig, ref: str) -> Path:
    name, tag = ref.removeprefix(imagespec.PREFIX).split(":")
    return images_dir(cfg) / f"{name}-{tag}.tar"


def _run(args: list[str], what: str, **kw) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise ImageBuildError(f"{what}: {' '.join(args[:6])} ... exited {proc.returncode}:\n"
                              f"{(proc.stderr or proc.stdout)[-4000:]}")
    return proc.stdout


def _buildah(cfg: ClusterConfig, *args: str, what: str) -> str:
    d = images_dir(cfg)
    return _run(["buildah", "--root", str(d / "storage"), "--runroot", str(d / "runroot"),
                 "--storage-driver", "overlay", *args], what)


def ensure_tools() -> None:
    """Install buildah, debootstrap and gcc from Debian when missing (CI machines are fresh)."""
    missing = [pkg for tool, pkg in DEBIAN_TOOLS.items() if shutil.which(tool) is None]
    if missing:
        log(f"installing {', '.join(missing)} from Debian")
        apt_install(missing)


def apt_install(packages: list[str]) -> None:
    """apt-get install; on a fresh machine (no package lists yet) apt-get update first.
    Raises ImageBuildError with apt's message when it still fails."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    if subprocess.run(cmd, capture_output=True, text=True, env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, env=env)
        _run(cmd, "apt-get install", env=env)


@contextmanager
def _locked(cfg: ClusterConfig):
    images_dir(cfg).mkdir(parents=True, exist_ok=True)
    with open(images_dir(cfg) / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _in_storage(cfg: ClusterConfig, ref: str) -> bool:
    d = images_dir(cfg)
    return subprocess.run(["buildah", "--root", str(d / "storage"), "--runroot", str(d / "runroot"),
                           "--storage-driver", "overlay", "inspect", "--type", "image", ref],
                          capture_output=True).returncode == 0


def _export(cfg: ClusterConfig, ref: str) -> None:
    """buildah storage -> docker-archive (keeps the tag, which ``ctr import`` restores)."""
    tar = archive_path(cfg, ref)
    tmp = tar.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    _buildah(cfg, "push", "--quiet", ref, f"docker-archive:{tmp}:{ref}", what=f"export {ref}")
    tmp.rename(tar)


def _present(cfg: ClusterConfig, ref: str) -> bool:
    """The archive exists; its image is loaded into buildah storage if a child needs it."""
    if not archive_path(cfg, ref).is_file():
        return False
    if not _in_storage(cfg, ref):
        _buildah(cfg, "pull", "--quiet", f"docker-archive:{archive_path(cfg, ref)}", what=f"load {ref}")
    return True


def build_base(cfg: ClusterConfig) -> str:
    ref = imagespec.reference(BASE_NAME, imagespec.base_digest(BASE_RECIPE))
    if _present(cfg, ref):
        return ref
    t0 = time.monotonic()
    log(f"building {ref} (debootstrap {imagespec.DEBIAN_SUITE} minbase + python3)")
    work = images_dir(cfg) / "work"
    rootfs = work / "base-rootfs"
    shutil.rmtree(work, ignore_errors=True)
    rootfs.mkdir(parents=True)
    try:
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(imagespec.DEBIAN_PACKAGES)}",
              imagespec.DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR], "debootstrap")
        _run(["chroot", str(rootfs), "python3", "-m", "venv", VENV], "python3 -m venv")
        for rel in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/info",
                    "usr/share/locale", "var/log", "tmp"):
            target = rootfs / rel
            if target.is_dir():
                for child in target.iterdir():
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        container = _buildah(cfg, "from", "--quiet", "scratch", what="buildah from scratch").strip()
        try:
            mount = Path(_buildah(cfg, "mount", container, what="buildah mount").strip())
            _run(["cp", "-a", f"{rootfs}/.", str(mount)], "copy the root file system")
            _buildah(cfg, "config",
                     "--env", f"PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "--env", "LANG=C.UTF-8", "--cmd", "python",
                     "--label", "org.opencontainers.image.description=Debian 12 minbase, python3 and a venv "
                                "(lime-task local base; not the upstream python image)",
                     container, what="buildah config")
            _buildah(cfg, "commit", "--quiet", "--squash", container, ref, what="buildah commit")
        finally:
            subprocess.run(["buildah", "--root", str(images_dir(cfg) / "storage"), "--runroot",
                            str(images_dir(cfg) / "runroot"), "--storage-driver", "overlay", "rm", container],
                           capture_output=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _export(cfg, ref)
    log(f"built {ref} in {time.monotonic() - t0:.0f}s")
    return ref


def build_pause(cfg: ClusterConfig) -> str:
    ref = imagespec.reference("pause", imagespec.digest([("pause.c", PAUSE_C.encode())]))
    if _present(cfg, ref):
        return ref
    work = images_dir(cfg) / "pause-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        (work / "pause.c").write_text(PAUSE_C)
        _run(["gcc", "-static", "-Os", "-o", str(work / "pause"), str(work / "pause.c")], "compile pause")
        _run(["strip", str(work / "pause")], "strip pause")
        (work / "Containerfile").write_text('FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n')
        _buildah(cfg, "bud", "--quiet", "--pull=never", "--network", "none", "--cni-config-dir",
                 str(images_dir(cfg) / "cni"), "-f", str(work / "Containerfile"), "-t", ref, str(work),
                 what="build the pause image")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _export(cfg, ref)
    return ref


def wheelhouse(cfg: ClusterConfig) -> tuple[Path, str]:
    """The wheel directory for the project's requirements and its digest.

    Downloaded by the host's pip (its configuration and CA bundle work here) as binary
    wheels for the image's Python (CPython 3.11, glibc x86_64): no compiler in images.
    """
    reqs = imagespec.wheel_requirements((REPO_ROOT / "pyproject.toml").read_text())
    key = imagespec.digest([("requirements", "\n".join(reqs).encode())])[:16]
    target = images_dir(cfg) / f"wheels-{key}"
    if not (target / ".complete").exists():
        log(f"downloading wheels for {len(reqs)} requirements")
        tmp = target.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--python-version", "3.11",
              "--implementation", "cp", "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
              "--platform", "manylinux_2_17_x86_64", "--platform", "linux_x86_64",
              "--dest", str(tmp), *reqs], "pip download")
        (tmp / ".complete").write_text("\n".join(reqs) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    files = sorted(p.name for p in target.iterdir())
    return target, imagespec.digest([("wheels", "\n".join(files).encode())])


def build_from_dockerfile(cfg: ClusterConfig, spec: imagespec.ImageSpec, parent_ref: str,
                          wheels: tuple[Path, str]) -> str:
    parts = list(imagespec.walk_inputs(REPO_ROOT, (spec.dockerfile, *spec.inputs)))
    parts.append(("parent", parent_ref.encode()))
    if spec.wheels:
        parts.append(("wheels", wheels[1].encode()))
    ref = imagespec.reference(spec.name, imagespec.digest(parts))
    if _present(cfg, ref):
        return ref
    t0 = time.monotonic()
    log(f"building {ref} from {spec.dockerfile}")
    ignore = images_dir(cfg) / "build.ignore"
    ignore.write_text("\n".join(imagespec.IGNORED) + "\n")
    # chroot isolation: RUN steps share the host's network (buildah allows no other with
    # chroot) but need none, since pip reads only the wheelhouse; buildah's CNI
    # configuration in the cache rather than /etc/cni.
    args = ["bud", "--quiet", "--pull=never", "--isolation", "chroot",
            "--cni-config-dir", str(images_dir(cfg) / "cni"), "--ignorefile", str(ignore),
            "-f", str(REPO_ROOT / spec.dockerfile), "--build-arg", f"{spec.parent_arg}={parent_ref}", "-t", ref]
    if spec.wheels:
        conf = images_dir(cfg) / "pip.conf"
        conf.write_text(imagespec.pip_conf("/wheels"))
        args += ["--volume", f"{wheels[0]}:/wheels:ro", "--volume", f"{conf}:/etc/pip.conf:ro"]
    _buildah(cfg, *args, str(REPO_ROOT), what=f"build {spec.name}")
    _export(cfg, ref)
    log(f"built {ref} in {time.monotonic() - t0:.0f}s")
    return ref


# A superseded image is kept this long after it was built: a test session that started
# with it (its pods name it) must be able to finish while another `up` builds newer ones.
PRUNE_AFTER_SECONDS = 3600


def prune(cfg: ClusterConfig, current: dict[str, str], wheels: Path, now: float | None = None) -> list[str]:
    """Remove superseded images: every archive and buildah image of our names whose
    reference is not in ``current`` and that is older than PRUNE_AFTER_SECONDS, and every
    other wheelhouse. Each image is a few hundred MB and any edit of the product code
    makes new ones. Returns the references removed."""
    keep = set(current.values())
    now = time.time() if now is None else now
    removed = []
    for tar in images_dir(cfg).glob("*.tar"):
        name, _, tag = tar.stem.rpartition("-")
        ref = f"{imagespec.PREFIX}{name}:{tag}"
        if ref not in keep and now - tar.stat().st_mtime > PRUNE_AFTER_SECONDS:
            tar.unlink(missing_ok=True)
            subprocess.run(["buildah", "--root", str(images_dir(cfg) / "storage"), "--runroot",
                            str(images_dir(cfg) / "runroot"), "--storage-driver", "overlay", "rmi", ref],
                           capture_output=True)
            removed.append(ref)
    for old in images_dir(cfg).glob("wheels-*"):
        if old != wheels and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return removed


def ensure_images(cfg: ClusterConfig) -> dict[str, str]:
    """Build what is missing; {short name: reference} for pause, base and every SPECS image.
    Superseded images are removed from the cache (``prune``)."""
    with _locked(cfg):
        ensure_tools()
        refs = {"pause": build_pause(cfg), BASE_NAME: build_base(cfg)}
        wheels = wheelhouse(cfg)
        for spec in imagespec.SPECS:
            refs[spec.name] = build_from_dockerfile(cfg, spec, refs[spec.parent], wheels)
        prune(cfg, refs, wheels[0])
        return refs


if __name__ == "__main__":
    t = time.monotonic()
    for name, ref in ensure_images(ClusterConfig.from_env()).items():
        print(f"{name}: {ref}")
    print(f"images ready in {time.monotonic() - t:.1f}s")
