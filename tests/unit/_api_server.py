"""The HTTP API served for real (uvicorn on a loopback port, in a thread) over an
in-memory backend: the unit tests of the routes, the service and the library's client
mode share it. The backend keeps LimeTask objects as the API server returns them."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Iterator, Optional

import uvicorn

from devcluster.testing import free_loopback_port
from lime_task_api.app import create_app
from lime_task_api.auth import Authenticator, key_digest
from lime_task_api.bodies import RequestProblem
from lime_task_api.service import ListExpired, TaskService
from lime_task_api.settings import parse_settings

NAMESPACE = "apps"
TOKENS = {
    "token-billing": "system:serviceaccount:shop:billing",
    "token-shipping": "system:serviceaccount:shop:shipping",
    "token-both": "system:serviceaccount:shop:ops",
    "token-nobody": "system:serviceaccount:shop:stranger",
}
API_KEY = "ltk_" + "k" * 43
CONFIG = {
    "namespace": NAMESPACE,
    "audiences": ["lime-task-api"],
    "identities": {
        "system:serviceaccount:shop:billing": ["billing"],
        "system:serviceaccount:shop:shipping": ["shipping"],
        "system:serviceaccount:shop:ops": ["billing", "shipping"],
        "apikey:partner": ["billing"],
    },
    "maxWaitSeconds": 5,
    "maxBodyBytes": 64 * 1024,
}


class FakeBackend:
    """lime_task_api.service.Backend in memory. `set_status(name, status)` plays the
    operator; watches see each change (polled every 20 ms)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        # The last state of each removed object: a watch's DELETED event carries it, as
        # the API server's does.
        self.removed: dict[str, dict[str, Any]] = {}
        self.versions = itertools.count(1)
        self.lock = threading.Lock()
        self.expire_continue = False
        self.fail_with: Optional[BaseException] = None

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        with self.lock:
            obj = {**body, "metadata": {**body["metadata"], "uid": str(uuid.uuid4()),
                                        "resourceVersion": str(next(self.versions)),
                                        "creationTimestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}}
            self.objects[obj["metadata"]["name"]] = obj
            return obj

    def put(self, obj: dict[str, Any]) -> None:
        """Store an object as given (e.g. with a label that lies about its app)."""
        with self.lock:
            obj["metadata"].setdefault("uid", str(uuid.uuid4()))
            obj["metadata"]["resourceVersion"] = str(next(self.versions))
            self.objects[obj["metadata"]["name"]] = obj

    def set_status(self, name: str, status: dict[str, Any]) -> None:
        with self.lock:
            obj = self.objects[name]
            obj["status"] = status
            obj["metadata"] = {**obj["metadata"], "resourceVersion": str(next(self.versions))}

    def remove(self, name: str) -> None:
        with self.lock:
            obj = self.objects.pop(name, None)
            if obj is not None:
                self.removed[name] = obj

    def get(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        self._check()
        with self.lock:
            obj = self.objects.get(name)
            return None if obj is None else {**obj}

    def list_page(self, namespace, apps, limit, continue_token):
        self._check()
        if continue_token and self.expire_continue:
            raise ListExpired("the continue token has expired; list again without it")
        with self.lock:
            # The label selector, as the API server applies it.
            names = sorted(n for n, o in self.objects.items()
                           if (o["metadata"].get("labels") or {}).get("limetask.dev/app") in apps)
            if continue_token and not continue_token.isdigit():
                # The API server answers 400 to a token it did not issue; KubeBackend
                # turns that into this RequestProblem.
                raise RequestProblem(400, "BadRequest", "the continue token is not valid", "continue")
            start = int(continue_token or 0)
            page = names[start:start + limit]
            rest = start + limit < len(names)
            return [{**self.objects[n]} for n in page], (str(start + limit) if rest else None)

    def delete(self, namespace: str, name: str, uid: str) -> bool:
        self._check()
        with self.lock:
            obj = self.objects.get(name)
            if obj is None or obj["metadata"]["uid"] != uid:
                return False
            self.removed[name] = self.objects.pop(name)
            return True

    def watch(self, namespace: str, name: str, version: str, seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        self._check()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                obj = self.objects.get(name)
                current = None if obj is None else obj["metadata"]["resourceVersion"]
            if obj is None:
                with self.lock:
                    last = self.removed.get(name) or {"metadata": {"name": name, "resourceVersion": version}}
                yield "DELETED", {**last}
                return
            if current != version:
                version = current
                yield "MODIFIED", {**obj}
            time.sleep(0.02)


class ServedApi:
    """The app on 127.0.0.1:<free port>, started in a daemon thread."""

    def __init__(self, config: Optional[dict[str, Any]] = None) -> None:
        self.settings = parse_settings(config or CONFIG)
        self.backend = FakeBackend()
        self.ids = itertools.count(1)
        self.service = TaskService(self.backend, NAMESPACE, self.settings.max_body_bytes,
                                   self.settings.max_wait_seconds, new_id=lambda: f"task-{next(self.ids)}")
        self.reviews: list[str] = []

        def review(token: str) -> Optional[str]:
            self.reviews.append(token)
            return TOKENS.get(token)

        self.keys = {key_digest(API_KEY): "partner"}
        self.authenticator = Authenticator(review, lambda: dict(self.keys), self.settings.token_cache_seconds,
                                           self.settings.api_key_refresh_seconds)
        self.ready_error: Optional[Exception] = None
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"

        def ready() -> None:
            if self.ready_error is not None:
                raise self.ready_error

        app = create_app(self.settings, self.service, self.authenticator, ready)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> "ServedApi":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
