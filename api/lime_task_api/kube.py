"""The API's only contact with the Kubernetes API.

Reads and writes of single LimeTasks reuse lime_task.kube (the library's bounded
decoding, its create/get/watch); this module adds what only the API needs: a client
sized for many concurrent requests, TokenReview, the API-key Secrets, a list page with
the API server's continue token, and a delete with a uid precondition.

Configuration as the library's: KUBECONFIG, else in-cluster, else ~/.kube/config.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from lime_task import kube as library_kube
from lime_task.constants import GROUP, LABEL_APP, PLURAL, VERSION

from .auth import API_KEY_DATA, API_KEY_LABEL
from .bodies import RequestProblem

# Long polls each hold one API-server connection; urllib3 opens more than the pool holds
# but throws them away afterwards (and warns), so the pool is as large as the workers.
CONNECTION_POOL_SIZE = 128
_HEX = set("0123456789abcdef")


class ContinueExpired(Exception):
    """The continue token is too old (410 Gone): start the list again."""


class BadContinue(Exception):
    """The API server refused the continue token (400): the message says why."""


def connect(pool_size: int = CONNECTION_POOL_SIZE) -> library_kube.Connection:
    """A lime_task.kube.Connection with a connection pool of `pool_size`."""
    if os.environ.get("KUBECONFIG") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        configuration = client.Configuration()
        config.load_kube_config(config_file=path, client_configuration=configuration)
        _, active = config.list_kube_config_contexts(config_file=path)
        context_namespace = (active or {}).get("context", {}).get("namespace")
        sa_namespace = None
    else:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        context_namespace = None
        try:
            sa_namespace = library_kube.SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip() or None
        except OSError:
            sa_namespace = None
    configuration.connection_pool_maxsize = pool_size
    return library_kube.Connection(client.ApiClient(configuration), context_namespace, sa_namespace)


def token_review(connection: library_kube.Connection, token: str, audiences: Iterable[str]) -> Optional[str]:
    """The username the API server authenticates `token` as, for `audiences` (empty:
    the API server's own), or None when it does not. Other failures (the API server
    unreachable, the API's ServiceAccount without `create tokenreviews`) raise."""
    audiences = list(audiences)
    body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=audiences or None))
    review = client.AuthenticationV1Api(connection.api_client).create_token_review(body)
    status = review.status
    if status is None or not status.authenticated or status.user is None or not status.user.username:
        return None
    # The API server already refuses tokens for other audiences; this holds even if one
    # answered without checking them.
    if audiences and not set(audiences) & set(status.audiences or ()):
        return None
    return status.user.username


def api_key_digests(connection: library_kube.Connection, namespace: str) -> dict[str, str]:
    """{hex sha256: Secret name} of the API-key Secrets in `namespace`. A Secret whose
    entry is not 64 hex digits is ignored (it could never match a key)."""
    secrets = client.CoreV1Api(connection.api_client).list_namespaced_secret(
        namespace, label_selector=f"{API_KEY_LABEL}=true"
    )
    found = {}
    for secret in secrets.items:
        raw = (secret.data or {}).get(API_KEY_DATA)
        try:
            digest = base64.b64decode(raw or "", validate=True).decode("ascii").strip().lower()
        except (binascii.Error, UnicodeDecodeError):
            continue
        if len(digest) == 64 and set(digest) <= _HEX:
            found[digest] = secret.metadata.name
    return found


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    continue_token: Optional[str]


def list_page(
    connection: library_kube.Connection, namespace: str, apps: Iterable[str], limit: int, continue_token: Optional[str]
) -> Page:
    """One page of LimeTasks labelled with one of `apps` (at most `limit`), with the API
    server's continue token for the next page (None: the last page). The label only
    narrows the query; the service checks spec.app on each item."""
    selector = f"{LABEL_APP} in ({','.join(sorted(apps))})"
    try:
        response = connection.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, label_selector=selector, limit=limit,
            _continue=continue_token or None, _preload_content=False,
        )
    except ApiException as error:
        if error.status == 410:
            raise ContinueExpired() from None
        if error.status == 400 and continue_token:
            raise BadContinue(library_kube.api_failure(error)[1]) from None
        raise
    body = library_kube._decoded(response)
    return Page(list(body.get("items") or []), (body.get("metadata") or {}).get("continue") or None)


def delete_task(connection: library_kube.Connection, namespace: str, name: str, uid: str) -> bool:
    """Delete the LimeTask if it is still the object with `uid` (so a task re-created
    under the same name is not deleted by mistake); False if it is already gone."""
    try:
        connection.custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name,
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid)),
        )
    except ApiException as error:
        if error.status in (404, 409):
            return False
        raise
    return True


def unavailable_reason(error: BaseException) -> Optional[str]:
    """Why the API cannot serve now, if `error` is a failure of the Kubernetes API
    server or of reaching it (HTTP 503 with Retry-After), else None (a bug: 500)."""
    failure = library_kube.api_failure(error)
    if failure is not None:
        status, message = failure
        if status is None:
            return f"the Kubernetes API server cannot be reached: {message}"
        return f"the Kubernetes API server answered {status}: {message}"
    if isinstance(error, (library_kube.LimeTaskApiError, OSError)):
        return f"the Kubernetes API server cannot be reached: {error}"
    return None


class KubeBackend:
    """The service's backend (lime_task_api.service.Backend) on a real API server."""

    def __init__(self, connection: library_kube.Connection) -> None:
        self.connection = connection

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return library_kube.create_task(self.connection, namespace, body)

    def get(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        return library_kube.get_task(self.connection, namespace, name)

    def list_page(self, namespace: str, apps: tuple[str, ...], limit: int,
                  continue_token: Optional[str]) -> tuple[list[dict[str, Any]], Optional[str]]:
        from .service import ListExpired

        try:
            page = list_page(self.connection, namespace, apps, limit, continue_token)
        except ContinueExpired:
            raise ListExpired("the continue token has expired; list again without it") from None
        except BadContinue as error:
            raise RequestProblem(400, "BadRequest", f"the continue token is not valid: {error}", "continue") from None
        return page.items, page.continue_token

    def delete(self, namespace: str, name: str, uid: str) -> bool:
        return delete_task(self.connection, namespace, name, uid)

    def watch(self, namespace: str, name: str, version: str, seconds: int):
        from .service import WatchExpired

        try:
            yield from library_kube.watch_task(self.connection, namespace, name, version, seconds)
        except library_kube.WatchExpired:
            raise WatchExpired() from None
