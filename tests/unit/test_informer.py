"""The informer: paged list, watch from the list's resourceVersion, relist on 410, any body.

A fake API (pages and watch streams as the API server sends them, newline-delimited
JSON cut at arbitrary byte boundaries) drives a real Informer on a real event loop;
deliveries are collected there.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from lime_task_operator import informer as informer_module
from lime_task_operator import kube as kube_module
from lime_task_operator.informer import Informer, Resource


def obj(name: str, version: int, **status) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": str(version)}, "status": status}


class FakeStream:
    """A watch's body in chunks of `chunk` bytes (kube.WatchStream's interface)."""

    def __init__(self, events: list[dict], chunk: int = 7) -> None:
        self.data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
        self.chunk = chunk
        self.closed = False

    async def chunks(self):
        for start in range(0, len(self.data), self.chunk):
            yield self.data[start:start + self.chunk]
            await asyncio.sleep(0)

    def close(self):
        self.closed = True


class FakeKube:
    """Pages for successive LISTs and streams for successive WATCHes; records calls."""

    def __init__(self, lists: list[list[dict]], watches: list[FakeStream]) -> None:
        self.lists = lists
        self.watches = watches
        self.opened: list[FakeStream] = []
        self.calls: list[tuple[str, dict]] = []
        self.done = asyncio.Event()

    async def get_raw(self, path, query, timeout):
        self.calls.append(("list", dict(query)))
        return self.lists.pop(0)

    async def open_stream(self, path, query, timeout):
        self.calls.append(("watch", dict(query)))
        if not self.watches:
            self.done.set()
            await asyncio.sleep(5)
            raise RuntimeError("no more watches")
        self.opened.append(self.watches.pop(0))
        return self.opened[-1]


def run(kube: FakeKube, reduce=None, until=lambda seen: False, seconds: float = 5.0):
    seen: list[tuple] = []
    synced: list[bool] = []

    async def main():
        kube.done = asyncio.Event()  # bound to this loop
        informer = Informer(kube, Resource("limetask.dev", "v1alpha1", "limetasks"), "ns", "",
                            reduce or (lambda body: ((body["metadata"]["namespace"], body["metadata"]["name"]),
                                                     body["metadata"]["resourceVersion"])),
                            lambda kind, key, owner, view: seen.append((kind, key[1], view)),
                            lambda: synced.append(True))
        informer.start()
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

        async def open_stream(self, path, query, timeout):
            if self.failures:
                self.failures -= 1
                self.calls.append(("watch-failed", dict(query)))
                raise ConnectionError("connection refused")
            return await super().open_stream(path, query, timeout)

    kube = Flaky(lists=[page([obj("a", 1)], version="7")],
                 watches=[FakeStream([{"type": "ADDED", "object": obj("b", 8)}])])
    seen, _, informer = run(kube, until=lambda s: any(k == "b" for _, k, _ in s))
    assert [c[0] for c in kube.calls[:3]] == ["list", "watch-failed", "watch"]
    assert kube.calls[2][1]["resourceVersion"] == "7"  # no relist needed
    assert ("ADDED", "b", "8") in seen


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_lines_are_split_whatever_the_chunk_boundaries(chunk):
    events = [{"type": "ADDED", "object": obj(f"o{i}", i)} for i in range(5)]

    async def collect():
        return [line async for lines in informer_module._lines(FakeStream(events, chunk=chunk).chunks())
                for line in lines]

    lines = asyncio.run(collect())
    assert [json.loads(line)["object"]["metadata"]["name"] for line in lines] == [f"o{i}" for i in range(5)]


def test_events_that_arrive_together_are_applied_together_in_order_and_the_stream_is_closed():
    events = [{"type": "MODIFIED", "object": obj("p", version)} for version in (1, 2, 3)]
    stream = FakeStream(events, chunk=1 << 20)  # all three in one chunk
    kube = FakeKube(lists=[page([])], watches=[stream])
    batches: list[int] = []
    real_apply = Informer._apply

    def counting_apply(self, batch):
        if batch:
            batches.append(len(batch))
        real_apply(self, batch)

    Informer._apply = counting_apply
    try:
        seen, _, _ = run(kube, until=lambda s: len(s) == 3)
    finally:
        Informer._apply = real_apply
    assert [view for _, _, view in seen] == ["1", "2", "3"]
    assert batches == [3]
    assert stream.closed  # the watch ended: its connection is dropped, not left open


def test_an_error_event_keeps_what_came_before_it_and_relists():
    kube = FakeKube(
        lists=[page([obj("a", 1)]), page([obj("a", 1), obj("b", 2)], version="5")],
        watches=[FakeStream([{"type": "ADDED", "object": obj("b", 2)},
                             {"type": "ERROR", "object": {"code": 410, "message": "too old"}}], chunk=1 << 20),
                 FakeStream([])],
    )
    seen, _, _ = run(kube)
    assert ("ADDED", "b", "2") in seen
    assert [call for call, _ in kube.calls[:4]] == ["list", "watch", "list", "watch"]


def test_stop_cancels_a_watch_that_waits_for_events():
    class Silent(FakeStream):
        async def chunks(self):
            await asyncio.sleep(60)
            yield b""

    stream = Silent([])

    async def main():
        kube = FakeKube(lists=[page([])], watches=[stream])
        informer = Informer(kube, Resource("", "v1", "pods"), "ns", "", lambda body: None,
                            lambda *args: None, lambda: None)
        informer.start()
        while not kube.opened:
            await asyncio.sleep(0.01)
        informer.stop()
        await asyncio.wait_for(asyncio.gather(informer._task, return_exceptions=True), 1)
        return informer._task

    task = asyncio.run(main())
    assert task.cancelled() and stream.closed


class BreakingStream(FakeStream):
    """Sends its events, then half of one more, then the connection breaks."""

    async def chunks(self):
        async for chunk in super().chunks():
            yield chunk
        yield b'{"type":"MODIFIED","obj'
        raise kube_module.Unavailable(0, "watch broken: connection reset")


def test_a_broken_watch_resumes_after_what_it_applied_and_replays_nothing():
    kube = FakeKube(
        lists=[page([obj("a", 5)], version="10")],
        watches=[BreakingStream([{"type": "MODIFIED", "object": obj("a", 11)},
                                 {"type": "DELETED", "object": obj("a", 13)},
                                 {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}}],
                                chunk=1 << 20),
                 FakeStream([])],
    )
    seen, _, _ = run(kube, until=lambda s: len(kube.calls) >= 3)
    assert seen == [("ADDED", "a", "5"), ("MODIFIED", "a", "11"), ("DELETED", "a", None)]
    watches = [query["resourceVersion"] for call, query in kube.calls if call == "watch"]
    assert watches[:2] == ["10", "20"]  # resumed after the bookmark, not from the list's version
    assert [call for call, _ in kube.calls].count("list") == 1


def test_a_watch_refused_with_410_relists():
    class Refusing(FakeKube):
        refusals = 1

        async def open_stream(self, path, query, timeout):
            if self.refusals:
                self.refusals -= 1
                self.calls.append(("watch-410", dict(query)))
                raise kube_module.Gone(410, "too old resource version: 10 (500)")
            return await super().open_stream(path, query, timeout)

    kube = Refusing(lists=[page([obj("a", 1)], version="10"), page([obj("b", 2)], version="500")],
                    watches=[FakeStream([])])
    seen, _, informer = run(kube, until=lambda s: any(k == "b" for _, k, _ in s))
    assert [call for call, _ in kube.calls[:4]] == ["list", "watch-410", "list", "watch"]
    assert kube.calls[3][1]["resourceVersion"] == "500"
    assert ("DELETED", "a", None) in seen and ("ADDED", "b", "2") in seen
    assert informer.errors == 0  # a relist, not a failure backed off
