"""Pure logic for the volumes the local node mounts: which ones, where, with what files.

kubelet materialises a pod's volumes in per-pod directories and the container runtime
bind-mounts them into the container. The local node does the same with a per-pod
directory on the host and ``mount --bind`` inside the container's private mount
namespace. Supported volume types, because each is a directory of files we can write:

- ``emptyDir``: an empty per-pod directory, mounted read-write (``medium``/``sizeLimit``
  are ignored: it is a plain directory on the node's disk).
- ``secret`` / ``configMap``: the keys (or ``items``) as files, mounted read-only.
- ``downwardAPI``: ``fieldRef`` items as files, mounted read-only.
- ``projected``: any mix of ``serviceAccountToken``, ``configMap``, ``secret`` and
  ``downwardAPI`` sources; this is the ``kube-api-access-*`` volume the ServiceAccount
  admission plugin injects, so pods get their bound token, ``ca.crt`` and ``namespace``.

Everything else (hostPath, persistentVolumeClaim, csi, ephemeral, image, nfs, ...) is
refused with a message naming the volume, but only when a container mounts it: an
unmounted volume cannot change what the process sees. ``subPath`` is supported,
``subPathExpr`` and ``mountPropagation: Bidirectional`` are not; ``resourceFieldRef``
items are not. File modes (``defaultMode``/``mode``) are applied; owners are not (every
process runs as root here).

Nothing here touches the API or the disk: the node agent gives ``render_files`` a
``lookup`` for ConfigMaps/Secrets and writes the result itself.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Callable

from .podspec import ConfigError, UnsupportedPod, field_value

# kubelet's defaults: tokens of projected volumes live 1 h 7 s unless the projection
# says otherwise (the odd 7 s lets the apiserver recognise kubelet's legacy-style
# requests and extend them), files are 0644.
DEFAULT_TOKEN_SECONDS = 3607
DEFAULT_MODE = 0o644
# kubelet refreshes a token at 80% of its lifetime, and at least once a day (a
# 3607-second token may be extended by the apiserver to a year).
REFRESH_FRACTION = 0.8
MAX_TOKEN_AGE = 24 * 3600

SUPPORTED = ("emptyDir", "secret", "configMap", "downwardAPI", "projected")
READ_WRITE = ("emptyDir",)

# (kind, namespace, name) -> {key: bytes} or None when the object does not exist.
RawLookup = Callable[[str, str, str], "dict[str, bytes] | None"]


@dataclass(frozen=True)
class Mount:
    """One bind mount for a container: ``sub_path`` inside the volume's directory onto
    ``target`` in the container's view of the file system."""

    volume: str
    target: str
    read_only: bool
    sub_path: str = ""


@dataclass(frozen=True)
class FileItem:
    path: str  # relative to the volume directory
    data: bytes
    mode: int = DEFAULT_MODE


@dataclass(frozen=True)
class TokenSource:
    """A serviceAccountToken projection: the node requests a bound token and writes it."""

    path: str
    expiration_seconds: int = DEFAULT_TOKEN_SECONDS
    audience: str | None = None
    mode: int = DEFAULT_MODE


def volume_type(volume: dict) -> str:
    """The volume's source type, e.g. ``emptyDir``: the one key besides ``name``."""
    kinds = [k for k in volume if k != "name"]
    if len(kinds) != 1:
        raise UnsupportedPod(f"volume {volume.get('name')!r} must have exactly one source, got {kinds}")
    return kinds[0]


def _check_supported(volume: dict) -> str:
    kind = volume_type(volume)
    if kind not in SUPPORTED:
        raise UnsupportedPod(
            f"volume {volume['name']!r}: type {kind} is not supported by the local node (devcluster); "
            f"supported: {', '.join(SUPPORTED)}")
    return kind


def _by_name(pod: dict) -> dict[str, dict]:
    return {v["name"]: v for v in pod.get("spec", {}).get("volumes") or []}


def mounts_for(pod: dict, container: dict) -> list[Mount]:
    """The container's volume mounts, parents before children (``/a`` before ``/a/b``)
    so that a mount is never hidden by a later one over its parent directory, as
    container runtimes order them."""
    volumes = _by_name(pod)
    mounts = []
    for vm in container.get("volumeMounts") or []:
        name, target = vm["name"], vm["mountPath"]
        where = f"container {container.get('name')!r}: volumeMount {name!r} at {target}"
        if name not in volumes:
            raise UnsupportedPod(f"{where}: the pod has no volume named {name!r}")
        kind = _check_supported(volumes[name])
        if vm.get("subPathExpr"):
            raise UnsupportedPod(f"{where}: subPathExpr is not supported by the local node")
        if vm.get("mountPropagation") == "Bidirectional":
            raise UnsupportedPod(f"{where}: mountPropagation Bidirectional is not supported by the local node")
        if not posixpath.isabs(target):
            raise UnsupportedPod(f"{where}: mountPath must be absolute")
        sub_path = vm.get("subPath") or ""
        if sub_path and (posixpath.isabs(sub_path) or ".." in sub_path.split("/")):
            raise UnsupportedPod(f"{where}: subPath {sub_path!r} must be relative and stay inside the volume")
        read_only = bool(vm.get("readOnly")) or kind not in READ_WRITE
        mounts.append(Mount(name, posixpath.normpath(target), read_only, sub_path))
    return sorted(mounts, key=lambda m: m.target.rstrip("/").count("/"))


def volumes_to_prepare(pod: dict) -> list[dict]:
    """The volumes some container mounts, in spec order. The others are left alone: no
    token is requested for a projection nobody can read."""
    volumes = _by_name(pod)
    used: list[str] = []
    for container in pod.get("spec", {}).get("containers") or []:
        for mount in mounts_for(pod, container):
            if mount.volume not in used:
                used.append(mount.volume)
    return [volumes[name] for name in volumes if name in used]


def _mode(item: dict, default: int) -> int:
    mode = item.get("mode")
    return default if mode is None else int(mode)


def _key_files(kind: str, name: str, source: dict, namespace: str, lookup: RawLookup, default_mode: int,
               where: str) -> list[FileItem]:
    """Files of a Secret or ConfigMap: every key, or only ``items`` (key -> path)."""
    optional = bool(source.get("optional"))
    data = lookup(kind, namespace, name)
    if data is None:
        if optional:
            return []
        raise ConfigError(f'{where}: {kind} "{name}" not found')
    items = source.get("items")
    if not items:
        return [FileItem(key, value, default_mode) for key, value in sorted(data.items())]
    files = []
    for item in items:
        key = item["key"]
        if key not in data:
            if optional:
                continue
            raise ConfigError(f"{where}: couldn't find key {key} in {kind} {namespace}/{name}")
        files.append(FileItem(item["path"], data[key], _mode(item, default_mode)))
    return files


def _downward_files(items: list[dict], pod: dict, default_mode: int, host_ip: str, pod_ip: str,
                    where: str) -> list[FileItem]:
    files = []
    for item in items:
        if "fieldRef" not in item:
            raise UnsupportedPod(f"{where}: downwardAPI item {item.get('path')!r}: only fieldRef is supported "
                                 "by the local node (no resourceFieldRef)")
        value = field_value(pod, item["fieldRef"]["fieldPath"], host_ip, pod_ip)
        files.append(FileItem(item["path"], value.encode(), _mode(item, default_mode)))
    return files


def render_files(volume: dict, pod: dict, lookup: RawLookup, *, host_ip: str = "127.0.0.1",
                 pod_ip: str = "127.0.0.1") -> tuple[list[FileItem], list[TokenSource]]:
    """What to write into the volume's directory: plain files, and the token projections
    the caller fills in through the TokenRequest API. ConfigError when a referenced
    object or key is missing (the pod waits, as with kubelet's FailedMount)."""
    kind = _check_supported(volume)
    namespace = pod.get("metadata", {}).get("namespace", "default")
    where = f"volume {volume['name']!r}"
    source = volume[kind] or {}
    if kind == "emptyDir":
        return [], []
    default_mode = int(source.get("defaultMode", DEFAULT_MODE))
    if kind in ("secret", "configMap"):
        # The Secret volume names its object `secretName`; every other reference says `name`.
        if kind == "secret":
            return _key_files("Secret", source.get("secretName", ""), source, namespace, lookup, default_mode,
                              where), []
        return _key_files("ConfigMap", source.get("name", ""), source, namespace, lookup, default_mode, where), []
    if kind == "downwardAPI":
        return _downward_files(source.get("items") or [], pod, default_mode, host_ip, pod_ip, where), []
    files: list[FileItem] = []
    tokens: list[TokenSource] = []
    for projection in source.get("sources") or []:
        if "serviceAccountToken" in projection:
            sat = projection["serviceAccountToken"]
            tokens.append(TokenSource(sat["path"], int(sat.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS),
                                      sat.get("audience") or None, default_mode))
        elif "configMap" in projection:
            ref = projection["configMap"]
            files += _key_files("ConfigMap", ref.get("name", ""), ref, namespace, lookup, default_mode, where)
        elif "secret" in projection:
            ref = projection["secret"]
            files += _key_files("Secret", ref.get("name", ""), ref, namespace, lookup, default_mode, where)
        elif "downwardAPI" in projection:
            files += _downward_files(projection["downwardAPI"].get("items") or [], pod, default_mode,
                                     host_ip, pod_ip, where)
        else:
            kinds = ", ".join(sorted(projection))
            raise UnsupportedPod(f"{where}: projected source {kinds} is not supported by the local node")
    return files, tokens


def token_request(pod: dict, source: TokenSource) -> dict:
    """The TokenRequest kubelet sends: bound to the pod (name + uid), so the token dies
    with the pod and the Node authorizer lets only the pod's node ask for it."""
    meta = pod["metadata"]
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            # Empty audiences: the apiserver's own (its --api-audiences / issuer).
            "audiences": [source.audience] if source.audience else [],
            "expirationSeconds": source.expiration_seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
        },
    }


def service_account_name(pod: dict) -> str:
    return pod.get("spec", {}).get("serviceAccountName") or "default"


def refresh_delay(lifetime_seconds: float) -> float:
    """Seconds after issue at which kubelet replaces a token: 80% of its lifetime, and
    never later than a day (the apiserver may have extended it far beyond what was asked)."""
    if lifetime_seconds <= 0:
        return 0.0
    return min(lifetime_seconds * REFRESH_FRACTION, MAX_TOKEN_AGE)


# How MOUNT_SCRIPT mounts a source: a volume read-only or read-write, or a host path
# bound back (recursively, as the host sees it) where a volume hid it.
RO, RW, HOST = "ro", "rw", "host"


def _depth(path: str) -> int:
    return path.rstrip("/").count("/")


def _strictly_under(path: str, ancestor: str) -> bool:
    return path != ancestor and path.startswith(ancestor.rstrip("/") + "/")


def shadowed_host_paths(targets: list[str], host_paths: list[str]) -> list[str]:
    """Which of the host paths a pod process needs (its interpreter, the repository, its
    PYTHONPATH...) the volumes mounted at ``targets`` would hide, so that they must be
    bound back after those mounts. Pods here run on the host's file system, so an
    emptyDir on /tmp hides a repository cloned under /tmp, and the process cannot exec.

    A path is hidden when it lies strictly under a mount target. A path that *is* a
    target is left alone: that volume replaces it on purpose. A hidden path is left out
    when an ancestor that is bound back already brings it (no mount target between
    them). Shallow paths come first."""
    targets = [posixpath.normpath(t) for t in targets]
    paths = sorted({posixpath.normpath(p) for p in host_paths if posixpath.isabs(p)}, key=lambda p: (_depth(p), p))
    restored: list[str] = []
    for path in paths:
        covering = [t for t in targets if _strictly_under(path, t)]
        if path in targets or not covering:
            continue
        deepest = max(covering, key=_depth)
        if any(_strictly_under(path, kept) and _strictly_under(kept, deepest) for kept in restored):
            continue
        restored.append(path)
    return restored


def mount_plan(mounts: list[tuple[str, str, bool]], host_paths: list[str]) -> list[tuple[str, str, str]]:
    """The container's volume mounts (``(source, target, read_only)``, from
    ``mounts_for``) and the binds that put back the host paths they hide, as
    ``(source, target, RO|RW|HOST)`` in the order to mount them: by depth, so a host path
    is bound after the volume that hides it and before any volume mounted inside it."""
    ops = [(source, posixpath.normpath(target), RO if read_only else RW) for source, target, read_only in mounts]
    ops += [(path, path, HOST) for path in shadowed_host_paths([t for _, t, _ in mounts], host_paths)]
    return sorted(ops, key=lambda op: _depth(op[1]))


def mount_args(mounts: list[tuple[str, str, str]]) -> list[str]:
    """Arguments for MOUNT_SCRIPT: ``source target ro|rw|host`` triples, then ``--``."""
    args: list[str] = []
    for source, target, mode in mounts:
        if mode not in (RO, RW, HOST):
            raise ValueError(f"mount of {source} on {target}: mode must be {RO}, {RW} or {HOST}, got {mode!r}")
        args += [source, target, mode]
    return [*args, "--"]


# Runs as ``bash -c MOUNT_SCRIPT lime-local-node <workdir> <triples> -- <command...>``
# inside the container's private mount namespace (``unshare --mount --propagation
# private``). Every source is opened first, before anything is mounted: a volume mounted
# over a parent directory of the node's state dir or of a host path the process needs (an
# emptyDir on /tmp, say) would otherwise hide the sources of the mounts after it. ``mount
# -c`` (no canonicalisation) then hands ``/proc/self/fd/N`` to the kernel, which binds
# what the descriptor points at. A missing target is created (a directory for a
# directory, else an empty file), after the earlier mounts, so a nested target lands
# inside the volume mounted above it. Host paths are bound back with --rbind (what the
# host sees under them, mounts included). Read-only volumes are remounted ro only after
# every mount, so mount points inside them can still be created. Then the descriptors are
# closed, the working directory is entered as the container sees it (a workingDir inside
# a volume is the volume's), and `exec` becomes the container's command, keeping the pid:
# it is the container's pid. bash, not sh: descriptors above 9.
MOUNT_SCRIPT = r"""
fail() { echo "lime-local-node: $*" >&2; exit 127; }
workdir=$1; shift
srcs=() dsts=() modes=() fds=()
while [ "$1" != "--" ]; do
  exec {fd}<"$1" || fail "cannot open the mount source $1"
  fds+=("$fd") srcs+=("/proc/self/fd/$fd") dsts+=("$2") modes+=("$3")
  shift 3
done
shift
for i in "${!dsts[@]}"; do
  src=${srcs[i]} dst=${dsts[i]}
  if [ -d "$src" ]; then
    mkdir -p "$dst" || fail "cannot create the mount point $dst"
  elif [ ! -e "$dst" ]; then
    { mkdir -p "$(dirname "$dst")" && : > "$dst"; } || fail "cannot create the mount point $dst"
  fi
  if [ "${modes[i]}" = host ]; then
    mount -c --rbind "$src" "$dst" || fail "cannot bind the host path $dst back over the volume that hides it"
  else
    mount -c --bind "$src" "$dst" || fail "cannot bind-mount onto $dst"
  fi
done
for i in "${!dsts[@]}"; do
  if [ "${modes[i]}" = ro ]; then
    mount -o remount,bind,ro "${dsts[i]}" || fail "cannot make ${dsts[i]} read-only"
  fi
done
for fd in "${fds[@]}"; do exec {fd}<&-; done
{ mkdir -p "$workdir" && cd "$workdir"; } || fail "cannot enter the working directory $workdir"
exec "$@"
"""
