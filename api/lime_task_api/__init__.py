"""lime_task_api: the Lime Task HTTP API, a server-side component beside the operator.

It starts, reads, lists, cancels and waits for LimeTasks over HTTP for callers that
authenticate with a bearer token (a ServiceAccount token checked with the Kubernetes
TokenReview API, or an API key kept hashed in a Secret) and may act only for the
applications its configuration maps their identity to. It is the only component that
needs rights on LimeTasks when applications go through it (docs/http-api.md).

Layers, higher may import lower: `entry` (command line, uvicorn) -> `app` (Starlette
routes, HTTP status codes) -> `service` (operations and the ownership rule) -> `auth`
(who is calling) and `kube` (the only module that calls the Kubernetes API) ->
`bodies`, `settings`, `openapi` (pure). It depends on `lime_task`; `lime_task` never
imports it.
"""

__all__ = ["main"]


def main(argv=None) -> int:
    """The `lime-task-api` console script (see lime_task_api.entry)."""
    from .entry import main as entry_main

    return entry_main(argv)
