"""The main job, end to end: one real task through the whole product.

`scripts/demo` runs this after bringing up the local cluster and RabbitMQ. It installs the
CRD, starts the operator, binds a queue to the task events, sends
`sample_tasks.tasks.add` for the application `demo-app`, prints every state the task goes
through and the event that announces its end, and shows `kubectl get limetasks -o wide`.

Exit code 0 only if the task reached SUCCESS with the expected result and its event
arrived; anything else exits 1 with the operator's log tail.
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

from devcluster import cluster as local  # noqa: E402
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


def start_operator(cfg: ClusterConfig, broker_url: str, exchange: str, log_path: Path) -> subprocess.Popen:
    env = dict(
        os.environ,
        KUBECONFIG=str(cfg.admin_kubeconfig),
        LIME_TASK_OPERATOR_BROKER_URL=broker_url,
        LIME_TASK_OPERATOR_EXCHANGE=exchange,
        # The local node runs task pods as host processes with the project's Python:
        # the image is not used, and the sample tasks are found through PYTHONPATH.
        LIME_TASK_OPERATOR_DEFAULT_IMAGE="lime-task-runner:dev",
        LIME_TASK_OPERATOR_EXTRA_ENV=json.dumps({"PYTHONPATH": str(ROOT / "examples")}),
    )
    log = log_path.open("w")
    return subprocess.Popen([sys.executable, "-m", "lime_task_operator", "--namespace", NAMESPACE],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def main() -> int:
    cfg = ClusterConfig.from_env()
    broker_url = cfg.broker_url
    os.environ["KUBECONFIG"] = str(cfg.admin_kubeconfig)
    os.environ["LIME_TASK_NAMESPACE"] = NAMESPACE

    say("installing the LimeTask CRD")
    kubectl(cfg, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds" / "limetask.yaml"))
    kubectl(cfg, "wait", "--for=condition=Established", "--timeout=60s", "crd/limetasks.limetask.dev")
    kubectl(cfg, "create", "namespace", NAMESPACE, check=False)

    exchange = "lime_task"
    from lime_task.events import EventConsumer

    # Bind the queue before the task is sent, so its event cannot be missed.
    consumer = EventConsumer(["core.task.#"], url=broker_url, exchange=exchange)
    consumer.open()

    log_path = cfg.state_dir / "demo-operator.log"
    say(f"starting the operator (log: {log_path})")
    operator = start_operator(cfg, broker_url, exchange, log_path)
    try:
        return run_task(cfg, consumer, operator, log_path)
    finally:
        consumer.close()
        operator.terminate()
        try:
            operator.wait(timeout=15)
        except subprocess.TimeoutExpired:
            operator.kill()


def run_task(cfg, consumer, operator, log_path: Path) -> int:
    from lime_task import send_task

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

    say("kubectl get limetasks -o wide")
    print(kubectl(cfg, "get", "limetasks", "-n", NAMESPACE, "-o", "wide"))

    ok = status.status == "SUCCESS" and event is not None and event.task_id == status.id
    if not ok:
        print(f"demo FAILED: state {status.status}, event {'received' if event else 'missing'}", file=sys.stderr)
        print(log_path.read_text()[-4000:], file=sys.stderr)
        return 1
    say("demo finished: the task ran as a Kubernetes Job and its event went out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
