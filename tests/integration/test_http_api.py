"""The HTTP API against the real control plane: real TokenReview of real bound
ServiceAccount tokens, the real operator running tasks to SUCCESS, API keys in real
Secrets. Two applications (billing, shipping) share one namespace and see only their
own tasks."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest

from ._api_helpers import service_account_token, start_api

pytestmark = pytest.mark.integration
T = "sample_tasks.tasks"


@pytest.fixture
def two_apps(cluster, crd, namespace, operator, tmp_path):
    """An operator and an API for `namespace`; tokens of three ServiceAccounts: billing
    and shipping (one app each) and stranger (mapped to none)."""
    operator(namespace)
    tokens = {name: service_account_token(cluster, namespace, name) for name in ("billing", "shipping", "stranger")}
    identities = {f"system:serviceaccount:{namespace}:billing": ["billing"],
                  f"system:serviceaccount:{namespace}:shipping": ["shipping"],
                  "apikey:partner": ["billing"]}
    started: list = []
    api = start_api(cluster, namespace, identities, tmp_path, started, apiKeys={"refreshSeconds": 1})
    api.tokens = tokens
    yield api
    for handle in started:
        handle.stop()
        print(f"----- API log -----\n{handle.log[-10000:]}")


def _send(api, token, task, *args):
    status, view = api.call("POST", "/v1/tasks", {"task": f"{T}.{task}", "args": list(args)}, token=token)
    assert status == 201, view
    return view


def _wait(api, token, task_id, seconds=120):
    deadline = time.monotonic() + seconds
    while True:
        status, view = api.call("GET", f"/v1/tasks/{task_id}?wait=30", token=token)
        assert status == 200, view
        if view["status"] in ("SUCCESS", "FAILURE") or time.monotonic() > deadline:
            return view


def test_two_apps_send_and_wait_over_http_and_see_only_their_own(two_apps):
    api, tokens = two_apps, two_apps.tokens
    billing = _send(api, tokens["billing"], "add", 2, 3)
    shipping = _send(api, tokens["shipping"], "hello", "parcel")
    assert (billing["app"], shipping["app"]) == ("billing", "shipping")

    done = _wait(api, tokens["billing"], billing["id"])
    assert (done["status"], done["result"]["sum"], done["attempts"]) == ("SUCCESS", 5, 1)
    assert done["startedAt"] and done["finishedAt"] and done["createdAt"]
    assert _wait(api, tokens["shipping"], shipping["id"])["status"] == "SUCCESS"

    # Each gets 404 for the other's id, with the body of an id that does not exist.
    missing = "0b3f6d2e-0000-4000-8000-000000000000"
    for token, foreign in ((tokens["billing"], shipping["id"]), (tokens["shipping"], billing["id"])):
        status, body = api.call("GET", f"/v1/tasks/{foreign}", token=token)
        status_missing, body_missing = api.call("GET", f"/v1/tasks/{missing}", token=token)
        assert status == status_missing == 404
        assert body["error"]["message"].replace(foreign, "X") == body_missing["error"]["message"].replace(missing, "X")
        assert api.call("DELETE", f"/v1/tasks/{foreign}", token=token)[0] == 404

    for token, own, other in ((tokens["billing"], billing, shipping), (tokens["shipping"], shipping, billing)):
        status, page = api.call("GET", "/v1/tasks", token=token)
        ids = [item["id"] for item in page["items"]]
        assert status == 200 and own["id"] in ids and other["id"] not in ids


def test_credentials_401_and_403_against_the_real_token_review(two_apps, cluster, namespace):
    api = two_apps
    status, body = api.call("GET", "/v1/tasks")
    assert status == 401 and "no credential" in body["error"]["message"]
    assert api.call("GET", "/v1/tasks", token="not-a-token")[0] == 401
    # A real token of the same account, but for the API server's own audience.
    wrong_audience = service_account_token(cluster, namespace, "billing", audience=None)
    assert api.call("GET", "/v1/tasks", token=wrong_audience)[0] == 401
    status, body = api.call("GET", "/v1/tasks", token=api.tokens["stranger"])
    assert status == 403 and f"system:serviceaccount:{namespace}:stranger" in body["error"]["message"]
    status, body = api.call("POST", "/v1/tasks", {"task": f"{T}.add", "app": "shipping"}, token=api.tokens["billing"])
    assert status == 403


@pytest.mark.parametrize("body, field", [
    ({"task": f"{T}.add", "args": [2 ** 64]}, "args[0]"),
    ({"task": "not a path"}, "task"),
    ({"task": f"{T}.add", "options": {"retries": "3"}}, "options.retries"),
    ({"task": f"{T}.add", "kwargs": {"1x": 1}}, "kwargs"),
    ({"args": []}, "task"),
])
def test_malformed_bodies_are_named_and_create_nothing(two_apps, cluster, namespace, body, field):
    status, answer = two_apps.call("POST", "/v1/tasks", body, token=two_apps.tokens["billing"])
    assert (status, answer["error"]["field"]) == (422, field), answer
    assert two_apps.call("POST", "/v1/tasks", raw=b"{nope", token=two_apps.tokens["billing"])[0] == 400
    listed = cluster.kubectl("get", "limetasks", "-n", namespace, "-o", "name").stdout.split()
    assert listed == []


def test_an_api_key_in_a_secret_acts_for_its_app(two_apps, cluster, namespace):
    key = "ltk_" + "a1" * 22
    digest = hashlib.sha256(key.encode()).hexdigest()
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=f"""
apiVersion: v1
kind: Secret
metadata:
  name: partner
  labels: {{limetask.dev/api-key: "true"}}
data:
  sha256: {base64.b64encode(digest.encode()).decode()}
""")
    view = _send(two_apps, key, "add", 1, 1)
    assert view["app"] == "billing"
    assert _wait(two_apps, key, view["id"])["result"]["sum"] == 2
    cluster.kubectl("delete", "secret", "partner", "-n", namespace)
    time.sleep(11)  # past the verdict cache (10 s) and the key refresh (1 s)
    assert two_apps.call("GET", f"/v1/tasks/{view['id']}", token=key)[0] == 401


def test_sse_follows_a_real_task_to_its_end(two_apps):
    import json
    import urllib.request

    view = _send(two_apps, two_apps.tokens["billing"], "add", 4, 5)
    request = urllib.request.Request(f"{two_apps.url}/v1/tasks/{view['id']}/events",
                                     headers={"Authorization": f"Bearer {two_apps.tokens['billing']}"})
    with urllib.request.urlopen(request, timeout=120) as response:
        text = response.read().decode()
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert events[0]["status"] == "PENDING" and events[-1]["status"] == "SUCCESS"
    assert events[-1]["result"]["sum"] == 9


def test_the_audience_is_the_configured_one(cluster, crd, namespace, tmp_path):
    token = service_account_token(cluster, namespace, "billing", audience="another-audience")
    started: list = []
    api = start_api(cluster, namespace, {f"system:serviceaccount:{namespace}:billing": ["billing"]}, tmp_path, started)
    try:
        assert api.call("GET", "/v1/tasks", token=token)[0] == 401
        assert api.call("GET", "/v1/tasks", token=service_account_token(cluster, namespace, "billing"))[0] == 200
    finally:
        api.stop()
