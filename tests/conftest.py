"""Shared session fixtures: a real control plane, a real RabbitMQ, the LimeTask CRD.

Fixtures (see docs/devcluster.md):

- ``cluster`` (session): ``.kubeconfig``, ``.api_client()``, ``.kubectl(*args, check=True,
  input=None)``, ``.helm(...)``, ``.bin_dir``, ``.env()``, ``.local`` (True for the local
  cluster whose node runs pods as host processes), ``.log_tails()``.
- ``broker`` (session): ``.url`` (amqp://).
- ``crd`` (session): applies crds/limetask.yaml and waits until it is Established.
- ``namespace`` (function): a fresh namespace (its ``default`` ServiceAccount exists),
  deleted afterwards without waiting for it to finish terminating.

By default the local cluster is started once (``devcluster``, the same code as
``scripts/cluster up``, building the binaries on a fresh machine) and left running after
the session so reruns start in a fraction of a second. Environment variables:

- ``LIME_TEST_KUBECONFIG``: use this existing cluster instead (kind, a cloud cluster).
- ``LIME_TEST_BROKER_URL``: use this existing RabbitMQ instead (amqp:// URL).
- ``LIME_TEST_TEARDOWN=1``: stop the local cluster and broker at the end of the session.
- ``LIME_CLUSTER_DIR`` / ``LIME_CACHE``: state directory / binary cache of the local cluster.

Nothing here skips: when something cannot start, the fixture raises and every test that
needs it errors, with the components' log tails in the message.

The bring-up runs in ``pytest_runtestloop`` (before the first test, only if a selected test
uses these fixtures) rather than inside the first test, so that a cold build of the
binaries is not cut short by the per-test timeout.
"""

from __future__ import annotations

import os
import re
import time
import uuid

import pytest

from devcluster import testing
from devcluster.config import REPO_ROOT

CLUSTER_FIXTURES = {"cluster", "crd", "namespace"}
BROKER_FIXTURES = {"broker"}

_started: dict[str, object] = {}


def _bring_up(kind: str):
    """Start once; remember the handle or the exception (raised again by the fixture)."""
    if kind not in _started:
        try:
            _started[kind] = testing.bring_up_cluster() if kind == "cluster" else testing.bring_up_broker()
        except Exception as exc:  # noqa: BLE001 - re-raised, with logs, by the fixture
            _started[kind] = exc
    result = _started[kind]
    if isinstance(result, Exception):
        raise RuntimeError(f"the {kind} could not be started: {result}\n\n{_all_log_tails()}") from result
    return result


def _all_log_tails() -> str:
    from devcluster import cluster as local
    from devcluster.config import ClusterConfig

    if os.environ.get("LIME_TEST_KUBECONFIG") and os.environ.get("LIME_TEST_BROKER_URL"):
        return ""
    return "component log tails:\n" + local.log_tails(ClusterConfig.from_env(), 25)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    names = set()
    for item in session.items:
        names.update(getattr(item, "fixturenames", ()))
    if names & CLUSTER_FIXTURES:
        try:
            _bring_up("cluster")
        except RuntimeError:
            pass  # reported by every test that uses the fixture
    if names & BROKER_FIXTURES:
        try:
            _bring_up("broker")
        except RuntimeError:
            pass


def pytest_sessionfinish(session):
    if os.environ.get("LIME_TEST_TEARDOWN") == "1" and _started:
        testing.tear_down()


@pytest.fixture(scope="session")
def cluster() -> testing.Cluster:
    return _bring_up("cluster")


@pytest.fixture(scope="session")
def broker() -> testing.Broker:
    return _bring_up("broker")


@pytest.fixture(scope="session")
def crd(cluster):
    from lime_task.constants import CRD_NAME

    path = REPO_ROOT / "crds" / "limetask.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"the LimeTask CRD is missing: {path}")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return CRD_NAME


@pytest.fixture
def namespace(cluster, request):
    from kubernetes import client

    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{base}-{uuid.uuid4().hex[:6]}"
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": name, "labels": {"limetask.dev/test": "true"}}})
        # Pods cannot be created before the ServiceAccount controller made "default".
        deadline = time.monotonic() + 60
        while True:
            try:
                core.read_namespaced_service_account("default", name)
                break
            except client.ApiException as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise RuntimeError(f"namespace {name}: no default ServiceAccount after 60s") from exc
                time.sleep(0.2)
        try:
            yield name
        finally:
            core.delete_namespace(name, propagation_policy="Background")


# =====================================================================================
# The operator (section owned by the operator engineer, issue #4)
# =====================================================================================
# ``operator(namespace, **settings)`` starts ``python -m lime_task_operator --namespace
# <ns>`` as a subprocess, restricted to that namespace so tests cannot see each other's
# tasks. ``settings`` are LIME_TASK_OPERATOR_* variables without the prefix
# (``MAX_RUNNING=2``). Defaults suit the local node: a DEFAULT_IMAGE (the node ignores
# images) and EXTRA_ENV with PYTHONPATH pointing at examples/ so the sample tasks import.
# The handle offers stop(), kill() (SIGKILL), restart(), .log and .pid; every process is
# stopped at teardown, and its log is printed (pytest shows it for failed tests).


class OperatorProcess:
    READY_TIMEOUT = 60

    def __init__(self, cluster, namespace: str, env: dict[str, str], log_path):
        self.cluster = cluster
        self.namespace = namespace
        self.env = env
        self.log_path = log_path
        self.proc = None
        self.port = None

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
        import socket
        import subprocess
        import sys
        import urllib.request

        with socket.socket() as probe:  # a free loopback port for the liveness endpoint
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        log = open(self.log_path, "a")
        log.write(f"===== starting operator for namespace {self.namespace}\n")
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lime_task_operator", "--namespace", self.namespace,
             "--liveness", f"http://127.0.0.1:{self.port}/healthz"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT),
        )
        log.close()
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
        import subprocess

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


@pytest.fixture
def operator(cluster, crd, tmp_path):
    started: list[OperatorProcess] = []

    def start(namespace: str, **settings) -> OperatorProcess:
        env = dict(os.environ)
        env.update(cluster.env())
        # Only what the test asks for: no settings leak in from the developer's shell.
        for key in [k for k in env if k.startswith("LIME_TASK_OPERATOR_")]:
            del env[key]
        defaults = {
            "DEFAULT_IMAGE": "lime-task-runner:dev",
            "EXTRA_ENV": '{"PYTHONPATH": "%s"}' % (REPO_ROOT / "examples"),
        }
        for key, value in {**defaults, **settings}.items():
            env[f"LIME_TASK_OPERATOR_{key}"] = str(value)
        handle = OperatorProcess(cluster, namespace, env, tmp_path / f"operator-{len(started)}.log")
        started.append(handle)
        return handle.start()

    yield start
    for handle in started:
        handle.stop()
        print(f"----- operator log ({handle.namespace}) -----\n{handle.log[-20000:]}")
