"""`lime-task-api` (also `lime-task api`, `python -m lime_task_api`): serve the HTTP API.

    lime-task-api --config /etc/lime-task-api/config.yaml --host 0.0.0.0 --port 8080
    lime-task-api openapi                  # print the OpenAPI document
    lime-task-api new-key partner-x        # a new API key and the Secret that holds its hash

Exit codes: 0 stopped, 2 bad command line or configuration (the message names the key).
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Optional, Sequence

import yaml

PROG = "lime-task-api"
ENV_CONFIG = "LIME_TASK_API_CONFIG"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="The Lime Task HTTP API.")
    parser.add_argument("command", nargs="?", default="serve", choices=("serve", "openapi", "new-key"))
    parser.add_argument("name", nargs="?", help="new-key: the Secret's name (the identity is apikey:NAME)")
    parser.add_argument("--config", type=Path, default=os.environ.get(ENV_CONFIG),
                        help=f"the configuration file (default: env {ENV_CONFIG}); see docs/http-api.md")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser


def api_key_secret(name: str, key_digest: str, namespace: Optional[str]) -> dict:
    """The Secret manifest that makes a key with this SHA-256 hex digest valid."""
    from .auth import API_KEY_DATA, API_KEY_LABEL

    metadata = {"name": name, "labels": {API_KEY_LABEL: "true"}}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque",
            "data": {API_KEY_DATA: base64.b64encode(key_digest.encode()).decode()}}


def build_service(settings):
    """(TaskService, Authenticator, ready check) on the configured cluster."""
    from lime_task.api import resolve_namespace

    from . import kube
    from .auth import Authenticator
    from .service import TaskService

    connection = kube.connect()
    namespace = settings.namespace or resolve_namespace(None, connection)
    backend = kube.KubeBackend(connection)
    service = TaskService(backend, namespace, settings.max_body_bytes, settings.max_wait_seconds,
                          new_id=lambda: str(uuid.uuid4()))
    authenticator = Authenticator(
        review=lambda token: kube.token_review(connection, token, settings.audiences),
        list_keys=(lambda: kube.api_key_digests(connection, namespace)) if settings.api_keys_enabled else None,
        cache_seconds=settings.token_cache_seconds,
        key_refresh_seconds=settings.api_key_refresh_seconds,
    )

    def ready() -> None:
        kube.list_page(connection, namespace, ("readiness-probe",), 1, None)

    return service, authenticator, ready


def main(argv: Optional[Sequence[str]] = None) -> int:
    options = build_parser().parse_args(argv)
    if options.command == "openapi":
        from .openapi import dumps

        sys.stdout.write(dumps())
        return 0
    if options.command == "new-key":
        from .auth import key_digest, new_api_key

        if not options.name:
            print(f"{PROG}: new-key needs the Secret's name", file=sys.stderr)
            return 2
        key = new_api_key()
        print(f"# API key (shown once; give it to the client): {key}", file=sys.stderr)
        print(f"# identity: apikey:{options.name}; apply the Secret in the API's namespace:", file=sys.stderr)
        sys.stdout.write(yaml.safe_dump(api_key_secret(options.name, key_digest(key), None), sort_keys=False))
        return 0
    from .settings import ConfigError, load_settings, parse_settings

    try:
        settings = load_settings(options.config) if options.config else parse_settings({})
    except ConfigError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from .app import create_app

    service, authenticator, ready = build_service(settings)
    logging.getLogger("lime_task_api").info(
        "lime-task api serving namespace %s on %s:%s (%d identities)", service.namespace, options.host, options.port,
        len(settings.identities),
    )
    uvicorn.run(create_app(settings, service, authenticator, ready), host=options.host, port=options.port,
                log_level=options.log_level, access_log=False, proxy_headers=False)
    return 0
