"""lime_task.kube's calls for the CLI (cancel, logs, error mapping) against fake clients.

The CLI reaches the Kubernetes API only through these (.importlinter: only the kube
modules import the client); tests/integration/test_cli.py runs them for real.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
import urllib3.exceptions
from kubernetes.client.rest import ApiException

from lime_task import children, cli, kube
from lime_task.cli_args import ExitCode


def api_exception(status: int, message: str = "", reason: str = "Reason") -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = json.dumps({"kind": "Status", "message": message}) if message else ""
    return error


class FakeCustom:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple] = []

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.calls.append((group, version, namespace, plural, name, body))
        if self.error:
            raise self.error


def connection_with(custom: FakeCustom):
    return SimpleNamespace(custom=custom, api_client=None)


def test_delete_task_sends_the_uid_as_a_precondition():
    custom = FakeCustom()
    assert kube.delete_task(connection_with(custom), "ns", "t-1", "uid-1") is True
    (group, version, namespace, plural, name, body), = custom.calls
    assert (group, plural, namespace, name) == ("limetask.dev", "limetasks", "ns", "t-1")
    assert body.preconditions.uid == "uid-1"


def test_delete_task_of_a_gone_task_is_false_and_of_a_replaced_one_an_error():
    assert kube.delete_task(connection_with(FakeCustom(api_exception(404, "not found"))), "ns", "t", "u") is False
    with pytest.raises(kube.LimeTaskApiError, match="replaced by another of the same name: Precondition failed"):
        kube.delete_task(connection_with(FakeCustom(api_exception(409, "Precondition failed: UID"))), "ns", "t", "u")
    with pytest.raises(ApiException):
        kube.delete_task(connection_with(FakeCustom(api_exception(403, "forbidden"))), "ns", "t", "u")


def pod(name: str, minute: int, task: str = "t", label: str | None = None):
    created = datetime(2025, 1, 1, 0, minute, tzinfo=timezone.utc)
    return SimpleNamespace(metadata=SimpleNamespace(
        name=name, creation_timestamp=created, annotations={"limetask.dev/task-name": task},
        labels={"limetask.dev/task-id": label or task}))


def test_pod_logs_come_oldest_first_and_an_unreadable_log_carries_the_api_servers_message(monkeypatch):
    seen: dict = {}

    class FakeCore:
        def __init__(self, api_client):
            pass

        def list_namespaced_pod(self, namespace, label_selector):
            seen["list"] = (namespace, label_selector)
            return SimpleNamespace(items=[pod("second", 5), pod("first", 1), pod("gone", 9)])

        def read_namespaced_pod_log(self, name, namespace, container):
            if name == "gone":
                raise api_exception(400, 'container "task" in pod "gone" is waiting to start')
            return f"log of {name} ({container})\n"

    monkeypatch.setattr(kube.client, "CoreV1Api", FakeCore)
    logs = kube.read_task_pod_logs(connection_with(FakeCustom()), "ns", "t", container="task")
    assert seen["list"] == ("ns", "limetask.dev/task-id=t")
    assert logs == [
        kube.PodLog("first", "log of first (task)\n"),
        kube.PodLog("second", "log of second (task)\n"),
        kube.PodLog("gone", None, 'container "task" in pod "gone" is waiting to start'),
    ]


def test_pod_logs_of_a_long_named_task_select_by_its_label_and_skip_another_tasks_pods(monkeypatch):
    """A long name's label is a cut plus a hash, itself a valid task name: the pods of the
    task with that name answer the same selector and must not be shown (nor the other way)."""
    long_name = "m" * 70
    short_name = children.task_label(long_name)
    seen: dict = {}
    pods = [pod("long-1", 1, task=long_name, label=short_name), pod("short-1", 2, task=short_name)]

    class FakeCore:
        def __init__(self, api_client):
            pass

        def list_namespaced_pod(self, namespace, label_selector):
            seen.setdefault("selectors", []).append(label_selector)
            return SimpleNamespace(items=list(pods))

        def read_namespaced_pod_log(self, name, namespace, container):
            return f"log of {name}\n"

    monkeypatch.setattr(kube.client, "CoreV1Api", FakeCore)
    connection = connection_with(FakeCustom())
    assert [log.pod for log in kube.read_task_pod_logs(connection, "ns", long_name, "task")] == ["long-1"]
    assert [log.pod for log in kube.read_task_pod_logs(connection, "ns", short_name, "task")] == ["short-1"]
    # A valid selector (at most 63 characters) for the long name, not the name itself.
    assert seen["selectors"] == [f"limetask.dev/task-id={short_name}"] * 2
    assert len(short_name) == 63


@pytest.mark.parametrize(
    "error,expected",
    [
        (api_exception(404, 'limetasks "x" not found'), (404, 'limetasks "x" not found')),
        (api_exception(500, reason="Internal Server Error"), (500, "500 Internal Server Error")),
        (urllib3.exceptions.MaxRetryError(None, "/apis", "Connection refused"),
         (None, "None: Max retries exceeded with url: /apis (Caused by 'Connection refused')")),
        (ValueError("not the client's"), None),
    ],
)
def test_api_failure_reads_the_clients_errors_only(error, expected):
    assert kube.api_failure(error) == expected


@pytest.mark.parametrize(
    "error,code,message",
    [
        (api_exception(404, 'limetasks "x" not found'), ExitCode.NOT_FOUND, 'the API server refused: limetasks "x" not found'),
        (api_exception(403, "forbidden: User cannot delete"), ExitCode.FAILED, "the API server refused: forbidden"),
        (urllib3.exceptions.NewConnectionError(None, "Connection refused"), ExitCode.UNAVAILABLE,
         "cannot reach the Kubernetes API server"),
    ],
)
def test_the_cli_maps_the_clients_errors_through_kube(error, code, message):
    got_code, got_message = cli._error_code(error)
    assert got_code == code and message in got_message
