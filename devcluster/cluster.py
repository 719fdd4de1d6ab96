"""``up`` / ``down`` / ``status`` / ``env`` / ``logs`` for the local cluster.

``up`` is idempotent: each component that is already running and healthy is left alone,
so a second ``up`` only costs a few health probes. A file lock serialises concurrent
``up`` calls (two pytest sessions, or a shell and a test run) so they never start two
copies of a component.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from contextlib import contextmanager

from . import components, health, images, kubeconfig, kubeletnode, pki, procs, rabbitmq
from .components import Component
from .config import HOST, REPO_ROOT, ClusterConfig

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "helm")
NODE_BINARIES = ("kubelet", "containerd", "containerd-shim-runc-v2", "ctr", "crictl")
# Debian packages the kubelet node uses as they are (the Debian runc and CNI plugins).
NODE_PACKAGES = {"/usr/sbin/runc": "runc", "/usr/lib/cni/bridge": "containernetworking-plugins"}
BUILD_SCRIPT = REPO_ROOT / "devcluster" / "build-binaries.sh"


class ClusterError(RuntimeError):
    """Something could not start. The message carries the log tails needed to see why."""


def log(msg: str) -> None:
    print(f"[cluster] {msg}", file=sys.stderr, flush=True)


@contextmanager
def _locked(cfg: ClusterConfig):
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    with open(cfg.state_dir / ".up.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_binaries(cfg: ClusterConfig) -> None:
    ensure_node_packages()
    missing = [b for b in BINARIES + NODE_BINARIES if not (cfg.bin_dir / b).exists()]
    if not missing:
        return
    log(f"building missing binaries ({', '.join(missing)}); the first build takes several minutes")
    env = dict(os.environ, LIME_CACHE=str(cfg.cache_dir))
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], env=env, stdout=sys.stderr)
    if proc.returncode != 0:
        raise ClusterError(f"{BUILD_SCRIPT} failed with exit code {proc.returncode} (its output is above)")


def ensure_node_packages() -> None:
    """runc and the CNI plugins from Debian, installed when missing (a fresh CI machine)."""
    missing = sorted({pkg for path, pkg in NODE_PACKAGES.items() if not os.path.exists(path)})
    if missing:
        from .images import ImageBuildError, apt_install

        log(f"installing {', '.join(missing)} from Debian")
        try:
            apt_install(missing)
        except ImageBuildError as exc:
            raise ClusterError(str(exc)) from None


def ensure_credentials(cfg: ClusterConfig) -> None:
    pki.ensure_pki(cfg.pki_dir, cfg.service_ip, cfg.node_name)
    d = cfg.pki_dir
    for user, cert in (("admin", "admin"), ("controller-manager", "controller-manager"),
                       ("scheduler", "scheduler"), ("node", "node")):
        path = cfg.kubeconfig_for(user)
        if not path.exists():
            kubeconfig.write(path, kubeconfig.render(
                cfg.apiserver_url, d / "ca.crt", d / f"{cert}.crt", d / f"{cert}.key", user=user))


def _healthy(c: Component) -> bool:
    try:
        return bool(c.ready())
    except Exception:  # noqa: BLE001 - a failing probe just means "not healthy"
        return False


def ensure_running(cfg: ClusterConfig, c: Component) -> str:
    """Start ``c`` unless it already runs and is healthy. Returns what was done."""
    pid_file, log_file = c.pid_file(cfg), c.log_file(cfg)
    pid = procs.running_pid(pid_file, c.marker)
    if pid is not None:
        if _healthy(c):
            return f"{c.name}: running (pid {pid})"
        # Running but not healthy: maybe still starting (another `up` was interrupted).
        try:
            procs.wait_until(c.ready, min(c.timeout, 20), c.name,
                             alive=lambda: procs.running_pid(pid_file, c.marker) is not None)
            return f"{c.name}: running (pid {pid})"
        except procs.StartError:
            log(f"{c.name} (pid {pid}) is not healthy: restarting it")
            procs.stop(pid_file, c.marker)
    busy = [port for port in c.ports if not health.port_free(HOST, port)]
    if busy:
        raise ClusterError(
            f"{c.name} cannot start: port(s) {busy} on {HOST} are in use by another process (a "
            "system service such as rabbitmq-server or epmd, or another cluster's?). Stop it, or "
            "move this cluster's ports with LIME_CLUSTER_PORT_OFFSET.")
    if c.prepare:
        c.prepare()
    pid = procs.start_detached(c.argv, pid_file, log_file, env=c.env, cwd=c.cwd)
    try:
        procs.wait_until(c.ready_after_start or c.ready, c.timeout, c.name,
                         alive=lambda: procs.running_pid(pid_file, c.marker) is not None)
    except procs.StartError as exc:
        tails = "\n".join(f"---- {p} (last lines) ----\n{procs.tail(p)}" for p in [log_file, *c.extra_logs])
        raise ClusterError(f"{exc}\n{tails}") from None
    return f"{c.name}: started (pid {pid})"


# The host-process node agent of checkouts before 0.2.0 (``python -m devcluster.node``,
# pid file ``run/node.pid``). Left running beside kubelet it would answer for the same
# Node and run pods as host processes: a state directory kept from such a checkout must
# not keep it.
LEGACY_NODE_PID = "node.pid"
LEGACY_NODE_MARKER = "devcluster.node"


def stop_legacy_node(cfg: ClusterConfig) -> list[str]:
    """Stop the pre-0.2.0 host-process node agent of this state directory, if it runs."""
    if procs.stop(cfg.run_dir / LEGACY_NODE_PID, LEGACY_NODE_MARKER):
        return ["node (host-process agent of an older checkout): stopped"]
    return []


def up(cfg: ClusterConfig, control_plane: bool = True, broker: bool = True) -> list[str]:
    t0 = time.monotonic()
    done: list[str] = []
    with _locked(cfg):
        if control_plane:
            done += stop_legacy_node(cfg)
            ensure_binaries(cfg)
            for d in (cfg.run_dir, cfg.log_dir):
                d.mkdir(parents=True, exist_ok=True)
            ensure_credentials(cfg)
            t_images = time.monotonic()
            kubeletnode.write_image_refs(cfg, images.ensure_images(cfg))
            done.append(f"images: ready in {time.monotonic() - t_images:.1f}s")
            for c in components.control_plane(cfg):
                done.append(ensure_running(cfg, c))
            # The node may have been running while an image's inputs changed.
            imported = kubeletnode.import_images(cfg)
            if imported:
                done.append(f"images imported: {', '.join(imported)}")
        if broker:
            rabbitmq.ensure_installed()
            for c in rabbitmq.components(cfg):
                done.append(ensure_running(cfg, c))
    done.append(f"ready in {time.monotonic() - t0:.1f}s")
    return done


def all_components(cfg: ClusterConfig) -> list[Component]:
    return components.control_plane(cfg) + rabbitmq.components(cfg)


def down(cfg: ClusterConfig) -> list[str]:
    out = []
    with _locked(cfg):
        # The node's pods first: the teardown needs containerd running to remove pod
        # sandboxes. Then the processes in reverse start order (kubelet and containerd
        # while the apiserver still answers; etcd last).
        out += stop_legacy_node(cfg)
        out += kubeletnode.teardown(cfg)
        for c in reversed(all_components(cfg)):
            if procs.stop(c.pid_file(cfg), c.marker):
                out.append(f"{c.name}: stopped")
    return out


def status(cfg: ClusterConfig) -> tuple[bool, list[str]]:
    ok, lines = True, []
    for c in all_components(cfg):
        pid = procs.running_pid(c.pid_file(cfg), c.marker)
        if pid is None:
            ok = False
            lines.append(f"{c.name}: not running")
        elif _healthy(c):
            lines.append(f"{c.name}: running, healthy (pid {pid})")
        else:
            ok = False
            lines.append(f"{c.name}: running but NOT healthy (pid {pid})")
    return ok, lines


def env_exports(cfg: ClusterConfig) -> str:
    lines = [
        f"export KUBECONFIG={cfg.admin_kubeconfig}",
        f"export LIME_TASK_BROKER_URL='{cfg.broker_url}'",
        f'export PATH="{cfg.bin_dir}:$PATH"',
    ]
    return "\n".join(lines)


def logs(cfg: ClusterConfig, names: list[str] | None = None, lines: int = 40) -> str:
    parts = []
    for c in all_components(cfg):
        if names and c.name not in names:
            continue
        for path in [c.log_file(cfg), *c.extra_logs]:
            parts.append(f"---- {c.name}: {path} ----\n{procs.tail(path, lines)}")
    return "\n".join(parts)


def log_tails(cfg: ClusterConfig, lines: int = 30) -> str:
    return logs(cfg, None, lines)
