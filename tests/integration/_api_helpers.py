"""The HTTP API against the real control plane: ServiceAccounts with real bound tokens
(`kubectl create token --audience`), and `python -m lime_task_api` as a subprocess on
a free loopback port, as devcluster.testing.OperatorProcess runs the operator."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from devcluster.config import REPO_ROOT
from devcluster.testing import OperatorProcess, free_loopback_port

AUDIENCE = "lime-task-api"


def service_account_token(cluster, namespace: str, name: str, audience: Optional[str] = AUDIENCE) -> str:
    """A bound token of a (new) ServiceAccount, for `audience` (None: the API server's)."""
    cluster.kubectl("create", "serviceaccount", name, "-n", namespace, check=False)
    args = ["create", "token", name, "-n", namespace, "--duration", "1h"]
    if audience:
        args += ["--audience", audience]
    return cluster.kubectl(*args).stdout.strip()


class ApiProcess:
    """``python -m lime_task_api --config FILE --port P`` with the cluster's kubeconfig.
    ``start()`` returns once /readyz answers 200."""

    READY_TIMEOUT = 60

    def __init__(self, env: Mapping[str, str], config: Mapping[str, Any], work: Path) -> None:
        self.env, self.work = dict(env), work
        self.config_path = work / "api-config.yaml"
        self.config_path.write_text(yaml.safe_dump(dict(config)))
        self.log_path = work / "api.log"
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None

    # The operator process's own reader of `log_path` ("" before the process wrote any).
    log = OperatorProcess.log

    def start(self) -> "ApiProcess":
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lime_task_api", "--config", str(self.config_path), "--port", str(self.port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT),
            )
        deadline = time.monotonic() + self.READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited with code {self.proc.returncode}:\n{self.log[-5000:]}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (OSError, urllib.error.HTTPError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the API was not ready after {self.READY_TIMEOUT}s:\n{self.log[-5000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def call(self, method: str, path: str, body: Any = None, token: Optional[str] = None,
             raw: Optional[bytes] = None, timeout: float = 90) -> tuple[int, Any]:
        """(status, decoded body) of one request."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            text = error.read()
            return error.code, (json.loads(text) if text else None)


def start_api(cluster, namespace: str, identities: Mapping[str, list], tmp_path: Path,
              started: list, **config: Any) -> ApiProcess:
    """Start an API serving `namespace` for `identities`; remembered in `started`."""
    work = tmp_path / f"api-{len(started)}"
    work.mkdir()
    handle = ApiProcess(cluster.env(), {"namespace": namespace, "audiences": [AUDIENCE],
                                        "identities": dict(identities), **config}, work)
    started.append(handle)
    return handle.start()
