"""The informer: paged list, watch from the list's resourceVersion, relist on 410, any body.

A fake API (pages and watch streams as the API server sends them, newline-delimited
JSON cut at arbitrary byte boundaries) drives a real Informer thread; deliveries are
collected on a real event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from lime_task_operator import informer as informer_module
from lime_task_operator.informer import Informer, Resource


def obj(name: str, version: int, **status) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": str(version)}, "status": status}


class FakeStream:
    def __init__(self, events: list[dict], chunk: int = 7, block: threading.Event | None = None) -> None:
        self.data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
        self.chunk = chunk
        self.block = block
        self.status = 200

    def stream(self, amount, decode_content=True):
        for start in range(0, len(self.data), self.chunk):
            yield self.data[start:start + self.chunk]
        if self.block is not None:
            self.block.wait(5)

    def release_conn(self):
        pass


class FakeKube:
    """Pages for successive LISTs and streams for successive WATCHes; records calls."""

    def __init__(self, lists: list[list[dict]], watches: list[FakeStream]) -> None:
        self.lists = lists
        self.watches = watches
        self.calls: list[tuple[str, dict]] = []
        self.done = threading.Event()

    def get_raw(self, path, query, timeout):
        self.calls.append(("list", dict(query)))
        return self.lists.pop(0)

    def open_stream(self, path, query, timeout):
        self.calls.append(("watch", dict(query)))
        if not self.watches:
            self.done.set()
            threading.Event().wait(5)
            raise RuntimeError("no more watches")
        return self.watches.pop(0)


def run(kube: FakeKube, reduce=None, until=lambda seen: False, seconds: float = 5.0):
    seen: list[tuple] = []
    synced: list[bool] = []

    async def main():
        informer = Informer(kube, Resource("limetask.dev", "v1alpha1", "limetasks"), "ns", "",
                            reduce or (lambda body: ((body["metadata"]["namespace"], body["metadata"]["name"]),
                                                     body["metadata"]["resourceVersion"])),
                            lambda kind, key, owner, view: seen.append((kind, key[1], view)),
                            lambda: synced.append(True))
        informer.start(asyncio.get_running_loop())
        deadline = asyncio.get_running_loop().time() + seconds
        while not (until(seen) or kube.done.is_set()) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        informer.stop()
        return informer

    informer = asyncio.run(main())
    return seen, synced, informer


def page(items, version="10", token=""):
    return {"items": items, "metadata": {"resourceVersion": version, "continue": token}}


def test_lists_in_pages_then_watches_from_the_list_version():
    kube = FakeKube(
        lists=[page([obj("a", 1)], token="next"), page([obj("b", 2)], version="10")],
        watches=[FakeStream([{"type": "MODIFIED", "object": obj("a", 11)},
                             {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
                             {"type": "DELETED", "object": obj("b", 13)}])],
    )
    seen, synced, informer = run(kube)
    assert seen[:4] == [("ADDED", "a", "1"), ("ADDED", "b", "2"), ("MODIFIED", "a", "11"), ("DELETED", "b", None)]
    assert synced == [True] and informer.synced
    assert kube.calls[0] == ("list", {"limit": str(informer_module.PAGE_SIZE)})
    assert kube.calls[1][1]["continue"] == "next"
    assert kube.calls[2][0] == "watch" and kube.calls[2][1]["resourceVersion"] == "10"
    assert kube.calls[2][1]["allowWatchBookmarks"] == "true"
    # The next watch resumes after the last event seen (13), not from the list's version.
    assert kube.calls[3][1]["resourceVersion"] == "13"


def test_expired_version_relists_and_reports_objects_gone_meanwhile():
    kube = FakeKube(
        lists=[page([obj("a", 1), obj("b", 2)]), page([obj("b", 20)], version="30")],
        watches=[FakeStream([{"type": "ERROR", "object": {"code": 410, "message": "too old"}}]),
                 FakeStream([])],
    )
    seen, synced, _ = run(kube)
    assert ("DELETED", "a", None) in seen  # gone between the watch's end and the relist
    assert ("ADDED", "b", "20") in seen
    assert synced == [True]  # synced once, not again on the relist


def test_a_body_nested_deeper_than_python_default_limit_is_read(monkeypatch):
    import sys

    monkeypatch.setattr(sys, "getrecursionlimit", sys.getrecursionlimit)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(12000)
    try:
        deep = 9990
        poison = obj("poison", 5)
        poison["spec"] = {"args": json.loads("[" * deep + "1" + "]" * deep)}
        kube = FakeKube(lists=[page([obj("a", 1)])],
                        watches=[FakeStream([{"type": "ADDED", "object": poison},
                                             {"type": "ADDED", "object": obj("canary", 6)}], chunk=4096)])
        seen, _, _ = run(kube, until=lambda s: any(k == "canary" for _, k, _ in s))
    finally:
        sys.setrecursionlimit(old)
    names = [key for _, key, _ in seen]
    assert "poison" in names and "canary" in names


def test_an_object_the_reduction_cannot_read_is_skipped_not_fatal():
    def reduce(body):
        if body["metadata"]["name"] == "odd":
            raise ValueError("odd object")
        return ("ns", body["metadata"]["name"]), body["metadata"]["resourceVersion"]

    kube = FakeKube(lists=[page([obj("odd", 1), obj("fine", 2)])],
                    watches=[FakeStream([{"type": "ADDED", "object": obj("later", 3)}])])
    seen, synced, _ = run(kube, reduce=reduce)
    assert [key for _, key, _ in seen[:2]] == ["fine", "later"]
    assert synced == [True]


def test_errors_back_off_and_keep_the_version():
    class Flaky(FakeKube):
        failures = 1

        def open_stream(self, path, query, timeout):
            if self.failures:
                self.failures -= 1
                self.calls.append(("watch-failed", dict(query)))
                raise ConnectionError("connection refused")
            return super().open_stream(path, query, timeout)

    kube = Flaky(lists=[page([obj("a", 1)], version="7")],
                 watches=[FakeStream([{"type": "ADDED", "object": obj("b", 8)}])])
    seen, _, informer = run(kube, until=lambda s: any(k == "b" for _, k, _ in s))
    assert [c[0] for c in kube.calls[:3]] == ["list", "watch-failed", "watch"]
    assert kube.calls[2][1]["resourceVersion"] == "7"  # no relist needed
    assert ("ADDED", "b", "8") in seen


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_lines_are_split_whatever_the_chunk_boundaries(chunk):
    events = [{"type": "ADDED", "object": obj(f"o{i}", i)} for i in range(5)]
    lines = list(informer_module._lines(FakeStream(events, chunk=chunk)))
    assert [json.loads(line)["object"]["metadata"]["name"] for line in lines] == [f"o{i}" for i in range(5)]


def test_events_parsed_while_the_loop_is_busy_are_applied_in_one_wake_up_in_order():
    delivered: list[tuple] = []

    async def main():
        loop = asyncio.get_running_loop()
        informer = Informer(FakeKube([], []), Resource("", "v1", "pods"), "ns", "", lambda body: None,
                            lambda kind, key, owner, view: delivered.append((kind, key[1], view)),
                            lambda: None)
        informer._loop = loop
        scheduled = []
        real = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *args: (scheduled.append(args), real(*args))
        try:
            # The loop runs nothing until this coroutine awaits: the three posts find it busy.
            for version in ("1", "2", "3"):
                informer._post([("MODIFIED", ("ns", "p"), ("ns", "t"), version)])
            await asyncio.sleep(0.01)
            informer._post([("MODIFIED", ("ns", "p"), ("ns", "t"), "4")])
            await asyncio.sleep(0.01)
        finally:
            loop.call_soon_threadsafe = real
        return scheduled

    scheduled = asyncio.run(main())
    assert [view for _, _, view in delivered] == ["1", "2", "3", "4"]
    assert len(scheduled) == 2  # one drain for the first three, one for the fourth
