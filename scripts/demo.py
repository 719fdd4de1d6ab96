"""The main job, end to end: one real task through the whole product.

`scripts/demo` runs this after bringing up the local cluster and RabbitMQ. It installs the
Helm chart (the CRD, and the operator as a Deployment with its least-privilege RBAC),
binds a queue to the task events, sends
`sample_tasks.tasks.add` for the application `demo-app`, prints every state the task goes
through and the event that announces its end, and shows `kubectl get limetasks -o wide`.

Exit code 0 only if the task reached SUCCESS with the expected result and its event
arrived; anything else exits 1 with the operator pod's log tail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devcluster.config import ClusterConfig  # noqa: E402

NAMESPACE = "lime-demo"
APP = "demo-app"


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def kubectl(cfg: ClusterConfig, *args: str, check: bool = True) -> str:
    proc = subprocess.run([str(cfg.bin_dir / "kubectl"), "--kubeconfig", str(cfg.admin_kubeconfig), *args],
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


RELEASE = "lime-task"
HEALTH_PORT = 18080  # the operator pod shares the host's network (see install_operator)


def health_port(cfg: ClusterConfig) -> int:
    """HEALTH_PORT moved by the cluster's LIME_CLUSTER_PORT_OFFSET, like every port of the
    local cluster: the demos of two clusters on one host do not collide."""
    return HEALTH_PORT + cfg.apiserver_port - ClusterConfig(cfg.state_dir, cfg.cache_dir).apiserver_port


def node_values(cfg: ClusterConfig) -> dict:
    """The operator from the operator image (never pulled), tasks in the tasks image (the
    runner image plus sample_tasks), the API server at its loopback address for the
    operator's in-cluster configuration."""
    from devcluster.kubeletnode import read_image_refs

    images = read_image_refs(cfg)
    repository, _, tag = images["operator"].rpartition(":")
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        # The API server listens on loopback only and there is no kube-proxy: the
        # operator pod uses the host's network to reach it (docs/devcluster.md).
        "hostNetwork": True,
        "operator": {"defaultImage": images["tasks"], "healthPort": health_port(cfg)},
        # Host network: the metrics port moves with the cluster's ports, like the health port.
        "metrics": {"port": health_port(cfg) + 1010},
        "env": [{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
                {"name": "KUBERNETES_SERVICE_PORT", "value": str(cfg.apiserver_port)}],
    }


def install_operator(cfg: ClusterConfig, broker_url: str, exchange: str) -> None:
    """helm upgrade --install of the chart, watching the demo namespace only.

    The operator runs as a pod of the chart's Deployment with the chart's ServiceAccount
    and RBAC. It runs from the operator image and tasks from the tasks image, both built
    by `scripts/cluster up` and imported into the node's containerd.
    """
    values = {
        "watchNamespaces": [NAMESPACE],
        "broker": {"url": broker_url, "exchange": exchange},
        **node_values(cfg),
    }
    values_file = cfg.state_dir / "demo-values.json"
    values_file.write_text(json.dumps(values))
    helm = subprocess.run(
        [str(cfg.bin_dir / "helm"), "upgrade", "--install", RELEASE, str(ROOT / "charts" / "lime-task"),
         "--namespace", NAMESPACE, "--create-namespace", "--kubeconfig", str(cfg.admin_kubeconfig),
         "-f", str(values_file), "--timeout", "180s"],
        capture_output=True, text=True, timeout=240)
    if helm.returncode != 0:
        raise SystemExit(f"helm install failed: {helm.stderr.strip()}")
    kubectl(cfg, "rollout", "status", f"deployment/{RELEASE}", "-n", NAMESPACE, "--timeout=180s")
    print(kubectl(cfg, "get", "deployment,serviceaccount,role,rolebinding", "-n", NAMESPACE,
                  "-l", f"app.kubernetes.io/instance={RELEASE}"))


def main() -> int:
    cfg = ClusterConfig.from_env()
    broker_url = cfg.broker_url
    os.environ["KUBECONFIG"] = str(cfg.admin_kubeconfig)
    os.environ["LIME_TASK_NAMESPACE"] = NAMESPACE

    exchange = "lime_task"
    say(f"installing the chart (CRD, operator Deployment, RBAC) into namespace {NAMESPACE}")
    install_operator(cfg, broker_url, exchange)

    from lime_task.events import EventConsumer

    # Bind the queue before the task is sent, so its event cannot be missed.
    with EventConsumer(["core.task.#"], url=broker_url, exchange=exchange) as consumer:
        code = run_task(cfg, consumer)
    if code:
        print(kubectl(cfg, "logs", "-n", NAMESPACE, f"deployment/{RELEASE}", "--tail=100", check=False),
              file=sys.stderr)
    return code


def run_task(cfg: ClusterConfig, consumer) -> int:
    from lime_task import send_task
    from lime_task.constants import LABEL_TASK_ID

    status = send_task("sample_tasks.tasks.add", APP, 2, 3)
    say(f"sent sample_tasks.tasks.add(2, 3) for {APP}: id {status.id}")
    print(f"    {status.status}", flush=True)
    status.wait(timeout=120, on_change=lambda s: print(f"    {s.status}", flush=True))
    print(f"    result: {json.dumps(status.result)}")
    if status.error:
        print(f"    error: {status.error}")

    events = []
    deadline = time.monotonic() + 60
    while not events and time.monotonic() < deadline:
        consumer.run(lambda e: events.append(e) if e.task_id == status.id else None, max_messages=1, timeout=5)
    event = events[0] if events else None
    if event is not None:
        say(f"event {event.routing_key} (message id {event.message_id})")
        print(json.dumps(event.body, indent=2, sort_keys=True))

    say("the task's pod: its image and container")
    print(kubectl(cfg, "get", "pods", "-n", NAMESPACE, "-l", f"{LABEL_TASK_ID}={status.id}", "-o",
                  "custom-columns=POD:.metadata.name,NODE:.spec.nodeName,IMAGE:.spec.containers[0].image,"
                  "CONTAINER:.status.containerStatuses[0].containerID,UID:.spec.securityContext.runAsUser",
                  check=False))

    say("kubectl get limetasks -o wide")
    print(kubectl(cfg, "get", "limetasks", "-n", NAMESPACE, "-o", "wide"))

    ok = status.status == "SUCCESS" and event is not None and event.task_id == status.id
    if not ok:
        print(f"demo FAILED: state {status.status}, event {'received' if event else 'missing'}", file=sys.stderr)
        return 1
    say("demo finished: the task ran as a Kubernetes Job and its event went out")
    print(f"""
The operator keeps running in namespace {NAMESPACE}. Try:
  eval "$(scripts/cluster env)"; export LIME_TASK_NAMESPACE={NAMESPACE}
  .venv/bin/lime-task send sample_tasks.tasks.hello --app {APP} world --wait
  kubectl get limetasks -n {NAMESPACE}""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
