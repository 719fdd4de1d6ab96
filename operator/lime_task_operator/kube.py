"""The only module that calls the Kubernetes API.

Asynchronous, on the operator's event loop, through aiohttp (kopf's own HTTP client, a
well-kept library with a C HTTP parser). In 0.2.0 and earlier these calls were blocking
urllib3 requests made from a thread pool, and the watches ran in one thread each; every
answer then crossed threads (a pool thread's wake-up, the loop's self-pipe, the GIL
handed back and forth). Operator CPU per task on 50-task bursts
(benchmarks/operator_throughput.py, 3 alternating runs of each on one machine, min /
median): 16.2 / 16.4 ms with threads, 12.2 / 12.8 ms on the loop; docs/architecture.md
("Where the operator's CPU goes") has the floors under it.

Credentials and the API server's address come from a kubernetes.client Configuration
(kubeconfig or in-cluster; its token is read afresh through the configuration's refresh
hook, so an in-cluster token that rotates keeps working, and a kubeconfig's exec
credential plugin runs in a worker thread, not on the loop). The library is used for that
only: the requests are plain dicts in and out, in the camelCase the API server sends,
and the status patch is a JSON patch with a resourceVersion precondition.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import uuid
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Mapping, Optional
from urllib.parse import quote

import aiohttp
import kubernetes
from kubernetes.client.rest import should_bypass_proxies

from lime_task import timestamps
from lime_task.children import belongs_to, task_label
from lime_task.constants import API_VERSION, GROUP, KIND, LABEL_TASK_ID, PLURAL, VERSION

from . import metrics

log = logging.getLogger(__name__)

COMPONENT = "lime-task-operator"
# A hung API server must not hold a reconcile worker forever: (connect, read) seconds.
REQUEST_TIMEOUT = (5, 30)
# Connections for requests (watches have their own, one each, never counted here): as
# many as there are workers that can wait on a request at once (reconciler.RECONCILE_WORKERS,
# the event publisher's and the schedule controller's), with some to spare.
REQUEST_CONNECTIONS = 64
# Kubernetes Events in flight at once (in_background), so that a burst of them never
# holds the connections that status writes wait for; and queued at most, beyond which
# an Event is dropped with a warning (they are best effort; the status is the record).
BACKGROUND_IN_FLIGHT = 8
BACKGROUND_QUEUED = 1000
# What aiohttp raises when there is no (complete) answer: refused, reset, timed out.
NO_ANSWER = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class KubeError(RuntimeError):
    """An API call failed; the subclass says what it means (kopf's `_cogs/clients/errors`).

    ``temporary``: retrying the same call later can succeed (the work queue backs off and
    retries); otherwise the API server refused what we sent, and only a different request
    can succeed. ``status`` is the HTTP status (0: no answer at all).
    """

    temporary = True

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Kubernetes API error {status}: {message}")
        self.status = status
        self.message = message


class NotFound(KubeError):
    """404: the object (or its namespace) does not exist."""

    temporary = False


class Conflict(KubeError):
    """409: a resourceVersion precondition failed, or the name is taken."""


class Gone(KubeError):
    """410: a resourceVersion or continue token too old to use."""


class Invalid(KubeError):
    """400 / 422: the API server refused the body (schema, validation, admission)."""

    temporary = False


class Forbidden(KubeError):
    """403: RBAC or an admission plugin refused the request."""

    temporary = False


class QuotaExceeded(Forbidden):
    """403 from the ResourceQuota admission plugin: retrying can succeed once usage drops."""

    temporary = True


class TooManyRequests(KubeError):
    """429: API priority and fairness or a rate limit; retried."""


class Unavailable(KubeError):
    """5xx, or no answer (connection refused, timeout): retried."""


def error_for(status: int, message: str) -> KubeError:
    """The KubeError subclass for an HTTP status and the API server's Status message."""
    if status == 404:
        return NotFound(status, message)
    if status == 409:
        return Conflict(status, message)
    if status == 410:
        return Gone(status, message)
    if status in (400, 422):
        return Invalid(status, message)
    if status == 403:
        # The quota plugin's refusal: "... is forbidden: exceeded quota: NAME, requested: ..."
        if "exceeded quota" in message:
            return QuotaExceeded(status, message)
        return Forbidden(status, message)
    if status == 429:
        return TooManyRequests(status, message)
    if status == 0 or status >= 500:
        return Unavailable(status, message)
    return KubeError(status, message)


class WatchStream:
    """An open watch: ``chunks()`` yields the body's bytes as they arrive (newline-
    delimited JSON cut anywhere); ``close()`` drops the connection."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except NO_ANSWER as error:
            raise Unavailable(0, f"watch broken: {error}") from error

    def close(self) -> None:
        self._response.close()


class Kube:
    """The operator's API client; every call is a coroutine to await on the operator's
    loop. Raises the KubeError subclass for the answer (Unavailable when there is none).

    The aiohttp sessions are made on first use, on the running loop, and closed by
    ``close()``.
    """

    def __init__(self, api_client: Optional[kubernetes.client.ApiClient] = None) -> None:
        self.api = api_client or make_api_client()
        self._instance = socket.gethostname()
        self._requests: Optional[aiohttp.ClientSession] = None
        self._watches: Optional[aiohttp.ClientSession] = None
        self._closed = False
        # in_background's tasks (asyncio keeps only weak references to tasks, so an
        # unreferenced one could be collected before it ran) and its slots.
        self._background: set[asyncio.Task] = set()
        self._background_slots: Optional[asyncio.Semaphore] = None
        # One credential refresh at a time (the kubernetes client's hooks are not
        # thread-safe); see _authorization.
        self._refreshing = asyncio.Lock()

    # ------------------------------------------------------------ transport

    def _ssl_context(self) -> ssl.SSLContext:
        config = self.api.configuration
        context = ssl.create_default_context(cafile=config.ssl_ca_cert)
        if config.cert_file:
            context.load_cert_chain(config.cert_file, config.key_file)
        if not config.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif config.assert_hostname is False:
            context.check_hostname = False
        return context

    def _session(self, watch: bool) -> aiohttp.ClientSession:
        """One session for requests (a bounded pool) and one for lists and watches (one
        connection each, never waiting behind requests for a free connection)."""
        if self._requests is None or self._watches is None:
            context = self._ssl_context()
            # aiohttp asks for gzip and decompresses (as client-go does): the API server
            # compresses large answers (lists over 128 KiB), not watch streams.
            headers = {"User-Agent": self.api.user_agent, "Accept": "application/json"}
            self._requests = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=REQUEST_CONNECTIONS), headers=headers)
            self._watches = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=0), headers=headers)
        return self._watches if watch else self._requests

    async def _authorization(self) -> Optional[str]:
        """The Authorization header's value ("Bearer …"), or None without a token, read
        afresh on every call through the configuration's refresh hook: the in-cluster
        configuration's hook rereads a rotated token file (at most once a minute: inline,
        a file read). A kubeconfig's hook runs an exec credential plugin when its token
        has expired (``aws eks get-token``, ``gke-gcloud-auth-plugin``: a second or more),
        so any other hook runs in a worker thread, one at a time, and the loop keeps
        serving watches and requests meanwhile."""
        config = self.api.configuration
        hook = config.refresh_api_key_hook
        if hook is None or getattr(hook, "__qualname__", "").startswith("InClusterConfigLoader."):
            return _bearer_token(config)
        async with self._refreshing:
            return await asyncio.to_thread(_bearer_token, config)

    def _options(self, timeout: tuple[float, float], token: Optional[str]) -> dict[str, Any]:
        config = self.api.configuration
        options: dict[str, Any] = {"timeout": aiohttp.ClientTimeout(sock_connect=timeout[0], sock_read=timeout[1])}
        # Kubeconfig client certificates are in the SSL context instead of a token.
        if token:
            options["headers"] = {"Authorization": token}
        # HTTPS_PROXY / NO_PROXY as the kubernetes client reads them (its own rule for
        # the exclusions): a pod given a proxy for the outside still reaches the API
        # server directly.
        if config.proxy and not should_bypass_proxies(config.host, config.no_proxy or ""):
            options["proxy"] = config.proxy
            if config.proxy_headers:
                options["proxy_headers"] = config.proxy_headers
        if config.tls_server_name:
            options["server_hostname"] = config.tls_server_name
        return options

    async def _send(self, method: str, path: str, query: Optional[list[tuple[str, str]]],
                    timeout: tuple[float, float], watch: bool = False, body: Optional[bytes] = None,
                    content_type: Optional[str] = None) -> aiohttp.ClientResponse:
        """The response, headers read, its body not yet (the caller reads and releases it)."""
        if self._closed:
            raise Unavailable(0, f"{method} {path}: the client is closed (the operator is stopping)")
        options = self._options(timeout, await self._authorization())
        if content_type:
            options.setdefault("headers", {})["Content-Type"] = content_type
        try:
            return await self._session(watch).request(
                method, self.api.configuration.host + path, params=query or None, data=body, **options)
        # ValueError: what aiohttp raises for a proxy URL it cannot use (socks5://).
        except (*NO_ANSWER, ValueError) as error:
            metrics.API_REQUESTS.labels(verb=method, resource=_resource_of(path), code="0").inc()
            raise Unavailable(0, f"{method} {path}: {error}") from error

    @staticmethod
    async def _read(response: aiohttp.ClientResponse, what: str, limit: Optional[int] = None) -> bytes:
        """The body (at most `limit` bytes), the connection released; Unavailable when
        it does not arrive whole."""
        try:
            if limit is None:
                return await response.read()
            data = b""
            while len(data) < limit:
                chunk = await response.content.read(limit - len(data))
                if not chunk:
                    break
                data += chunk
            return data
        except NO_ANSWER as error:
            raise Unavailable(0, f"{what}: {error}") from error
        finally:
            response.release()

    def in_background(self, call: Any) -> None:
        """Run the coroutine `call` on the running loop without waiting for it: for Events,
        a courtesy to `kubectl describe` (record_event and record_object_event log their own
        failures; the status, already written, is the source of truth). At most
        BACKGROUND_IN_FLIGHT run at once; beyond BACKGROUND_QUEUED waiting, `call` is
        dropped with a warning."""
        if len(self._background) >= BACKGROUND_QUEUED:
            call.close()
            log.warning("%d Kubernetes Events are waiting to be written; dropping one (best effort)",
                        len(self._background))
            return
        if self._background_slots is None:
            self._background_slots = asyncio.Semaphore(BACKGROUND_IN_FLIGHT)
        slots = self._background_slots

        async def limited() -> None:
            async with slots:
                await call

        task = asyncio.get_running_loop().create_task(limited())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Close the connections; any call made after this raises Unavailable."""
        self._closed = True
        for session in (self._requests, self._watches):
            if session is not None:
                await session.close()
        self._requests = self._watches = None

    async def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Optional[list[tuple[str, str]]] = None,
        content_type: str = "application/json",
        ok_missing: bool = False,
        ok_conflict: bool = False,
        parse: bool = True,
    ) -> Optional[dict[str, Any]]:
        data_out = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        response = await self._send(method, path, query, REQUEST_TIMEOUT, body=data_out,
                                    content_type=content_type if body is not None else None)
        try:
            data = await self._read(response, f"{method} {path}")
        except Unavailable:
            metrics.API_REQUESTS.labels(verb=method, resource=_resource_of(path), code="0").inc()
            raise
        status = response.status
        metrics.API_REQUESTS.labels(verb=method, resource=_resource_of(path), code=str(status)).inc()
        if status == 404 and ok_missing:
            return None
        if status == 409 and ok_conflict:
            return {"_conflict": True, **_json(data)}
        if status >= 400:
            detail = _json(data).get("message") or data[:300].decode(errors="replace")
            raise error_for(status, f"{method} {path}: {detail}")
        # A task's body may nest 10,000 levels deep: not parsed where nobody reads it.
        if not parse:
            return {}
        try:
            value = json.loads(data)
        except RecursionError:  # nested past the recursion limit: the caller reads it afresh
            return {}
        except ValueError:
            value = None
        if not isinstance(value, dict):
            # Not the API server's JSON (a proxy's HTML page): never taken for an empty
            # answer (no pods, no Job), which a decision could act on.
            raise Unavailable(0, f"{method} {path}: the answer is not a JSON object ({len(data)} bytes, "
                                 f"{response.headers.get('Content-Type', 'no content type')})")
        return value

    async def get_raw(self, path: str, query: list[tuple[str, str]], timeout: tuple[float, float]) -> dict[str, Any]:
        """GET a collection page. Raises the KubeError subclass for a refusal (Gone for an
        expired continue token or resourceVersion), Unavailable when there is no answer or
        when the answer is not a list (it is never taken for an empty one: a relist would
        then report every object as deleted)."""
        response = await self._send("GET", path, query, timeout, watch=True)
        data = await self._read(response, f"GET {path}")
        value = _json(data)
        if response.status >= 400:
            raise error_for(response.status, f"GET {path}: {value.get('message') or data[:300].decode(errors='replace')}")
        if not isinstance(value.get("items", []), list) or not isinstance(value.get("metadata"), dict):
            raise Unavailable(0, f"GET {path}: the answer is not a readable list ({len(data)} bytes, "
                                 f"{response.headers.get('Content-Type', 'no content type')})")
        return value

    async def open_stream(self, path: str, query: list[tuple[str, str]], timeout: tuple[float, float]) -> WatchStream:
        """Open a watch (the caller closes the stream). Raises Gone for 410, the KubeError
        subclass for any other refusal."""
        response = await self._send("GET", path, query, timeout, watch=True)
        if response.status >= 400:
            try:
                data = await self._read(response, f"watch {path}")
            except Unavailable:  # the refusal's status says enough
                data = b""
            message = _json(data).get("message") or data[:300].decode(errors="replace")
            raise (Gone(410, message) if response.status == 410 else error_for(response.status, f"watch {path}: {message}"))
        return WatchStream(response)

    # ------------------------------------------------------------ Jobs

    async def get_job(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        return await self._request("GET", f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs/{_q(name)}", ok_missing=True)

    async def create_job(self, namespace: str, job: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the Job, or return the one that already has its name.

        Returns (job, created). The name is deterministic per task, so AlreadyExists
        means this or an earlier operator process created it: adopt it, never make
        another.
        """
        created = await self._request("POST", f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs", body=dict(job),
                                      ok_conflict=True)
        if not created.get("_conflict"):
            return created, True
        name = job["metadata"]["name"]
        existing = await self.get_job(namespace, name)
        if existing is None:  # deleted in between; the next reconcile creates it again
            raise KubeError(409, f"Job {namespace}/{name} exists and vanished again")
        return existing, False

    async def list_task_pods(self, namespace: str, task_name: str) -> list[dict[str, Any]]:
        """The task's pods, fresh: selected by the task-id label, which another task's
        long name may share (lime_task.children), so only those that belong to this task."""
        result = await self._request(
            "GET",
            f"/api/v1/namespaces/{_q(namespace)}/pods",
            query=[("labelSelector", f"{LABEL_TASK_ID}={task_label(task_name)}")],
        )
        return [pod for pod in result.get("items") or [] if belongs_to(pod.get("metadata") or {}, task_name)]

    # ------------------------------------------------------------ LimeTasks

    def _task_path(self, namespace: str, name: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{_q(namespace)}/{PLURAL}/{_q(name)}"

    async def patch_task_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str,
        has_status: bool = True,
    ) -> Optional[dict[str, Any]]:
        """Set status fields, only if the task is still at `resource_version`.

        A JSON patch (RFC 6902), not a merge patch: in a merge patch null means "delete",
        so a result such as ``{"parent": None}`` lost its key; here each field is written
        as the value it is. ``add`` on an object member replaces it; the whole status is
        added at once when the task has none yet (``has_status`` False). The
        resourceVersion in the patch is the API server's optimistic-concurrency
        precondition: a decision taken on a stale copy fails with 409 (returned as None)
        instead of clobbering what another write put there, which is what makes "never
        overwrite a terminal state" hold. None too if the task is gone; else the task as
        the API server now has it ({} if its body could not be parsed).
        """
        ops: list[dict[str, Any]] = [
            {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}
        ]
        if has_status:
            ops += [{"op": "add", "path": f"/status/{_pointer(field)}", "value": value}
                    for field, value in status.items()]
        else:
            ops.append({"op": "add", "path": "/status", "value": dict(status)})
        result = await self._request(
            "PATCH",
            self._task_path(namespace, name) + "/status",
            body=ops,
            content_type="application/json-patch+json",
            ok_missing=True,
            ok_conflict=True,
        )
        if result is None or result.get("_conflict"):
            return None
        return result

    async def get_task(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        """The whole LimeTask as the API server has it now (None if it is gone)."""
        return await self._request("GET", self._task_path(namespace, name), ok_missing=True)

    async def delete_task(self, namespace: str, name: str, uid: str) -> bool:
        """Delete a finished task (its Job and pods go with it, by garbage collection).

        The uid precondition protects a new task that reuses the name. Background
        propagation: the task disappears now, the GC removes the rest.
        """
        result = await self._request(
            "DELETE",
            self._task_path(namespace, name),
            body={"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid},
                  "propagationPolicy": "Background"},
            ok_missing=True,
            ok_conflict=True,
            parse=False,
        )
        return result is not None and not result.get("_conflict")

    # ------------------------------------------------------------ Events

    async def record_event(self, task: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the task (what `kubectl describe limetask` shows).

        Best effort: an Event that cannot be written is logged, never retried, because
        the status (the source of truth) is already written.
        """
        metadata = task.get("metadata") or {}
        now = timestamps.format_time(datetime.now(timezone.utc))
        namespace = metadata.get("namespace")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{metadata.get('name')}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": metadata.get("name"),
                "namespace": namespace,
                "uid": metadata.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._request("POST", f"/api/v1/namespaces/{_q(namespace)}/events", body=event)
        except Exception as error:  # noqa: BLE001 - see docstring
            log.warning("could not record event %s on %s/%s: %s", reason, namespace, metadata.get("name"), error)


def _bearer_token(config: kubernetes.client.Configuration) -> Optional[str]:
    """The configuration's token with its prefix, through its refresh hook if it has one."""
    return (config.auth_settings().get("BearerToken") or {}).get("value")


def make_api_client() -> kubernetes.client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG).
    Only its configuration is used (address, CA, client certificate, token)."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.ApiClient(kubernetes.client.Configuration.get_default_copy())


def _resource_of(path: str) -> str:
    """'limetasks/status' for /apis/g/v/namespaces/ns/limetasks/x/status: a metric label
    from the closed set of resources the operator calls."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if "namespaces" in parts:
        rest = parts[parts.index("namespaces") + 2:]
    else:
        rest = parts[3:] if parts[:1] == ["apis"] else parts[2:]
    return "/".join(rest[0:1] + rest[2:3]) or "-"


def _pointer(field: str) -> str:
    """A JSON pointer token (RFC 6901): '~' and '/' escaped."""
    return field.replace("~", "~0").replace("/", "~1")


def _q(part: str) -> str:
    return quote(part, safe="")


def _json(data: bytes | str | None) -> dict[str, Any]:
    if not data:
        return {}
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: a body nested past the limit
        return {}
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------- failure forensics (#11)
# Module-level functions over a Kube, kept apart from the class so that they do not
# collide with work on it; coroutines like the class's methods.

# (connect, read) seconds for a log read: kubelet answers through the API server.
LOG_REQUEST_TIMEOUT = (5, 15)


async def read_pod_log_tail(kube: Kube, namespace: str, pod: str, container: str, tail_lines: int,
                            limit_bytes: int) -> str:
    """The last `tail_lines` lines of a container's log, at most `limit_bytes` bytes
    (GET pods/{pod}/log with tailLines and limitBytes; needs `get` on `pods/log`).

    Text decoded as UTF-8 with replacement characters. Raises the KubeError subclass for
    the answer (NotFound when the pod is gone, or a 400 when kubelet has no log) or
    Unavailable when there is no answer.
    """
    path = f"/api/v1/namespaces/{_q(namespace)}/pods/{_q(pod)}/log"
    query = [("container", container), ("tailLines", str(tail_lines)), ("limitBytes", str(limit_bytes))]
    response = await kube._send("GET", path, query, LOG_REQUEST_TIMEOUT)
    # limitBytes bounds the body; this bounds what is read should it not.
    data = await kube._read(response, f"GET {path}", limit=limit_bytes + 1)
    if response.status >= 400:
        message = _json(data).get("message") or data[:300].decode(errors="replace")
        raise error_for(response.status, f"GET {path}: {message}")
    return data[:limit_bytes].decode("utf-8", errors="replace")


async def delete_job(kube: Kube, namespace: str, name: str, uid: str) -> bool:
    """Delete a Job (uid precondition, background propagation: its pods follow).

    For a task that already failed while its Job was still trying (a container that
    could never start): the Job must not start the task later. False if the Job is
    already gone or is another Job by now.
    """
    result = await kube._request(
        "DELETE",
        f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs/{_q(name)}",
        body={"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid},
              "propagationPolicy": "Background"},
        ok_missing=True,
        ok_conflict=True,
    )
    return result is not None and not result.get("_conflict")


# ---------------------------------------------------------------- LimeTaskSchedules (#15)
# Module-level like the section above, for schedule_controller.py.

from lime_task.constants import SCHEDULE_PLURAL  # noqa: E402 - kept with the section it serves


async def create_task(kube: Kube, namespace: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create a LimeTask (a schedule's run), or return the one that already has its name.

    Returns (task, created). A run's name is deterministic per scheduled time, so 409
    AlreadyExists means this or an earlier operator already started that run: adopt it.
    Raises the KubeError subclass otherwise (Invalid when the API server refuses it).
    """
    created = await kube._request("POST", f"/apis/{GROUP}/{VERSION}/namespaces/{_q(namespace)}/{PLURAL}",
                                  body=dict(body), ok_conflict=True)
    if not created.get("_conflict"):
        return created, True
    name = body["metadata"]["name"]
    existing = await kube.get_task(namespace, name)
    if existing is None:  # deleted in between (history, TTL): the run happened
        raise Conflict(409, f"LimeTask {namespace}/{name} exists and vanished again")
    return existing, False


async def patch_schedule_status(kube: Kube, namespace: str, name: str, set_fields: Mapping[str, Any],
                                remove_fields: list[str], resource_version: str, has_status: bool) -> bool:
    """Write a LimeTaskSchedule's status fields, only if it is still at `resource_version`
    (a JSON patch with the resourceVersion precondition, as Kube.patch_task_status).

    ``remove_fields`` are fields present now that must go (e.g. nextScheduleTime while
    suspended). False when the schedule changed meanwhile (its newer version brings a new
    pass) or is gone.
    """
    ops: list[dict[str, Any]] = [{"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}]
    if has_status:
        ops += [{"op": "add", "path": f"/status/{_pointer(field)}", "value": value}
                for field, value in set_fields.items()]
        ops += [{"op": "remove", "path": f"/status/{_pointer(field)}"} for field in remove_fields]
    else:
        ops.append({"op": "add", "path": "/status", "value": dict(set_fields)})
    result = await kube._request(
        "PATCH",
        f"/apis/{GROUP}/{VERSION}/namespaces/{_q(namespace)}/{SCHEDULE_PLURAL}/{_q(name)}/status",
        body=ops, content_type="application/json-patch+json", ok_missing=True, ok_conflict=True, parse=False,
    )
    return result is not None and not result.get("_conflict")


async def record_object_event(kube: Kube, obj: Mapping[str, Any], kind: str, type_: str, reason: str,
                              message: str) -> None:
    """A Kubernetes Event on any object of ours (a LimeTaskSchedule: `kind`); best effort
    as Kube.record_event: logged, never retried."""
    metadata = obj.get("metadata") or {}
    now = timestamps.format_time(datetime.now(timezone.utc))
    namespace = metadata.get("namespace")
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{metadata.get('name')}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "involvedObject": {"apiVersion": API_VERSION, "kind": kind, "name": metadata.get("name"),
                           "namespace": namespace, "uid": metadata.get("uid")},
        "type": type_, "reason": reason, "message": message[:1024],
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
        "reportingInstance": kube._instance[:128], "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }
    try:
        await kube._request("POST", f"/api/v1/namespaces/{_q(namespace)}/events", body=event)
    except Exception as error:  # noqa: BLE001 - see docstring
        log.warning("could not record event %s on %s/%s: %s", reason, namespace, metadata.get("name"), error)
