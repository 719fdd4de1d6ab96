"""`python -m lime_task_operator` and `lime-task operator`: run the operator in-process."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from .settings import SettingsError, load_settings

# See main(): above the API server's JSON nesting limit (10,000) plus the watch envelope.
RECURSION_LIMIT = 10_100 + 1_000


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lime-task operator",
        description="Run the Lime Task operator: one Kubernetes Job per LimeTask.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="watch this namespace (repeatable; default: "
                            "LIME_TASK_OPERATOR_NAMESPACES, else the whole cluster)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch the whole cluster, whatever LIME_TASK_OPERATOR_NAMESPACES says")
    parser.add_argument("--liveness", metavar="URL",
                        help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        config = load_settings()
    except SettingsError as error:
        print(f"lime-task operator: {error}", file=sys.stderr)
        return 2
    namespaces = [] if args.all_namespaces else (args.namespace or list(config.namespaces))

    import kopf

    from . import handlers  # noqa: F401 - registers the handlers

    # The API server accepts JSON nested up to 10,000 levels (Go's encoding/json limit,
    # measured: 9,990 levels of args are stored, 10,050 refused). Python's JSON decoder
    # counts each level against the recursion limit (1,000 by default), so with the
    # default a single such LimeTask made every list of its namespace fail. Above that
    # depth, any body the API server returns can be parsed (on the loop's thread: see
    # informer.py for the stack it needs). Such a task then ends as InvalidTask.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))

    kopf.configure(verbose=args.verbose, quiet=args.quiet)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    # pika logs several ERROR lines for every failed connection attempt; the publisher
    # already logs one warning with the reason (BrokerUnreachable, BrokerAuthFailed...).
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    if not args.verbose:
        # kopf logs every handler call ("Handler 'task_event' succeeded"): our handlers
        # only nudge the reconciler, whose own log says what happened.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # The health endpoint answers 500 while the operator cannot serve (handlers.probe);
    # kopf logs the probe's reason, aiohttp would add a traceback for every request.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=True,
        liveness_endpoint=args.liveness,
        memo=kopf.Memo(config=config, namespaces=namespaces),
    )
    return 0
