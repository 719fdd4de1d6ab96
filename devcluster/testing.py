"""Handles the test fixtures hand out (``cluster``, ``broker``), and their bring-up.

``tests/conftest.py`` stays a thin list of fixtures; the logic is here so it can be used
from other test suites or a REPL too. Bring-up either starts the local cluster (the same
code as ``scripts/cluster up``) or wraps an existing one given by LIME_TEST_KUBECONFIG /
LIME_TEST_BROKER_URL. Failures raise ``ClusterError`` with component log tails: a test
that needs the cluster errors, it never skips.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import cluster as local
from .config import ClusterConfig


@dataclass
class Cluster:
    kubeconfig: Path
    bin_dir: Path
    # True for the cluster started here (host-process node, logs in the state dir).
    local: bool
    cfg: ClusterConfig | None = None

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
        local.ensure_binaries(cfg)  # kubectl and helm for the tests
        return Cluster(kubeconfig=path.resolve(), bin_dir=cfg.bin_dir, local=False)
    local.up(cfg, control_plane=True, broker=False)
    return Cluster(kubeconfig=cfg.admin_kubeconfig, bin_dir=cfg.bin_dir, local=True, cfg=cfg)


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
