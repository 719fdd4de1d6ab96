"""RabbitMQ from Debian's ``rabbitmq-server`` package, run as our own loopback-only node.

Our node does not share anything with a system instance: its own epmd port, AMQP port,
distribution port, Mnesia and log directories and Erlang cookie (HOME) under the state
directory. We start epmd ourselves (foreground, with a pid file) rather than letting
Erlang daemonise one, so ``down`` can stop it like every other component.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from . import health
from .components import Component
from .config import HOST, ClusterConfig

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
PACKAGE = "rabbitmq-server"


class RabbitError(RuntimeError):
    pass


def ensure_installed() -> None:
    """apt-get install the package if missing (apt-get update first only when needed)."""
    if SERVER.exists() and shutil.which("epmd"):
        return
    if os.geteuid() != 0:
        raise RabbitError(f"{PACKAGE} is not installed and this is not root: run `apt-get install {PACKAGE}`")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not SERVER.exists():
        raise RabbitError(f"could not install {PACKAGE}: {proc.stderr.strip()[-2000:]}")


def rabbit_dir(cfg: ClusterConfig) -> Path:
    return cfg.state_dir / "rabbitmq"


def rabbit_env(cfg: ClusterConfig) -> dict[str, str]:
    d = rabbit_dir(cfg)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
    env.update({
        "HOME": str(d),  # the Erlang cookie lives in $HOME
        "RABBITMQ_NODENAME": "rabbit@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": HOST,
        "RABBITMQ_NODE_PORT": str(cfg.amqp_port),
        "RABBITMQ_DIST_PORT": str(cfg.rabbit_dist_port),
        "ERL_EPMD_ADDRESS": HOST,
        "ERL_EPMD_PORT": str(cfg.epmd_port),
        "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
        "RABBITMQ_LOG_BASE": str(d / "log"),
        "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
        "RABBITMQ_LOGS": "-",  # to stdout, i.e. our component log file
        # Keep the Erlang distribution listener (used by rabbitmqctl) on loopback too.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    })
    return env


def config_text(cfg: ClusterConfig) -> str:
    lines = [
        f"listeners.tcp.default = {HOST}:{cfg.amqp_port}",
        # guest/guest is only accepted from loopback, which is all we listen on.
        "loopback_users.guest = true",
        "log.console = true",
        "log.file = false",
    ]
    if cfg.rabbit_management:
        lines.append(f"management.tcp.ip = {HOST}")
        lines.append(f"management.tcp.port = {cfg.rabbit_management_port}")
    return "\n".join(lines) + "\n"


def amqp_ready(cfg: ClusterConfig) -> bool:
    import pika  # lazy: only the broker probe needs it

    params = pika.URLParameters(cfg.broker_url)
    params.socket_timeout = 2
    params.blocked_connection_timeout = 2
    params.connection_attempts = 1
    conn = pika.BlockingConnection(params)
    conn.close()
    return True


def components(cfg: ClusterConfig) -> list[Component]:
    d = rabbit_dir(cfg)
    env = rabbit_env(cfg)

    def prepare_rabbit() -> None:
        for sub in ("mnesia", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "rabbitmq.conf").write_text(config_text(cfg))
        plugins = "[rabbitmq_management]." if cfg.rabbit_management else "[]."
        (d / "enabled_plugins").write_text(plugins + "\n")

    return [
        Component(
            name="epmd",
            argv=["epmd", "-address", HOST, "-port", str(cfg.epmd_port)],
            marker="epmd",
            ready=lambda: health.tcp_open(HOST, cfg.epmd_port),
            timeout=15,
            env=env,
            ports=[cfg.epmd_port],
        ),
        Component(
            name="rabbitmq",
            argv=[str(SERVER)],
            marker="rabbitmq-server",
            ready=lambda: amqp_ready(cfg),
            timeout=90,
            env=env,
            prepare=prepare_rabbit,
            ports=[cfg.amqp_port, cfg.rabbit_dist_port] + ([cfg.rabbit_management_port] if cfg.rabbit_management else []),
            extra_logs=[d / "log" / "rabbit@localhost.log"],
        ),
    ]
