"""Helpers for the operator's integration tests: create LimeTasks, wait for states.

Waiting is polling with a bound (the test fails with the last seen object when the
bound passes); nothing here measures speed.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable, Optional

from kubernetes import client

from lime_task.constants import GROUP, LABEL_TASK_ID, PLURAL, VERSION


class Api:
    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    def create(self, task: str, *args: Any, app: str = "demo", name: Optional[str] = None,
               kwargs: Optional[dict] = None, **spec: Any) -> str:
        name = name or f"t-{uuid.uuid4().hex[:12]}"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "LimeTask",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"task": task, "app": app, "args": list(args), "kwargs": kwargs or {}, **spec},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
        return name

    def get(self, name: str) -> Optional[dict]:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def tasks(self) -> list[dict]:
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)["items"]

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def jobs(self, task_name: Optional[str] = None) -> list:
        selector = f"{LABEL_TASK_ID}={task_name}" if task_name else LABEL_TASK_ID
        return self.batch.list_namespaced_job(self.namespace, label_selector=selector).items

    def pods(self, task_name: str) -> list:
        return self.core.list_namespaced_pod(self.namespace, label_selector=f"{LABEL_TASK_ID}={task_name}").items

    def events(self, name: str) -> list:
        return [e for e in self.core.list_namespaced_event(self.namespace).items
                if e.involved_object.kind == "LimeTask" and e.involved_object.name == name]

    def wait(self, name: str, predicate: Callable[[Optional[dict]], bool], timeout: float = 90,
             what: str = "condition") -> Optional[dict]:
        deadline = time.monotonic() + timeout
        obj = None
        while time.monotonic() < deadline:
            obj = self.get(name)
            if predicate(obj):
                return obj
            time.sleep(0.2)
        raise AssertionError(f"task {name}: no {what} after {timeout}s; last seen:\n"
                             f"{json.dumps(obj, indent=1, default=str)[-4000:]}")

    def wait_state(self, name: str, *states: str, timeout: float = 90) -> dict:
        return self.wait(name, lambda o: bool(o) and state(o) in states, timeout, f"state {states}")

    def wait_gone(self, name: str, timeout: float = 90) -> None:
        self.wait(name, lambda o: o is None, timeout, "deletion")


def state(obj: Optional[dict]) -> Optional[str]:
    return ((obj or {}).get("status") or {}).get("state")


def condition(obj: dict, type_: str) -> dict:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == type_:
            return item
    raise AssertionError(f"no {type_} condition in {obj.get('status')}")


def confirmed(obj: Optional[dict]) -> bool:
    """Whether the broker confirmed the task's event (status.event.confirmedAt is set)."""
    return bool(obj) and bool(((obj.get("status") or {}).get("event") or {}).get("confirmedAt"))


def wait_for(probe: Callable[[], Any], what: str, timeout: float = 90.0, interval: float = 0.2) -> Any:
    """Poll `probe()` until it returns a truthy value, and return that value; after
    `timeout` seconds AssertionError naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def drain(url: str, queue: str) -> list[tuple[str, Any, Any]]:
    """Every message now in `queue` on the broker at `url`, removed from it, oldest first:
    (routing key, JSON body, pika BasicProperties) each."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        messages = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return messages
            messages.append((method.routing_key, json.loads(body), properties))
    finally:
        connection.close()


def running_containers(api: Api, name: str) -> list[str]:
    """The task's containers that run right now (``<pod>/<container>``), as kubelet reports
    them in the pods' status: what "the task's process is up" means on any cluster."""
    return [f"{pod.metadata.name}/{cs.name}" for pod in api.pods(name)
            for cs in (pod.status.container_statuses or []) if cs.state and cs.state.running]
