"""The operator's API client (lime_task_operator.kube) against a real local HTTP server.

What the integration tests cannot provoke at will: each HTTP answer typed as the
reconciler expects, no answer at all (refused, hung) ending in bounded time, the token
read afresh for every request, a watch's body passed on as it arrives, and a log read
that stops at its limit whatever the server sends.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import kubernetes
import pytest
from aiohttp import web

from lime_task_operator import kube as kube_module
from lime_task_operator.kube import Conflict, Gone, Invalid, Kube, NotFound, QuotaExceeded, Unavailable


def client_for(port: int, token: str = "") -> Kube:
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    if token:
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    return Kube(kubernetes.client.ApiClient(configuration))


async def serve(routes: web.RouteTableDef) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


def status_body(code: int, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "code": code, "message": message}, status=code)


ANSWERS = {
    "missing": lambda: status_body(404, 'jobs.batch "x" not found'),
    "taken": lambda: status_body(409, "already exists"),
    "invalid": lambda: status_body(422, 'Job.batch "x" is invalid: spec.template: Required value'),
    "quota": lambda: status_body(403, 'jobs "x" is forbidden: exceeded quota: q, requested: count/jobs.batch=1'),
    "rbac": lambda: status_body(403, 'jobs.batch is forbidden: User "op" cannot create resource "jobs"'),
    "down": lambda: status_body(503, "etcdserver: leader changed"),
    "gone": lambda: status_body(410, "too old resource version"),
    "fine": lambda: web.json_response({"metadata": {"name": "x"}, "value": [1, None, "é"]}),
    "html": lambda: web.Response(text="<html>proxy says hello</html>", content_type="text/html"),
}


def with_server(test):
    """Runs `test(kube, port)` on a loop with the ANSWERS server up; closes both."""
    async def main():
        routes = web.RouteTableDef()
        seen: list[web.Request] = []

        @routes.route("*", "/{what}")
        async def answer(request: web.Request) -> web.StreamResponse:
            seen.append(request)
            await request.read()
            return ANSWERS[request.match_info["what"]]()

        runner, port = await serve(routes)
        kube = client_for(port, token="t0k3n")
        try:
            return await test(kube, seen)
        finally:
            await kube.close()
            await runner.cleanup()
    return asyncio.run(main())


@pytest.mark.parametrize("path, expected", [
    ("/missing", NotFound), ("/taken", Conflict), ("/invalid", Invalid), ("/quota", QuotaExceeded),
    ("/rbac", kube_module.Forbidden), ("/down", Unavailable), ("/gone", Gone),
])
def test_each_refusal_is_typed_and_keeps_the_api_servers_message(path, expected):
    async def test(kube, seen):
        with pytest.raises(expected) as caught:
            await kube._request("POST", path, body={"a": 1})
        return caught.value

    error = with_server(test)
    assert type(error) is expected
    assert ANSWERS[path[1:]]().text and json.loads(ANSWERS[path[1:]]().text)["message"] in str(error)
    assert error.temporary == (expected in (Conflict, QuotaExceeded, Unavailable, Gone))


def test_missing_and_conflict_are_answers_when_the_caller_expects_them():
    async def test(kube, seen):
        return (await kube._request("GET", "/missing", ok_missing=True),
                await kube._request("POST", "/taken", body={}, ok_conflict=True))

    missing, conflict = with_server(test)
    assert missing is None
    assert conflict["_conflict"] is True and conflict["message"] == "already exists"


def test_the_body_goes_out_as_json_with_its_content_type_and_the_token():
    async def test(kube, seen):
        value = await kube._request("PATCH", "/fine", body=[{"op": "add", "path": "/status/x", "value": None}],
                                    content_type="application/json-patch+json")
        sent = seen[-1]
        return value, sent.headers.get("Content-Type"), sent.headers.get("Authorization"), await sent.read()

    value, content_type, authorization, body = with_server(test)
    assert value == {"metadata": {"name": "x"}, "value": [1, None, "é"]}
    assert content_type == "application/json-patch+json"
    assert authorization == "Bearer t0k3n"
    assert json.loads(body) == [{"op": "add", "path": "/status/x", "value": None}]


def test_a_rotated_token_is_used_from_the_next_request_on():
    # In a pod, the kubernetes client's in-cluster configuration rereads the token file
    # through this hook; the operator must not cache the header.
    async def test(kube, seen):
        tokens = iter(["first", "second"])
        kube.api.configuration.refresh_api_key_hook = lambda config: config.api_key.update(authorization=next(tokens))
        await kube._request("GET", "/fine")
        await kube._request("GET", "/fine")
        return [request.headers.get("Authorization") for request in seen]

    assert with_server(test) == ["Bearer first", "Bearer second"]


def test_a_slow_credential_plugin_runs_off_the_loop_one_at_a_time():
    """A kubeconfig's exec plugin (aws eks get-token: a second or more) runs in the hook
    when the token expires; the loop keeps running meanwhile, and two requests never run
    the (thread-unsafe) hook at once."""
    async def test(kube, seen):
        running, overlaps, threads = [0], [0], set()

        def plugin(config):
            threads.add(threading.get_ident())
            running[0] += 1
            overlaps[0] = max(overlaps[0], running[0])
            time.sleep(0.3)
            config.api_key.update(authorization="fresh")
            running[0] -= 1

        kube.api.configuration.refresh_api_key_hook = plugin
        longest_gap, stop = [0.0], asyncio.Event()

        async def ticker():
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                longest_gap[0], last = max(longest_gap[0], now - last), now

        ticking = asyncio.create_task(ticker())
        await asyncio.gather(kube._request("GET", "/fine"), kube._request("GET", "/fine"))
        stop.set()
        await ticking
        return longest_gap[0], overlaps[0], threads, [r.headers.get("Authorization") for r in seen]

    longest_gap, overlaps, threads, sent = with_server(test)
    assert longest_gap < 0.15, f"the loop stood still for {longest_gap:.2f} s while the plugin ran"
    assert overlaps == 1
    assert threading.get_ident() not in threads
    assert sent == ["Bearer fresh", "Bearer fresh"]


def test_the_in_cluster_token_reread_stays_on_the_loop(tmp_path, monkeypatch):
    """The in-cluster hook only rereads a file (at most once a minute): no thread hop on
    every request of an operator in a pod."""
    token_file, ca_file = tmp_path / "token", tmp_path / "ca.crt"
    token_file.write_text("pod-token")
    ca_file.write_text("not read here")
    from kubernetes.config.incluster_config import InClusterConfigLoader

    configuration = kubernetes.client.Configuration()
    InClusterConfigLoader(token_filename=str(token_file), cert_filename=str(ca_file),
                          environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "1"},
                          ).load_and_set(configuration)
    kube = Kube(kubernetes.client.ApiClient(configuration))
    monkeypatch.setattr(asyncio, "to_thread", lambda *a, **k: pytest.fail("a thread hop for a file read"))
    assert asyncio.run(kube._authorization()) == "bearer pod-token"  # the in-cluster loader's own prefix


def test_no_answer_is_unavailable_in_bounded_time(monkeypatch):
    monkeypatch.setattr(kube_module, "REQUEST_TIMEOUT", (1.0, 0.5))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never answers
    hung_port = listener.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()

    async def attempt(port):
        kube = client_for(port)
        started = time.monotonic()
        try:
            with pytest.raises(Unavailable) as caught:
                await kube._request("GET", "/api/v1/namespaces/ns/pods/p")
            return caught.value, time.monotonic() - started
        finally:
            await kube.close()

    try:
        for port in (hung_port, refused_port):
            error, elapsed = asyncio.run(attempt(port))
            assert error.status == 0 and error.temporary
            assert "/api/v1/namespaces/ns/pods/p" in str(error)
            assert elapsed < 3.0
    finally:
        listener.close()


def test_a_watch_passes_on_each_chunk_as_it_arrives_and_410_is_gone():
    async def main():
        routes = web.RouteTableDef()
        release = asyncio.Event()

        @routes.get("/watch")
        async def watch(request):
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b'{"type":"ADDED","object":{}}\n{"type":')
            await release.wait()
            await response.write(b'"DELETED","object":{}}\n')
            return response

        @routes.get("/expired")
        async def expired(request):
            return status_body(410, "too old resource version: 5 (100)")

        runner, port = await serve(routes)
        kube = client_for(port)
        try:
            stream = await kube.open_stream("/watch", [("watch", "1")], timeout=(1, 5))
            chunks = stream.chunks()
            first = await asyncio.wait_for(chunks.__anext__(), 2)  # before the rest is sent
            release.set()
            rest = b"".join([chunk async for chunk in chunks])
            stream.close()
            with pytest.raises(Gone):
                await kube.open_stream("/expired", [], timeout=(1, 5))
            return first, rest
        finally:
            await kube.close()
            await runner.cleanup()

    first, rest = asyncio.run(main())
    assert first == b'{"type":"ADDED","object":{}}\n{"type":'
    assert rest == b'"DELETED","object":{}}\n'


def test_a_log_read_stops_at_its_limit_whatever_the_server_sends():
    async def main():
        routes = web.RouteTableDef()

        @routes.get("/api/v1/namespaces/ns/pods/p/log")
        async def log(request):
            assert request.query["limitBytes"] == "100" and request.query["tailLines"] == "5"
            response = web.StreamResponse()
            await response.prepare(request)
            for _ in range(50):  # ignores limitBytes: 5,000 bytes in 50 writes
                await response.write(b"x" * 99 + b"\n")
            return response

        runner, port = await serve(routes)
        kube = client_for(port)
        try:
            return await kube_module.read_pod_log_tail(kube, "ns", "p", "task", 5, 100)
        finally:
            await kube.close()
            await runner.cleanup()

    assert asyncio.run(main()) == "x" * 99 + "\n"


def test_a_compressed_list_page_is_read_whole_and_an_unreadable_one_is_an_error():
    # The API server gzips answers over 128 KiB when asked (lists of many tasks); a page
    # read as empty would make a relist report every task as deleted.
    items = [{"metadata": {"name": f"t{i}", "namespace": "ns", "resourceVersion": str(i)}, "spec": {"pad": "x" * 200}}
             for i in range(2000)]

    async def main():
        routes = web.RouteTableDef()

        @routes.get("/list")
        async def listing(request):
            assert "gzip" in request.headers.get("Accept-Encoding", "")
            response = web.json_response({"items": items, "metadata": {"resourceVersion": "99", "continue": ""}})
            response.enable_compression(web.ContentCoding.gzip)
            return response

        @routes.get("/garbage")
        async def garbage(request):
            return web.Response(body=b"\x1f\x8b not json", content_type="application/json")

        runner, port = await serve(routes)
        kube = client_for(port)
        try:
            page = await kube.get_raw("/list", [("limit", "500")], timeout=(1, 5))
            with pytest.raises(Unavailable, match="not a readable list"):
                await kube.get_raw("/garbage", [], timeout=(1, 5))
            return page
        finally:
            await kube.close()
            await runner.cleanup()

    page = asyncio.run(main())
    assert len(page["items"]) == 2000 and page["items"][-1]["metadata"]["name"] == "t1999"
    assert page["metadata"]["resourceVersion"] == "99"


def test_a_success_that_is_not_json_is_an_error_not_an_empty_answer():
    # A proxy's HTML page must not read as "no pods" or "no Job".
    async def test(kube, seen):
        with pytest.raises(Unavailable, match="not a JSON object") as caught:
            await kube._request("GET", "/html")
        return caught.value

    assert with_server(test).temporary


def test_no_proxy_is_honoured_and_the_proxy_is_used_otherwise():
    # A pod given HTTPS_PROXY for the outside world, with the API server in NO_PROXY,
    # must reach the API server directly (the kubernetes client's own rule).
    async def main():
        proxy_routes = web.RouteTableDef()
        proxied: list[str] = []

        @proxy_routes.route("*", "/{tail:.*}")
        async def proxy(request):
            proxied.append(str(request.url))
            return web.Response(status=502, text="proxy: no route")

        api_routes = web.RouteTableDef()

        @api_routes.get("/fine")
        async def fine(request):
            return web.json_response({"direct": True})

        proxy_runner, proxy_port = await serve(proxy_routes)
        api_runner, api_port = await serve(api_routes)
        answers = []
        try:
            for no_proxy in ("localhost,127.0.0.1,.svc", ""):
                kube = client_for(api_port)
                kube.api.configuration.proxy = f"http://127.0.0.1:{proxy_port}"
                kube.api.configuration.no_proxy = no_proxy
                try:
                    answers.append(await kube._request("GET", "/fine"))
                except Unavailable as error:
                    answers.append(error)
                finally:
                    await kube.close()
        finally:
            await proxy_runner.cleanup()
            await api_runner.cleanup()
        return answers, proxied

    (bypassed, through_proxy), proxied = asyncio.run(main())
    assert bypassed == {"direct": True}
    assert isinstance(through_proxy, Unavailable) and through_proxy.status == 502
    assert len(proxied) == 1 and proxied[0].endswith("/fine")


def test_a_closed_client_refuses_calls_instead_of_opening_new_connections():
    async def test(kube, seen):
        await kube._request("GET", "/fine")
        await kube.close()
        with pytest.raises(Unavailable, match="closed"):
            await kube._request("GET", "/fine")
        return len(seen)

    assert with_server(test) == 1


def test_background_events_are_bounded_in_flight_and_in_number(monkeypatch):
    monkeypatch.setattr(kube_module, "BACKGROUND_QUEUED", 20)
    running, most, finished = [0], [0], []

    async def event(i):
        running[0] += 1
        most[0] = max(most[0], running[0])
        await asyncio.sleep(0.01)
        running[0] -= 1
        finished.append(i)

    async def main():
        kube = client_for(1)  # no request is made
        for i in range(30):
            kube.in_background(event(i))
        while kube._background:
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert most[0] == kube_module.BACKGROUND_IN_FLIGHT
    assert sorted(finished) == list(range(20))  # the 10 beyond the queue's bound were dropped


def test_a_fresh_pod_list_keeps_only_the_pods_of_the_task_asked_for():
    """A long name's task-id label is a cut of it plus a hash, which another task may
    have as its name: the selector finds both tasks' pods, the annotation decides. Before
    this, a task so named was judged on the other's pod and took its result."""
    from lime_task.children import ANNOTATION_TASK_NAME, task_label

    long_name = "m" * 70
    short_name = task_label(long_name)

    def pod(name, task):
        return {"metadata": {"name": name, "labels": {"limetask.dev/task-id": short_name},
                             "annotations": {ANNOTATION_TASK_NAME: task}}}

    async def main():
        routes = web.RouteTableDef()
        selectors = []

        @routes.get("/api/v1/namespaces/ns/pods")
        async def pods(request):
            selectors.append(request.query["labelSelector"])
            return web.json_response({"items": [pod("long-pod", long_name), pod("short-pod", short_name)]})

        runner, port = await serve(routes)
        kube = client_for(port)
        try:
            return ([p["metadata"]["name"] for p in await kube.list_task_pods("ns", long_name)],
                    [p["metadata"]["name"] for p in await kube.list_task_pods("ns", short_name)], selectors)
        finally:
            await kube.close()
            await runner.cleanup()

    of_long, of_short, selectors = asyncio.run(main())
    assert (of_long, of_short) == (["long-pod"], ["short-pod"])
    assert selectors == [f"limetask.dev/task-id={short_name}"] * 2
