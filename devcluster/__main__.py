"""Command line of the local cluster; ``scripts/cluster`` runs ``python -m devcluster``."""

from __future__ import annotations

import argparse
import sys

from . import cluster
from .config import ClusterConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="build what is missing and start everything (no-op when running)")
    p_up.add_argument("--no-broker", action="store_true", help="do not start RabbitMQ")
    p_up.add_argument("--rabbitmq-management", action="store_true",
                      help="enable the RabbitMQ management plugin (HTTP on 127.0.0.1, port 24675)")
    sub.add_parser("down", help="stop every component (state is kept)")
    sub.add_parser("status", help="show each component; exit 1 unless all are healthy")
    sub.add_parser("env", help="print shell exports: eval \"$(scripts/cluster env)\"")
    p_logs = sub.add_parser("logs", help="print the tail of component logs")
    p_logs.add_argument("components", nargs="*", help="names (default: all)")
    p_logs.add_argument("-n", "--lines", type=int, default=40)
    args = parser.parse_args(argv)

    cfg = ClusterConfig.from_env()
    if args.command == "up":
        if args.rabbitmq_management:
            cfg = ClusterConfig(**{**cfg.__dict__, "rabbit_management": True})
        try:
            for line in cluster.up(cfg, broker=not args.no_broker):
                print(line)
        except Exception as exc:  # noqa: BLE001 - the CLI reports every failure the same way
            print(f"cluster up failed: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "down":
        for line in cluster.down(cfg) or ["nothing was running"]:
            print(line)
        return 0
    if args.command == "status":
        ok, lines = cluster.status(cfg)
        print("\n".join(lines))
        return 0 if ok else 1
    if args.command == "env":
        print(cluster.env_exports(cfg))
        return 0
    if args.command == "logs":
        print(cluster.logs(cfg, args.components, args.lines))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
