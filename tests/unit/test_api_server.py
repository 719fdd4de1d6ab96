"""The HTTP API's routes over a real uvicorn server and an in-memory backend: status
codes, error bodies naming the field, ownership, long polls, SSE, pagination."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.unit._api_server import API_KEY, ServedApi


@pytest.fixture(scope="module")
def served():
    api = ServedApi().start()
    yield api
    api.stop()


def call(served, method, path, body=None, token="token-billing", raw=None, content_type="application/json",
         headers=None, timeout=20):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    if data is not None and content_type:
        sent["Content-Type"] = content_type
    request = urllib.request.Request(served.url + path, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read()
        return error.code, dict(error.headers), json.loads(text) if text else None


def send(served, token="token-billing", **body):
    status, headers, view = call(served, "POST", "/v1/tasks", {"task": "shop.tasks.add", **body}, token=token)
    assert status == 201, view
    return view, headers


def test_post_creates_a_pending_task_with_the_original_shape_and_a_location(served):
    view, headers = send(served, args=[1, 2.0], kwargs={"rows": [{"a": -0.0}]}, options={"retries": 2})
    assert (view["status"], view["result"], view["app"], view["task"]) == ("PENDING", None, "billing", "shop.tasks.add")
    assert headers["location"] == f"/v1/tasks/{view['id']}"
    stored = served.backend.objects[view["id"]]
    assert stored["spec"]["app"] == "billing" and stored["spec"]["retries"] == 2
    # Integral floats travel as floatPaths, as from send_task (one implementation).
    assert stored["spec"]["floatPaths"] == ["/args/1", "-/kwargs/rows/0/a"]
    assert stored["metadata"]["labels"]["limetask.dev/app"] == "billing"


@pytest.mark.parametrize("body, field, words", [
    ({"args": [1]}, "task", "task is required"),
    ({"task": 5}, "task", "must be a string"),
    ({"task": "notdotted"}, "task", "pattern"),
    ({"task": "a." + "b" * 240}, "task", "at most 234"),
    ({"task": "a.b", "args": {"x": 1}}, "args", "must be an array"),
    ({"task": "a.b", "kwargs": [1]}, "kwargs", "must be an object"),
    ({"task": "a.b", "kwargs": {"not-an-identifier": 1}}, "kwargs", "not a Python identifier"),
    ({"task": "a.b", "args": [2 ** 64]}, "args[0]", "int64"),
    ({"task": "a.b", "kwargs": {"x": {"deep": [[[[]]]]}}, "options": {"retries": 21}}, "options.retries", "20"),
    ({"task": "a.b", "options": {"retries": True}}, "options.retries", "must be an integer"),
    ({"task": "a.b", "options": {"timeoutSeconds": "60"}}, "options.timeoutSeconds", "must be an integer"),
    ({"task": "a.b", "options": {"timeoutSeconds": 60.0}}, "options.timeoutSeconds", "must be an integer"),
    ({"task": "a.b", "options": {"timeoutSeconds": 0}}, "options.timeoutSeconds", "greater than or equal to 1"),
    ({"task": "a.b", "options": {"retry": 1}}, "options.retry", "unknown option"),
    ({"task": "a.b", "options": {"resources": {"limits": {"cpu": True}}}}, "options.resources.limits.cpu", "quantity"),
    ({"task": "a.b", "options": {"resources": {"limit": {}}}}, "options.resources.limit", "unknown member"),
    ({"task": "a.b", "options": []}, "options", "must be an object"),
    ({"task": "a.b", "application": "x"}, "application", "unknown member"),
    ({"task": "a.b", "args": ["x" * 40000]}, "args", "the limit is"),
    ({"task": "a.b", "args": [[[]] * 1] * 300}, "args", "256"),
])
def test_bad_bodies_get_422_naming_the_field_and_create_nothing(served, body, field, words):
    before = set(served.backend.objects)
    status, _, answer = call(served, "POST", "/v1/tasks", body)
    assert status == 422, answer
    assert answer["error"]["code"] == "InvalidTask"
    assert answer["error"]["field"] == field, answer
    assert words in answer["error"]["message"]
    assert set(served.backend.objects) == before


@pytest.mark.parametrize("raw, words", [
    (b"{", "not JSON"),
    (b"", "empty"),
    (b'{"task": "a.b", "args": [NaN]}', "NaN"),
    (b'{"task": "a.b", "args": [Infinity]}', "Infinity"),
    (b'{"task": "a.b", "task": "c.d"}', "appears twice"),
    (b'{"task": "a.b", "args": [1]}\xff', "not UTF-8"),
    (b'{"task": "a.b", "args": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nests deeper"),
])
def test_bodies_that_are_not_json_get_400(served, raw, words):
    status, _, answer = call(served, "POST", "/v1/tasks", raw=raw)
    assert status == 400, answer
    assert words in answer["error"]["message"]


def test_a_non_object_body_is_422_without_a_field(served):
    status, _, answer = call(served, "POST", "/v1/tasks", [1, 2])
    assert (status, answer["error"]["field"]) == (422, None)
    assert "must be a JSON object, got an array" in answer["error"]["message"]


def test_oversize_bodies_get_413_whether_declared_or_streamed(served):
    big = json.dumps({"task": "a.b", "args": ["x" * (70 * 1024)]}).encode()
    status, _, answer = call(served, "POST", "/v1/tasks", raw=big)
    assert status == 413 and "at most 65536" in answer["error"]["message"]

    def chunks():
        for _ in range(100):
            yield b" " * 1024

    request = urllib.request.Request(served.url + "/v1/tasks", data=chunks(), method="POST",
                                     headers={"Authorization": "Bearer token-billing",
                                              "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=20)
    assert caught.value.code == 413


def test_a_body_of_another_media_type_gets_415(served):
    status, _, answer = call(served, "POST", "/v1/tasks", raw=b"task=a.b", content_type="application/x-www-form-urlencoded")
    assert status == 415 and "application/json" in answer["error"]["message"]


@pytest.mark.parametrize("content_type", ["application/json;charset=latin-1", 'application/json; charset="UTF-16"'])
def test_a_json_body_in_another_charset_gets_415_naming_it(served, content_type):
    """The body is decoded as UTF-8 (RFC 8259): one declared latin-1 would be read as
    something it does not say ('\xe9' would be refused, or taken as other text)."""
    body = json.dumps({"task": "shop.tasks.add", "args": ["caf\u00e9"]}, ensure_ascii=False).encode("latin-1")
    before = len(served.backend.objects)
    status, _, answer = call(served, "POST", "/v1/tasks", raw=body, content_type=content_type)
    assert status == 415 and "UTF-8" in answer["error"]["message"], answer
    assert len(served.backend.objects) == before  # nothing created


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON;CHARSET=UTF-8"])
def test_a_json_body_declared_utf8_is_accepted(served, content_type):
    body = json.dumps({"task": "shop.tasks.add", "args": ["caf\u00e9"]}, ensure_ascii=False).encode()
    status, _, answer = call(served, "POST", "/v1/tasks", raw=body, content_type=content_type)
    assert status == 201, answer
    assert served.backend.objects[answer["id"]]["spec"]["args"] == ["caf\u00e9"]


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwdw==", "Bearer", "Bearer a b", "token-billing"])
def test_missing_or_malformed_credentials_get_401_with_www_authenticate(served, header):
    headers = {"Authorization": header} if header else {}
    status, response_headers, answer = call(served, "GET", "/v1/tasks", token=None, headers=headers)
    assert status == 401 and answer["error"]["code"] == "Unauthorized"
    assert response_headers["www-authenticate"].startswith("Bearer")


def test_an_unknown_token_gets_401_and_a_token_mapped_to_no_app_403(served):
    status, _, _ = call(served, "GET", "/v1/tasks", token="forged")
    assert status == 401
    status, _, answer = call(served, "GET", "/v1/tasks", token="token-nobody")
    assert status == 403
    assert "system:serviceaccount:shop:stranger" in answer["error"]["message"]


def test_an_app_the_credential_may_not_act_for_is_403_not_trusted(served):
    status, _, answer = call(served, "POST", "/v1/tasks", {"task": "a.b", "app": "shipping"})
    assert status == 403 and "shipping" in answer["error"]["message"]


def test_a_credential_for_several_apps_must_name_one(served):
    status, _, answer = call(served, "POST", "/v1/tasks", {"task": "a.b"}, token="token-both")
    assert (status, answer["error"]["field"]) == (422, "app")
    view, _ = send(served, token="token-both", app="shipping")
    assert view["app"] == "shipping"


def test_another_apps_task_is_404_with_the_same_body_as_a_missing_one(served):
    mine, _ = send(served, token="token-shipping")
    foreign = call(served, "GET", f"/v1/tasks/{mine['id']}")
    missing_id = "task-999999"
    missing = call(served, "GET", f"/v1/tasks/{missing_id}")
    assert foreign[0] == missing[0] == 404
    assert foreign[2]["error"]["message"].replace(mine["id"], "X") == missing[2]["error"]["message"].replace(missing_id, "X")
    assert call(served, "DELETE", f"/v1/tasks/{mine['id']}")[0] == 404
    assert mine["id"] in served.backend.objects  # not deleted by the other app
    assert call(served, "GET", f"/v1/tasks/{mine['id']}", token="token-shipping")[0] == 200


@pytest.mark.parametrize("task_id", ["UPPER", "-x", "a" * 300, "%2E%2E", "x%00"])
def test_ids_that_cannot_be_names_are_not_found(served, task_id):
    status, _, answer = call(served, "GET", f"/v1/tasks/{task_id}")
    assert status == 404 and answer["error"]["code"] == "NotFound"


def test_ownership_is_spec_app_not_the_label(served):
    served.backend.put({"apiVersion": "limetask.dev/v1alpha1", "kind": "LimeTask",
                        "metadata": {"name": "relabelled", "namespace": "apps", "labels": {"limetask.dev/app": "billing"}},
                        "spec": {"task": "a.b", "app": "shipping", "args": [], "kwargs": {}}})
    assert call(served, "GET", "/v1/tasks/relabelled")[0] == 404
    ids = [item["id"] for item in call(served, "GET", "/v1/tasks?limit=500")[2]["items"]]
    assert "relabelled" not in ids


def test_get_returns_result_error_timestamps_and_attempts(served):
    view, _ = send(served)
    served.backend.set_status(view["id"], {"state": "SUCCESS", "result": {"n": 2}, "resultFloatPaths": ["/n"],
                                           "attempts": 1, "startedAt": "2026-01-01T00:00:00Z",
                                           "finishedAt": "2026-01-01T00:00:01Z", "duration": "1s"})
    status, _, got = call(served, "GET", f"/v1/tasks/{view['id']}")
    assert status == 200
    assert got["result"] == {"n": 2.0} and isinstance(got["result"]["n"], float)
    assert (got["attempts"], got["startedAt"], got["finishedAt"], got["error"]) == (
        1, "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", None)
    other, _ = send(served)
    served.backend.set_status(other["id"], {"state": "FAILURE", "reason": "TaskRaised",
                                            "error": {"type": "ValueError", "message": "no", "traceback": ""}})
    failed = call(served, "GET", f"/v1/tasks/{other['id']}")[2]
    assert (failed["status"], failed["error"]["type"], failed["reason"]) == ("FAILURE", "ValueError", "TaskRaised")


def _later(seconds, action):
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_long_poll_returns_on_the_terminal_state_not_before(served):
    view, _ = send(served)
    _later(0.3, lambda: served.backend.set_status(view["id"], {"state": "STARTED"}))
    _later(0.8, lambda: served.backend.set_status(view["id"], {"state": "SUCCESS", "result": 3}))
    started = time.monotonic()
    status, _, got = call(served, "GET", f"/v1/tasks/{view['id']}?wait=4")
    assert (status, got["status"], got["result"]) == (200, "SUCCESS", 3)
    assert 0.7 < time.monotonic() - started < 3


def test_long_poll_with_changed_from_returns_on_any_change(served):
    view, _ = send(served)
    _later(0.3, lambda: served.backend.set_status(view["id"], {"state": "STARTED"}))
    got = call(served, "GET", f"/v1/tasks/{view['id']}?wait=4&changedFrom=PENDING")[2]
    assert got["status"] == "STARTED"


def test_a_wait_longer_than_the_servers_maximum_is_shortened_to_it(served):
    view, _ = send(served)
    started = time.monotonic()
    got = call(served, "GET", f"/v1/tasks/{view['id']}?wait=3600")[2]  # maxWaitSeconds is 5 here
    assert got["status"] == "PENDING" and 4.5 < time.monotonic() - started < 8


def test_long_poll_ends_after_wait_with_the_state_then(served):
    view, _ = send(served)
    started = time.monotonic()
    got = call(served, "GET", f"/v1/tasks/{view['id']}?wait=0.5")[2]
    assert got["status"] == "PENDING" and 0.4 < time.monotonic() - started < 3


def test_long_poll_on_a_task_deleted_as_soon_as_it_finished_answers_its_outcome(served):
    """ttlSecondsAfterFinished 0: the watch's DELETED event is the first to show the end
    and carries the last state (found: the client said 'deleted before it completed;
    last state PENDING' for a task that had succeeded)."""
    view, _ = send(served)

    def finish_and_delete():  # one step: no watch can see the SUCCESS before the deletion
        with served.backend.lock:
            obj = served.backend.objects.pop(view["id"])
            obj["status"] = {"state": "SUCCESS", "result": {"sum": 3}}
            served.backend.removed[view["id"]] = obj

    _later(0.3, finish_and_delete)
    status, _, answer = call(served, "GET", f"/v1/tasks/{view['id']}?wait=4")
    assert (status, answer["status"], answer["result"]) == (200, "SUCCESS", {"sum": 3})


def test_long_poll_on_a_deleted_task_is_404(served):
    view, _ = send(served)
    _later(0.3, lambda: served.backend.remove(view["id"]))
    assert call(served, "GET", f"/v1/tasks/{view['id']}?wait=4")[0] == 404


@pytest.mark.parametrize("query, field", [("wait=-1", "wait"), ("wait=86401", "wait"), ("wait=abc", "wait"),
                                          ("wait=nan", "wait"), ("wait=1&changedFrom=DONE", "changedFrom"),
                                          ("wait=1&wait=2", "wait")])
def test_bad_wait_parameters_are_422_naming_them(served, query, field):
    view, _ = send(served)
    status, _, answer = call(served, "GET", f"/v1/tasks/{view['id']}?{query}")
    assert (status, answer["error"]["field"]) == (422, field)


def test_sse_streams_each_state_change_and_ends_on_the_terminal_one(served):
    view, _ = send(served)
    _later(0.3, lambda: served.backend.set_status(view["id"], {"state": "STARTED"}))
    _later(0.6, lambda: served.backend.set_status(view["id"], {"state": "SUCCESS", "result": "ok"}))
    request = urllib.request.Request(f"{served.url}/v1/tasks/{view['id']}/events",
                                     headers={"Authorization": "Bearer token-billing"})
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    events = [json.loads(line[len("data: "):]) for line in text.splitlines() if line.startswith("data: ")]
    assert [event["status"] for event in events] == ["PENDING", "STARTED", "SUCCESS"]
    assert events[-1]["result"] == "ok"


def test_sse_for_another_apps_task_is_a_plain_404(served):
    mine, _ = send(served, token="token-shipping")
    assert call(served, "GET", f"/v1/tasks/{mine['id']}/events")[0] == 404


def test_list_shows_only_the_callers_tasks_page_by_page(served):
    mine = {send(served)[0]["id"] for _ in range(5)}
    theirs = send(served, token="token-shipping")[0]["id"]
    seen, token, pages = [], None, 0
    while True:
        query = "limit=2" + (f"&continue={token}" if token else "")
        status, _, page = call(served, "GET", f"/v1/tasks?{query}")
        assert status == 200 and len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        pages += 1
        token = page["continue"]
        if not token:
            break
    assert mine <= set(seen) and theirs not in seen and pages >= 3
    assert {item["app"] for item in call(served, "GET", "/v1/tasks?limit=500")[2]["items"]} == {"billing"}


def test_list_filters_by_state_and_task(served):
    view, _ = send(served, task="shop.tasks.special")
    served.backend.set_status(view["id"], {"state": "FAILURE", "error": {"type": "E", "message": "", "traceback": ""}})
    items = call(served, "GET", "/v1/tasks?limit=500&state=FAILURE&task=shop.tasks.special")[2]["items"]
    assert [item["id"] for item in items] == [view["id"]]


@pytest.mark.parametrize("query, field", [("limit=0", "limit"), ("limit=501", "limit"), ("limit=x", "limit"),
                                          ("state=DONE", "state")])
def test_bad_list_parameters_are_422(served, query, field):
    status, _, answer = call(served, "GET", f"/v1/tasks?{query}")
    assert (status, answer["error"]["field"]) == (422, field)


def test_an_expired_continue_token_is_410(served):
    served.backend.expire_continue = True
    try:
        status, _, answer = call(served, "GET", "/v1/tasks?continue=12")
    finally:
        served.backend.expire_continue = False
    assert (status, answer["error"]["field"]) == (410, "continue")


def test_delete_cancels_the_callers_task(served):
    view, _ = send(served)
    status, _, answer = call(served, "DELETE", f"/v1/tasks/{view['id']}")
    assert (status, answer["deleted"], answer["id"]) == (200, True, view["id"])
    assert view["id"] not in served.backend.objects
    assert call(served, "DELETE", f"/v1/tasks/{view['id']}")[0] == 404


def test_api_keys_authenticate_as_their_secret(served):
    view, _ = send(served, token=API_KEY)
    assert view["app"] == "billing"
    assert call(served, "GET", "/v1/tasks", token="ltk_" + "z" * 43)[0] == 401


def test_kubernetes_api_failures_are_503_with_retry_after(served):
    from urllib3.exceptions import MaxRetryError

    served.backend.fail_with = MaxRetryError(None, "https://10.0.0.1", "connection refused")
    try:
        status, headers, answer = call(served, "GET", "/v1/tasks")
    finally:
        served.backend.fail_with = None
    assert status == 503 and headers["retry-after"] == "1" and answer["error"]["code"] == "Unavailable"


def test_unknown_routes_and_methods_answer_in_the_error_shape(served):
    status, _, answer = call(served, "GET", "/v2/tasks")
    assert status == 404 and answer["error"]["code"] == "NotFound"
    status, _, answer = call(served, "PUT", "/v1/tasks", {})
    assert status == 405 and answer["error"]["code"] == "MethodNotAllowed"


def test_probes_and_openapi_need_no_credential(served):
    assert call(served, "GET", "/healthz", token=None)[0] == 200
    assert call(served, "GET", "/readyz", token=None)[0] == 200
    served.ready_error = RuntimeError("no API server")
    try:
        assert call(served, "GET", "/readyz", token=None)[0] == 503
    finally:
        served.ready_error = None
    status, _, document = call(served, "GET", "/v1/openapi.json", token=None)
    assert status == 200 and document["openapi"].startswith("3.1")


def test_a_namespace_the_api_does_not_serve_is_422_and_its_own_is_fine(served):
    status, _, answer = call(served, "POST", "/v1/tasks?namespace=elsewhere", {"task": "a.b"})
    assert (status, answer["error"]["field"]) == (422, "namespace")
    assert "serves namespace 'apps'" in answer["error"]["message"]
    assert call(served, "GET", "/v1/tasks?namespace=elsewhere")[0] == 422
    assert call(served, "POST", "/v1/tasks?namespace=apps", {"task": "a.b"})[0] == 201


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(raw=st.binary(max_size=300))
def test_any_bytes_as_a_body_get_a_4xx_or_201_never_a_server_error(served, raw):
    status, _, answer = call(served, "POST", "/v1/tasks", raw=raw)
    assert status in (201, 400, 413, 422), (raw, answer)
    if status != 201:
        assert set(answer["error"]) == {"code", "message", "field"}


@_SETTINGS
@given(task_id=st.text(max_size=40), query=st.dictionaries(
    st.sampled_from(["wait", "changedFrom", "app", "namespace", "limit", "state", "continue"]),
    st.text(max_size=12), max_size=3))
def test_any_id_and_query_get_an_answer_in_the_error_shape_never_a_server_error(served, task_id, query):
    import urllib.parse

    path = "/v1/tasks/" + urllib.parse.quote(task_id, safe="") + "?" + urllib.parse.urlencode(query)
    status, _, answer = call(served, "GET", path)
    assert status in (200, 400, 403, 404, 405, 410, 422), (path, answer)  # 400: a bad continue token (docs/http-api.md)
    if status != 200:
        assert set(answer["error"]) == {"code", "message", "field"}
