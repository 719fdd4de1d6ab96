"""The library's only contact with the Kubernetes API.

Configuration: when env KUBECONFIG is set, that kubeconfig (colon-separated lists are
merged as kubectl does); else, inside a pod (KUBERNETES_SERVICE_HOST set), the in-cluster
service-account config; else ~/.kube/config. The loaded client is cached per source, so
changing KUBECONFIG (e.g. in tests) takes effect on the next call.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from . import values
from .children import belongs_to, task_label
from .constants import GROUP, LABEL_TASK_ID, PLURAL, SCHEDULE_PLURAL, VERSION
from .errors import InvalidTaskError

SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class LimeTaskApiError(RuntimeError):
    """The API server could not do what was asked, for a reason the message gives."""


@dataclass(frozen=True)
class Connection:
    api_client: client.ApiClient
    # The current kubeconfig context's namespace, or the pod's (in-cluster), if any.
    context_namespace: Optional[str]
    service_account_namespace: Optional[str]

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)


_lock = threading.Lock()
_connections: dict[tuple[str, str], Connection] = {}


def _source() -> tuple[str, str]:
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if kubeconfig:
        return ("kubeconfig", kubeconfig)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return ("in-cluster", "")
    return ("kubeconfig", os.path.expanduser("~/.kube/config"))


def _load(kind: str, path: str) -> Connection:
    if kind == "in-cluster":
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        try:
            sa_namespace = SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip() or None
        except OSError:
            sa_namespace = None
        return Connection(client.ApiClient(configuration), None, sa_namespace)
    try:
        api_client = config.new_client_from_config(config_file=path)
        _, active = config.list_kube_config_contexts(config_file=path)
    except (config.ConfigException, OSError) as error:
        raise LimeTaskApiError(
            f"cannot load the Kubernetes configuration from {path!r}: {error}. "
            "Set KUBECONFIG or run inside a cluster."
        ) from error
    context_namespace = (active or {}).get("context", {}).get("namespace")
    return Connection(api_client, context_namespace, None)


def connect() -> Connection:
    """The cached connection for the current configuration source."""
    key = _source()
    with _lock:
        connection = _connections.get(key)
        if connection is None:
            connection = _connections[key] = _load(*key)
        return connection


def _api_message(error: ApiException) -> str:
    try:
        return json.loads(error.body)["message"]
    except Exception:
        return f"{error.status} {error.reason}"


def create_task(connection: Connection, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        return connection.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    except ApiException as error:
        if error.status in (400, 422):
            raise InvalidTaskError(f"the API server refused the task: {_api_message(error)}") from None
        if error.status == 404:
            raise LimeTaskApiError(
                f"cannot create a LimeTask in namespace {namespace!r}: {_api_message(error)} "
                "(does the namespace exist and is the LimeTask CRD installed?)"
            ) from None
        raise


def _decoded(response: Any) -> Any:
    """The body of a raw (`_preload_content=False`) response, decoded with
    values.decode_bounded: the kubernetes client's own json.loads raises RecursionError
    on an object nested past ~1000 levels, which the API server accepts (up to 10,000),
    and one such object would make every list of its namespace fail."""
    try:
        return values.decode_bounded(response.data)[0]
    finally:
        response.release_conn()


def get_task(connection: Connection, namespace: str, name: str) -> Optional[dict[str, Any]]:
    """The LimeTask, or None if there is none by that name. Parts nested deeper than
    values.DECODE_MAX_DEPTH are replaced by values.TOO_DEEP (see values.cut_place)."""
    try:
        response = connection.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return _decoded(response)


def list_tasks(connection: Connection, namespace: str, label_selector: Optional[str] = None) -> list[dict[str, Any]]:
    """The LimeTasks of a namespace (optionally selected by labels), decoded as
    `get_task` does, so a poison object is listed (with its deep part cut) instead of
    making the whole list fail."""
    response = connection.custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, label_selector=label_selector, _preload_content=False
    )
    return list(_decoded(response).get("items") or [])


# ---------------------------------------------------------------- what the CLI's cancel and logs need


def delete_task(connection: Connection, namespace: str, name: str, uid: str) -> bool:
    """Delete the LimeTask `name` only if it is still the object with `uid` (a delete
    precondition: a task of the same name created meanwhile is left alone). False when
    it is gone already; a 409 for another uid is raised as `LimeTaskApiError`."""
    options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
    try:
        connection.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body=options)
    except ApiException as error:
        if error.status == 404:
            return False
        if error.status == 409:
            raise LimeTaskApiError(f"task {name!r} was replaced by another of the same name: {_api_message(error)}") from None
        raise
    return True


@dataclass(frozen=True)
class PodLog:
    """One pod's log: `text` (None if it could not be read) or `error` (the API server's message)."""

    pod: str
    text: Optional[str]
    error: Optional[str] = None


def read_task_pod_logs(connection: Connection, namespace: str, task_name: str, container: str) -> list[PodLog]:
    """The logs of `container` in the pods of the task `task_name`, oldest pod first
    (creation time, then name); [] when there is no such pod. Pods are selected by the
    task-id label and kept only if they belong to the task (lime_task.children: another
    task's long name may share the label). A log the API server will not give (pod not
    started, node gone) is a PodLog with `error` set, not an exception."""
    core = client.CoreV1Api(connection.api_client)
    selector = f"{LABEL_TASK_ID}={task_label(task_name)}"
    pods = [pod for pod in core.list_namespaced_pod(namespace, label_selector=selector).items
            if belongs_to({"annotations": pod.metadata.annotations, "labels": pod.metadata.labels}, task_name)]
    pods.sort(key=lambda pod: (pod.metadata.creation_timestamp, pod.metadata.name))
    logs = []
    for pod in pods:
        try:
            logs.append(PodLog(pod.metadata.name, core.read_namespaced_pod_log(pod.metadata.name, namespace, container=container)))
        except ApiException as error:
            logs.append(PodLog(pod.metadata.name, None, _api_message(error)))
    return logs


def api_failure(error: BaseException) -> Optional[tuple[Optional[int], str]]:
    """For an error the Kubernetes client raised: (HTTP status, the API server's message),
    or (None, reason) when the API server was not reached (connection refused, TLS,
    timeout). None for any other error, so callers can map the rest themselves."""
    from urllib3.exceptions import HTTPError as TransportError

    if isinstance(error, ApiException):
        return error.status, _api_message(error) or f"{error.status} {error.reason}"
    if isinstance(error, TransportError):
        return None, str(error)
    return None


class _BoundedWatch(watch.Watch):
    """A watch whose events are decoded with values.decode_bounded (see `_decoded`)."""

    def unmarshal_event(self, data: Any, return_type: Any) -> Any:
        if not data or data.isspace():
            return None
        try:
            event, cut = values.decode_bounded(data)
        except json.JSONDecodeError:
            return None
        # The client's own decoding, now of a value that is shallow enough for it.
        return super().unmarshal_event(json.dumps(event) if cut else data, return_type)


class WatchExpired(Exception):
    """The resourceVersion is too old (410 Gone): read the object again and re-watch."""


def watch_task(
    connection: Connection, namespace: str, name: str, resource_version: str, timeout_seconds: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event type, object) for one LimeTask, from `resource_version`, for at most
    `timeout_seconds` (the server ends the watch then; the client gives it a little more
    so a dead connection cannot hang the caller)."""
    stream = _BoundedWatch()
    try:
        for event in stream.stream(
            connection.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            field_selector=f"metadata.name={name}",
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
            _request_timeout=timeout_seconds + 10,
        ):
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                if isinstance(obj, dict) and obj.get("code") == 410:
                    raise WatchExpired()
                raise LimeTaskApiError(f"watching task {name!r} failed: {obj}")
            yield kind, obj
    except ApiException as error:
        if error.status == 410:
            raise WatchExpired() from None
        raise
    finally:
        stream.stop()


# ---------------------------------------------------------------- LimeTaskSchedules (#15)
# lime_task.schedules calls these; kept together at the end, apart from the task calls.


def _refused(error: ApiException, what: str) -> Exception:
    """The library's error for an API refusal: InvalidTaskError for a body the API server
    refused (400/422, naming its message), LimeTaskApiError for a missing namespace or
    CRD (404), the ApiException itself otherwise."""
    if error.status in (400, 422):
        return InvalidTaskError(f"the API server refused the {what}: {_api_message(error)}")
    if error.status == 404:
        return LimeTaskApiError(f"cannot reach {what}: {_api_message(error)} (does the namespace exist and "
                                "is the LimeTaskSchedule CRD installed?)")
    return error


def create_schedule(connection: Connection, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create a LimeTaskSchedule; the stored object (409 AlreadyExists is an ApiException)."""
    try:
        return connection.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SCHEDULE_PLURAL, body)
    except ApiException as error:
        raise _refused(error, "schedule") from None


def get_schedule(connection: Connection, namespace: str, name: str) -> Optional[dict[str, Any]]:
    """The LimeTaskSchedule, or None if there is none by that name."""
    try:
        response = connection.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, SCHEDULE_PLURAL, name, _preload_content=False)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return _decoded(response)


def list_schedules(connection: Connection, namespace: str) -> list[dict[str, Any]]:
    """The LimeTaskSchedules of a namespace (decoded as `get_task` does)."""
    try:
        response = connection.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, SCHEDULE_PLURAL, _preload_content=False)
    except ApiException as error:
        raise _refused(error, "schedules") from None
    return list(_decoded(response).get("items") or [])


def patch_schedule(connection: Connection, namespace: str, name: str, patch: dict[str, Any]) -> Optional[dict[str, Any]]:
    """Merge-patch a schedule's spec or metadata; the stored object, None if it is gone."""
    try:
        return connection.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, SCHEDULE_PLURAL, name, patch)
    except ApiException as error:
        if error.status == 404:
            return None
        raise _refused(error, "schedule change") from None


def delete_schedule(connection: Connection, namespace: str, name: str) -> bool:
    """Delete a schedule (background propagation: its tasks follow); False if it is gone."""
    try:
        connection.custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, SCHEDULE_PLURAL, name,
            body=client.V1DeleteOptions(propagation_policy="Background"))
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True
