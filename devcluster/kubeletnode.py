"""The kubelet node: containerd and kubelet as components of the local cluster, the
images imported into containerd, and a teardown that leaves nothing on the host.

Start order: containerd (its config names the pause image), the images imported with
``ctr -n k8s.io images import``, then kubelet, which registers the Node with its client
certificate (``system:node:<name>``) and serves logs/exec with a certificate for the node
IP signed by the cluster CA.

``teardown`` is ``scripts/cluster down`` for the node: kubelet stops first (so it starts
nothing new), every pod sandbox is stopped and removed through the CRI (which also runs
the CNI DEL and removes the network namespace), containerd stops, and then whatever is
left is removed by what it is, never by a broad name: processes in the node's cgroups,
mounts under the state directory, the bridge, the cgroups, the shim sockets containerd
named in its bundles.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import health, nodeconfig, pki, procs
from .components import Component
from .config import HOST, ClusterConfig
from .nodeconfig import NodePaths

CGROUP_MOUNTS = Path("/sys/fs/cgroup")
SHIM_SOCKET_DIR = Path("/run/containerd/s")
CNI_CACHE = Path("/var/lib/cni/results")
K8S_NAMESPACE = "k8s.io"  # containerd namespace the CRI uses


class NodeError(RuntimeError):
    """The node could not be prepared or torn down; the message says which step."""


def log(msg: str) -> None:
    print(f"[node] {msg}", file=sys.stderr, flush=True)


# -- host facts ----------------------------------------------------------------------------

def node_ip() -> str:
    """The IPv4 address of the interface with the default route.

    The node IP cannot be loopback (the API server refuses it as an InternalIP)."""
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show", "default"], capture_output=True,
                                       text=True, check=True).stdout or "[]")
    if not routes:
        raise NodeError("no default IPv4 route: cannot choose a node IP")
    dev = routes[0]["dev"]
    addrs = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", dev], capture_output=True,
                                      text=True, check=True).stdout)
    for link in addrs:
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                return info["local"]
    raise NodeError(f"interface {dev} has no IPv4 address")


def cgroup_v1_hierarchies(types: tuple[str, ...] = ("cgroup",)) -> list[Path]:
    """Mount points of the cgroup v1 hierarchies (kubelet's cgroupfs driver uses these);
    with ``types=("cgroup", "cgroup2")`` the v2 sub-mount too (runc also creates the
    pod cgroups there, so teardown must look there)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split(" ")[0] in types:
            out.append(Path(left.split(" ")[4]))
    return out


# -- preparing ---------------------------------------------------------------------------

def ensure_cgroup_root(cfg: ClusterConfig) -> None:
    """kubelet refuses a cgroupRoot that does not exist: create it in every hierarchy.
    A new cpuset cgroup starts with no CPUs and no memory nodes; copy its parent's."""
    rel = nodeconfig.cgroup_root(cfg).lstrip("/")
    for hierarchy in cgroup_v1_hierarchies():
        d = hierarchy / rel
        d.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (d / name).exists() and not (d / name).read_text().strip():
                (d / name).write_text((hierarchy / name).read_text())


def ensure_serving_cert(cfg: ClusterConfig, ip: str) -> None:
    pki.ensure_cert(cfg.pki_dir, pki.CertSpec(
        nodeconfig.serving_cert_name(ip), f"system:node:{cfg.node_name}", "system:nodes", server=True,
        dns_names=("localhost", cfg.node_name), ip_addresses=(ip, "127.0.0.1")))


def image_refs_path(cfg: ClusterConfig) -> Path:
    return NodePaths.of(cfg).root / "images.json"


def write_image_refs(cfg: ClusterConfig, refs: dict[str, str]) -> None:
    path = image_refs_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(refs, indent=2, sort_keys=True) + "\n")


def read_image_refs(cfg: ClusterConfig) -> dict[str, str]:
    """{short name: reference} of the images the node was given by the last ``up``."""
    try:
        return json.loads(image_refs_path(cfg).read_text())
    except FileNotFoundError:
        raise NodeError(f"{image_refs_path(cfg)} is missing: run scripts/cluster up") from None


def _prepare_containerd(cfg: ClusterConfig) -> None:
    paths = NodePaths.of(cfg)
    for d in (paths.containerd_root, paths.containerd_state, paths.runc_root, paths.cni_conf_dir,
              paths.cni_ipam_dir):
        d.mkdir(parents=True, exist_ok=True)
    paths.containerd_config.write_text(nodeconfig.containerd_config(
        paths, read_image_refs(cfg)["pause"], cfg.bin_dir / "containerd-shim-runc-v2"))
    (paths.cni_conf_dir / "10-lime.conflist").write_text(json.dumps(nodeconfig.cni_conflist(cfg, paths), indent=2))
    (paths.registry_hosts / "_default").mkdir(parents=True, exist_ok=True)
    (paths.registry_hosts / "_default" / "hosts.toml").write_text(nodeconfig.registry_hosts_toml())
    paths.containerd_socket.unlink(missing_ok=True)


def _prepare_kubelet(cfg: ClusterConfig, ip: str) -> None:
    import yaml

    paths = NodePaths.of(cfg)
    for d in (paths.kubelet_root, paths.pod_logs):
        d.mkdir(parents=True, exist_ok=True)
    ensure_serving_cert(cfg, ip)
    ensure_cgroup_root(cfg)
    import_images(cfg)
    paths.kubelet_config.write_text(yaml.safe_dump(nodeconfig.kubelet_config(cfg, paths, ip)))


def ctr(cfg: ClusterConfig, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(cfg.bin_dir / "ctr"), "--address", str(NodePaths.of(cfg).containerd_socket),
                           "--namespace", K8S_NAMESPACE, *args], capture_output=True, text=True, timeout=timeout)


def import_images(cfg: ClusterConfig) -> list[str]:
    """Import every image of images.json that containerd does not have, and remove our
    images whose archive the cache has pruned (images.prune: superseded for an hour, so
    no test session still names them); the ones imported."""
    from .images import archive_path
    from .imagespec import PREFIX

    have = set(ctr(cfg, "images", "list", "--quiet").stdout.split())
    wanted = set(read_image_refs(cfg).values())
    done = []
    for ref in sorted(wanted - have):
        proc = ctr(cfg, "images", "import", str(archive_path(cfg, ref)))
        if proc.returncode != 0:
            raise NodeError(f"ctr images import {ref} failed: {proc.stderr.strip()}")
        done.append(ref)
    stale = sorted(ref for ref in have - wanted if ref.startswith(PREFIX) and not archive_path(cfg, ref).exists())
    if stale:
        ctr(cfg, "images", "remove", *stale)
    return done


def _containerd_ready(cfg: ClusterConfig) -> bool:
    return NodePaths.of(cfg).containerd_socket.exists() and ctr(cfg, "version", timeout=5).returncode == 0


def components(cfg: ClusterConfig) -> list[Component]:
    """containerd, then kubelet (marker: their config file, unique to this cluster)."""
    paths = NodePaths.of(cfg)
    started = health.utcnow()
    ip_holder: list[str] = []

    def ip() -> str:
        if not ip_holder:
            ip_holder.append(node_ip())
        return ip_holder[0]

    def kubelet_healthy() -> bool:
        return (health.http_ok(f"http://{HOST}:{cfg.kubelet_healthz_port}/healthz")
                and health.node_ready(cfg.apiserver_url, cfg.pki_dir, cfg.node_name))

    containerd = Component(
        name="containerd",
        argv=[str(cfg.bin_dir / "containerd"), "--config", str(paths.containerd_config), "--log-level", "warn"],
        marker=str(paths.containerd_config),
        ready=lambda: _containerd_ready(cfg),
        timeout=30,
        prepare=lambda: _prepare_containerd(cfg),
    )
    kubelet = Component(
        name="kubelet",
        # Its API port is on the node's address, which a loopback bind cannot test.
        ports=[cfg.kubelet_healthz_port],
        argv=[str(cfg.bin_dir / "kubelet"), "--config", str(paths.kubelet_config),
              "--kubeconfig", str(cfg.kubeconfig_for("node")), "--root-dir", str(paths.kubelet_root),
              "--hostname-override", cfg.node_name, "--node-ip", "NODE_IP", "--v", "1"],
        marker=str(paths.kubelet_config),
        ready=kubelet_healthy,
        ready_after_start=lambda: (health.http_ok(f"http://{HOST}:{cfg.kubelet_healthz_port}/healthz")
                                   and health.node_ready(cfg.apiserver_url, cfg.pki_dir, cfg.node_name,
                                                         since=started)),
        timeout=90,
    )

    def prepare_kubelet() -> None:
        kubelet.argv[kubelet.argv.index("NODE_IP")] = ip()
        _prepare_kubelet(cfg, ip())

    kubelet.prepare = prepare_kubelet
    return [containerd, kubelet]


# -- teardown ----------------------------------------------------------------------------

def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first (octal escapes of mountinfo decoded)."""
    prefix = str(root)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split(" ")[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


def _cgroup_dirs(cfg: ClusterConfig) -> list[Path]:
    """Every cgroup of the node, deepest first, over all hierarchies."""
    rel = nodeconfig.cgroup_root(cfg).lstrip("/")
    dirs: list[Path] = []
    for hierarchy in cgroup_v1_hierarchies(("cgroup", "cgroup2")):
        top = hierarchy / rel
        if top.is_dir():
            dirs += [p for p in top.rglob("*") if p.is_dir()] + [top]
    return sorted(dirs, key=lambda p: len(p.parts), reverse=True)


def _pids_in(dirs: list[Path]) -> set[int]:
    pids: set[int] = set()
    for d in dirs:
        try:
            pids.update(int(x) for x in (d / "cgroup.procs").read_text().split())
        except (FileNotFoundError, OSError):
            pass
    return pids


def _shim_sockets(paths: NodePaths) -> list[Path]:
    """The sockets containerd's shims were told to use, from their bundles' bootstrap files."""
    found = []
    # A task bundle is <state>/io.containerd.runtime.v2.task/<namespace>/<id>/: glob that
    # depth only. A recursive walk also enters the bundles' rootfs mounts, which vanish
    # while containers stop (a FileNotFoundError that failed a CI teardown after every
    # test had passed).
    bundles = paths.containerd_state / "io.containerd.runtime.v2.task"
    candidates = [*bundles.glob("*/*/bootstrap.json"), *bundles.glob("*/*/address")]
    for f in candidates:
        try:
            text = f.read_text().strip()
            address = json.loads(text).get("address", "") if f.name == "bootstrap.json" else text
        except (OSError, ValueError):
            continue
        path = address.removeprefix("unix://")
        if path.startswith(str(SHIM_SOCKET_DIR) + "/"):
            found.append(Path(path))
    return found


def teardown(cfg: ClusterConfig) -> list[str]:
    """Stop the node and remove everything it made on the host; what was done."""
    paths = NodePaths.of(cfg)
    if not paths.root.exists():
        return []
    done: list[str] = []
    comps = {c.name: c for c in components(cfg)}
    if procs.stop(comps["kubelet"].pid_file(cfg), comps["kubelet"].marker):
        done.append("kubelet: stopped")
    shim_sockets = _shim_sockets(paths)
    if procs.running_pid(comps["containerd"].pid_file(cfg), comps["containerd"].marker) is not None:
        crictl = [str(cfg.bin_dir / "crictl"), "--runtime-endpoint", f"unix://{paths.containerd_socket}",
                  "--timeout", "30s"]
        pods = subprocess.run([*crictl, "pods", "--quiet"], capture_output=True, text=True, timeout=60).stdout.split()
        if pods:
            subprocess.run([*crictl, "rmp", "--force", *pods], capture_output=True, text=True, timeout=120)
            done.append(f"pod sandboxes removed: {len(pods)}")
        procs.stop(comps["containerd"].pid_file(cfg), comps["containerd"].marker)
        done.append("containerd: stopped")
    # Whatever still runs in the node's cgroups (a shim or container that outlived the
    # CRI calls) is ours by where it runs.
    cgroups = _cgroup_dirs(cfg)
    for _ in range(50):
        pids = _pids_in(cgroups)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    for point in _mounts_under(cfg.state_dir):
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    mounts = _mounts_under(cfg.state_dir)
    if mounts:
        done.append(f"still mounted: {', '.join(mounts[:5])}")
    for d in cgroups:
        try:
            d.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            done.append(f"cgroup {d} not removed: {exc.strerror}")
    bridge = nodeconfig.bridge_name(cfg)
    if subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode == 0:
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True)
        done.append(f"bridge {bridge} removed")
    for sock in shim_sockets:
        sock.unlink(missing_ok=True)
    # libcni caches each attachment under /var/lib/cni/results as <network>-<id>-<ifname>,
    # whatever containerd's settings; ours carry our network's name.
    for cached in CNI_CACHE.glob(f"{nodeconfig.CNI_NETWORK}-*"):
        cached.unlink(missing_ok=True)
    for d in (CNI_CACHE, CNI_CACHE.parent):
        try:
            d.rmdir()  # only when empty
        except OSError:
            pass
    for d in (SHIM_SOCKET_DIR, SHIM_SOCKET_DIR.parent):
        try:
            d.rmdir()  # only when empty: another containerd may use it
        except OSError:
            pass
    # Runtime state: pod sandboxes, network namespaces and IP leases must not survive a
    # down (their processes are gone); images and the kubelet's certificates may.
    import shutil

    for d in (paths.containerd_state, paths.runc_root, paths.cni_ipam_dir, paths.kubelet_root / "pods"):
        shutil.rmtree(d, ignore_errors=True)
    done.append("node: host resources released")
    return done
