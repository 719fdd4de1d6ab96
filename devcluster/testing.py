"""Handles the test fixtures hand out (``cluster``, ``broker``), and their bring-up;
also what the tests and the benchmarks both need: the CRD, ready namespaces, free
loopback ports and operator processes.

``tests/conftest.py`` stays a thin list of fixtures; the logic is here so it can be used
from other test suites or a REPL too. Bring-up either starts the local cluster (the same
code as ``scripts/cluster up``) or wraps an existing one given by LIME_TEST_KUBECONFIG /
LIME_TEST_BROKER_URL. Failures raise ``ClusterError`` with component log tails: a test
that needs the cluster errors, it never skips.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import json
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from . import cluster as local
from . import health
from .config import REPO_ROOT, ClusterConfig, ephemeral_port_range

OPERATOR_ENV_PREFIX = "LIME_TASK_OPERATOR_"


@dataclass
class Cluster:
    kubeconfig: Path
    bin_dir: Path
    # True for the cluster started here (logs in the state dir).
    local: bool
    cfg: ClusterConfig | None = None
    # Short name ("runner", "operator", "tasks", ...) -> image reference on the node.
    images: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig),
                    PATH=f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")

    def api_client(self):
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def _run(self, tool: str, args: tuple[str, ...], check: bool, input: str | None,
             timeout: float) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.bin_dir / tool), *args], env=self.env(), input=input,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return proc

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
        return self._run("kubectl", args, check, input, timeout)

    def helm(self, *args: str, check: bool = True, input: str | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
        return self._run("helm", args, check, input, timeout)

    def log_tails(self, lines: int = 30) -> str:
        return local.log_tails(self.cfg, lines) if self.cfg else "(external cluster: no local logs)"

    def operator_chart_values(self) -> dict:
        """Helm values that run the chart's operator and its task pods on this cluster's node:
        the operator image (never pulled) and the tasks image as default. On the local
        cluster the API server listens on loopback only, so the operator's in-cluster
        config is pointed there and the operator pod runs in the host's network. Merge a test's own values over
        these with ``merge_values``.
        """
        # The local cluster's operator pods share the host's network (hostNetwork, where
        # the scheduler also treats their container ports as host ports): every listening
        # port must be one nobody else uses.
        ports = ({"operator": {"healthPort": free_loopback_port()}, "metrics": {"port": free_loopback_port()}}
                 if self.local else {})
        repository, _, tag = self.images["operator"].rpartition(":")
        values: dict = {"image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
                        "operator": {"defaultImage": self.images["tasks"]}}
        if self.local:
            # Pods on the pod network cannot reach the API server (loopback only, no
            # kube-proxy): the operator pod runs in the host's network.
            values["hostNetwork"] = True
            values["env"] = [{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
                             {"name": "KUBERNETES_SERVICE_PORT", "value": str(self.cfg.apiserver_port)}]
        return merge_values(ports, values)

    def apply_crd(self) -> str:
        """Apply the CRDs in crds/ (LimeTask and LimeTaskSchedule, as a user installs them)
        and wait until they are Established; the LimeTask CRD's name."""
        from lime_task.constants import CRD_NAME

        paths = sorted((REPO_ROOT / "crds").glob("*.yaml"))
        if not any(p.name == "limetask.yaml" for p in paths):
            raise FileNotFoundError(f"the LimeTask CRD is missing: {REPO_ROOT / 'crds' / 'limetask.yaml'}")
        for path in paths:
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        for path in paths:
            self.kubectl("wait", "--for=condition=Established", "-f", str(path), "--timeout=60s")
        return CRD_NAME


@dataclass
class Broker:
    url: str
    local: bool


def bring_up_cluster(environ: dict[str, str] | None = None) -> Cluster:
    env = os.environ if environ is None else environ
    cfg = ClusterConfig.from_env(env)
    external = env.get("LIME_TEST_KUBECONFIG")
    if external:
        path = Path(external).expanduser()
        if not path.is_file():
            raise local.ClusterError(f"LIME_TEST_KUBECONFIG={external}: no such file")
        local.ensure_binaries(ClusterConfig(cfg.state_dir, cfg.cache_dir))  # kubectl and helm for the tests
        return Cluster(kubeconfig=path.resolve(), bin_dir=cfg.bin_dir, local=False,
                       images=external_images(env.get("LIME_TEST_IMAGES", "")))
    local.up(cfg, control_plane=True, broker=False)
    from .kubeletnode import read_image_refs

    return Cluster(kubeconfig=cfg.admin_kubeconfig, bin_dir=cfg.bin_dir, local=True, cfg=cfg,
                   images=read_image_refs(cfg))


REQUIRED_IMAGES = ("runner", "operator", "tasks")


def merge_values(base: dict, override: dict) -> dict:
    """Helm-style values merge: dicts recursively, lists concatenated (``env`` entries of
    both), anything else from ``override``. Returns a new dict."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_values(out[key], value)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = out[key] + value
        else:
            out[key] = value
    return out


def external_images(value: str) -> dict[str, str]:
    """LIME_TEST_IMAGES for an external cluster: a JSON object naming the images loaded
    there, at least ``runner``, ``operator`` and ``tasks`` (docker/Dockerfile.*).

    Raises ClusterError naming what is wrong (a test run must not start without them)."""
    try:
        images = json.loads(value) if value else None
    except ValueError as exc:
        raise local.ClusterError(f"LIME_TEST_IMAGES is not JSON: {exc}") from None
    if not isinstance(images, dict) or not all(isinstance(v, str) and v for v in images.values()):
        raise local.ClusterError("LIME_TEST_IMAGES must be a JSON object of image references, e.g. "
                                 '{"runner": "lime-task-runner:dev", "operator": ..., "tasks": ...}')
    missing = [name for name in REQUIRED_IMAGES if name not in images]
    if missing:
        raise local.ClusterError(f"LIME_TEST_IMAGES lacks {', '.join(missing)}")
    return images


def bring_up_broker(environ: dict[str, str] | None = None) -> Broker:
    env = os.environ if environ is None else environ
    external = env.get("LIME_TEST_BROKER_URL")
    if external:
        if not external.startswith(("amqp://", "amqps://")):
            raise local.ClusterError(f"LIME_TEST_BROKER_URL must be an amqp:// or amqps:// URL, got {external!r}")
        return Broker(url=external, local=False)
    cfg = ClusterConfig.from_env(env)
    local.up(cfg, control_plane=False, broker=True)
    return Broker(url=cfg.broker_url, local=True)


def tear_down(environ: dict[str, str] | None = None) -> None:
    local.down(ClusterConfig.from_env(environ))


# Ports handed to the processes tests start (operators' health and metrics endpoints) come
# from just below the kernel's ephemeral range, above the local cluster's own ports (24672
# and up by LIME_CLUSTER_PORT_OFFSET): a port from the ephemeral range itself (bind to 0)
# may be taken as the local end of an outgoing connection between the probe and the
# process's own bind, and the process then fails to listen.
TEST_PORT_BAND_START = 28000
_handed_out: set[int] = set()


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing holds right now, below the ephemeral range and
    not handed out before by this process (two calls before either port is bound never
    give the same one). Raises ClusterError when the band is full."""
    first_ephemeral, _ = ephemeral_port_range()
    band = [p for p in range(TEST_PORT_BAND_START, first_ephemeral) if p not in _handed_out]
    if not band:  # every port handed out once: start over, the earliest users are long gone
        _handed_out.clear()
        band = list(range(TEST_PORT_BAND_START, first_ephemeral))
    for port in random.sample(band, min(len(band), 200)):
        if health.port_free("127.0.0.1", port):
            _handed_out.add(port)
            return port
    raise local.ClusterError(f"no free loopback port in {TEST_PORT_BAND_START}-{first_ephemeral - 1}")


def create_namespace(core, name: str, labels: Mapping[str, str], timeout: float = 60) -> None:
    """Create a namespace and return once its ``default`` ServiceAccount exists: the API
    server refuses pods before the ServiceAccount controller made it."""
    from kubernetes import client

    core.create_namespace({"metadata": {"name": name, "labels": dict(labels)}})
    deadline = time.monotonic() + timeout
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            return
        except client.ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise RuntimeError(f"namespace {name}: no default ServiceAccount after {timeout:.0f}s") from exc
            time.sleep(0.2)


def operator_env(base: Mapping[str, str], images: Mapping[str, str], **settings: object) -> dict[str, str]:
    """The environment of an operator process: `base` without any LIME_TASK_OPERATOR_*
    variable (no settings leak in from a developer's shell), the default image
    ``images["tasks"]`` (it has the sample and test task packages), then `settings`
    (names without the prefix)."""
    env = {k: v for k, v in base.items() if not k.startswith(OPERATOR_ENV_PREFIX)}
    for key, value in {"DEFAULT_IMAGE": images["tasks"], **settings}.items():
        env[OPERATOR_ENV_PREFIX + key] = str(value)
    return env


class OperatorProcess:
    """``python -m lime_task_operator --namespace NS`` as a subprocess, as in production.

    ``start()`` returns once its liveness endpoint answers and it logged its start-up;
    ``stop()`` (SIGTERM), ``kill()`` (SIGKILL), ``restart()``; ``.log`` and ``.pid``.
    """

    READY_TIMEOUT = 60

    def __init__(self, namespace: str, env: dict[str, str], log_path: Path) -> None:
        self.namespace = namespace
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> "OperatorProcess":
        self.port = free_loopback_port()  # for the liveness endpoint
        log = open(self.log_path, "a")
        log.write(f"===== starting operator for namespace {self.namespace}\n")
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lime_task_operator", "--namespace", self.namespace,
             "--liveness", f"http://127.0.0.1:{self.port}/healthz"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT),
        )
        log.close()  # the child holds its own descriptor
        deadline = time.monotonic() + self.READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the operator exited with code {self.proc.returncode}:\n{self.log[-5000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
                    if response.status == 200 and "lime-task operator started" in self.log:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the operator was not ready after {self.READY_TIMEOUT}s:\n{self.log[-5000:]}")
            time.sleep(0.2)

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as when a node dies."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> "OperatorProcess":
        self.stop()
        return self.start()
