"""Pure logic that turns a pod's container spec into a host process: env, argv, PATH.

Works on pods as the API's JSON dicts (camelCase), so it is tested with literal dicts.
Nothing here touches the API or the file system except ``resolve_executable``, which
looks at the PATH directories it is given.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable

# (kind, namespace, name) -> data, or None when the object does not exist. The node agent
# reads ConfigMaps and Secrets (base64-decoded) through it.
Lookup = Callable[[str, str, str], "dict[str, str] | None"]

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_FIELD_KEY = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


class ConfigError(Exception):
    """The container cannot be configured yet (e.g. a referenced ConfigMap is missing).

    Like kubelet's CreateContainerConfigError: the pod stays Pending and is retried.
    """


class UnsupportedPod(Exception):
    """The local node will never be able to run this pod; the pod is failed with this message."""


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined variables are replaced, ``$$`` is a literal
    ``$``, and references to undefined variables are left as written."""

    def repl(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _REF.sub(repl, text)


def field_value(pod: dict, path: str, host_ip: str, pod_ip: str) -> str:
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
    }
    if path in simple:
        return simple[path]
    m = _FIELD_KEY.match(path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    raise UnsupportedPod(f"fieldRef {path!r} is not supported by the local node")


def _key_ref(ref: dict, kind: str, namespace: str, lookup: Lookup | None) -> str | None:
    name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
    data = lookup(kind, namespace, name) if lookup else None
    if data is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{name}" not found')
    if key not in data:
        if optional:
            return None
        raise ConfigError(f'couldn\'t find key {key} in {kind} {namespace}/{name}')
    return data[key]


def kubernetes_service_env(host: str, port: int) -> dict[str, str]:
    """The variables kubelet gives every container for the ``kubernetes`` Service (even
    with ``enableServiceLinks: false``); in-cluster client configuration reads
    ``KUBERNETES_SERVICE_HOST``/``_PORT``. On the local node the Service's cluster IP
    routes nowhere, so they name the apiserver's loopback address instead."""
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": f"tcp://{host}:{port}",
        f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
        f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": str(port),
        f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
    }


def resolve_env(pod: dict, container: dict, *, host_ip: str = "127.0.0.1", pod_ip: str = "127.0.0.1",
                lookup: Lookup | None = None, service_env: dict[str, str] | None = None) -> dict[str, str]:
    """The container's environment as kubelet would build it from the spec: the service
    variables (``service_env``) first, overridden by ``envFrom``, then ``env`` in order,
    each value expanded against what was defined before (service variables included)."""
    namespace = pod.get("metadata", {}).get("namespace", "default")
    env: dict[str, str] = dict(service_env or {})
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            ref = source.get(field)
            if ref is None:
                continue
            data = lookup(kind, namespace, ref.get("name", "")) if lookup else None
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind} "{ref.get("name", "")}" not found')
            env.update({prefix + k: v for k, v in data.items()})
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"], host_ip, pod_ip)
        elif "configMapKeyRef" in source:
            value = _key_ref(source["configMapKeyRef"], "ConfigMap", namespace, lookup)
            if value is not None:
                env[name] = value
        elif "secretKeyRef" in source:
            value = _key_ref(source["secretKeyRef"], "Secret", namespace, lookup)
            if value is not None:
                env[name] = value
        else:
            kinds = ", ".join(sorted(source))
            raise UnsupportedPod(f"env {name}: valueFrom {kinds} is not supported by the local node")
    return env


def process_path(env: dict[str, str], venv_bin: str, node_path: str) -> str:
    """The PATH of a pod process: the container's own PATH if it sets one, else the
    running interpreter's venv first (so `python -m lime_task.runner` is the project's
    Python), then the node's PATH. The image's PATH does not exist here."""
    if "PATH" in env:
        return env["PATH"]
    return os.pathsep.join(p for p in [venv_bin, node_path] if p)


def resolve_executable(name: str, path: str, cwd: str) -> str:
    """Like execvp's lookup, but done up front so a missing command is a clear error."""
    if "/" in name:
        full = name if os.path.isabs(name) else os.path.normpath(os.path.join(cwd, name))
        if os.path.isfile(full) and os.access(full, os.X_OK):
            return full
        raise FileNotFoundError(f'exec: "{name}": no such executable file')
    for d in path.split(os.pathsep):
        full = os.path.join(d or ".", name)
        if os.path.isfile(full) and os.access(full, os.X_OK):
            return full
    raise FileNotFoundError(f'exec: "{name}": executable file not found in $PATH ({path})')


@dataclass(frozen=True)
class ProcessSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: str


def container_argv(container: dict, env: dict[str, str]) -> list[str]:
    """command + args with ``$(VAR)`` expanded. Without a command, kubelet would use the
    image's entrypoint, which the local node never sees: that is refused."""
    command = container.get("command") or []
    if not command:
        raise UnsupportedPod(
            f"container {container.get('name')!r} has no command: the local node does not pull "
            "images, so it cannot use the image's entrypoint; set `command`")
    return [expand(a, env) for a in [*command, *(container.get("args") or [])]]


def check_supported(pod: dict) -> None:
    spec = pod.get("spec", {})
    if spec.get("initContainers"):
        raise UnsupportedPod("initContainers are not supported by the local node (devcluster)")
    if spec.get("ephemeralContainers"):
        raise UnsupportedPod("ephemeralContainers are not supported by the local node (devcluster)")
    if not spec.get("containers"):
        raise UnsupportedPod("the pod has no containers")
