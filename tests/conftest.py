"""Shared session fixtures: a real control plane, a real RabbitMQ, the LimeTask CRD.

Fixtures (see docs/devcluster.md):

- ``cluster`` (session): ``.kubeconfig``, ``.api_client()``, ``.kubectl(*args, check=True,
  input=None)``, ``.helm(...)``, ``.bin_dir``, ``.env()``, ``.local`` (True for the local
  cluster), ``.images`` (short name -> image reference on the node: ``runner``,
  ``operator``, ``tasks``), ``.log_tails()``.
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
- ``LIME_TEST_IMAGES``: with ``LIME_TEST_KUBECONFIG``, the images loaded there (JSON).

Nothing here skips: when something cannot start, the fixture raises and every test that
needs it errors, with the components' log tails in the message.

The bring-up runs in ``pytest_runtestloop`` (before the first test, only if a selected test
uses these fixtures) rather than inside the first test, so that a cold build of the
binaries is not cut short by the per-test timeout.
"""

from __future__ import annotations

import os
import re
import uuid

import pytest

from devcluster import testing

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
    return cluster.apply_crd()


@pytest.fixture
def namespace(cluster, request):
    from kubernetes import client

    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{base}-{uuid.uuid4().hex[:6]}"
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        testing.create_namespace(core, name, {"limetask.dev/test": "true"})
        try:
            yield name
        finally:
            core.delete_namespace(name, propagation_policy="Background")


# =====================================================================================
# The operator (section owned by the operator engineer, issue #4)
# =====================================================================================
# ``operator(namespace, **settings)`` starts ``python -m lime_task_operator --namespace
# <ns>`` as a subprocess (devcluster.testing.OperatorProcess), restricted to that
# namespace so tests cannot see each other's tasks. ``settings`` are LIME_TASK_OPERATOR_*
# variables without the prefix (``MAX_RUNNING=2``), over the local node's defaults
# (devcluster.testing.operator_env). The handle offers stop(), kill() (SIGKILL),
# restart(), .log and .pid; every process is stopped at teardown, and its log is printed
# (pytest shows it for failed tests).


@pytest.fixture
def operator(cluster, crd, tmp_path):
    started: list[testing.OperatorProcess] = []

    def start(namespace: str, **settings) -> testing.OperatorProcess:
        env = testing.operator_env(cluster.env(), cluster.images, **settings)
        handle = testing.OperatorProcess(namespace, env, tmp_path / f"operator-{len(started)}.log")
        started.append(handle)
        return handle.start()

    yield start
    for handle in started:
        handle.stop()
        print(f"----- operator log ({handle.namespace}) -----\n{handle.log[-20000:]}")
