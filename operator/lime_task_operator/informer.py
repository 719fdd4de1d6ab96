"""List-then-watch caches of LimeTasks, our Jobs and their pods (client-go's reflector).

Why not kopf's watches and indexes: kopf runs one worker (an asyncio task with its own
event queue) per object, keeps a memory record per object for as long as the object
exists, and with indexes declared it lets no handler run until every object of every
indexed kind has been indexed. With a worker limit below the number of objects that
never happens (the workers that finished indexing hold their slots while they wait for
the rest: nolar/kopf#1243), so an operator restarted beside ~200 finished tasks served
nothing at all; without a limit, every raw body of the initial listing stays in memory
until the last one is indexed. Here one asyncio task per (kind, namespace) lists in
pages of ``PAGE_SIZE`` and then watches from the list's resourceVersion; each object is
reduced to the slim view the decisions need (views.py) as soon as it is parsed, so
memory grows with the views, not with raw bodies or per-object workers, and readiness
is exact: `synced` is set when every initial list has been applied. kopf still runs the
operator's lifecycle (start-up, clean-up, the health endpoint, logging).

Everything runs on the operator's event loop, so the cache needs no locks. In 0.2.0
each informer was a thread handing its events to the loop; kube.py gives the figures
that moved them onto it. A chunk of the stream that holds several events is applied as
one batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Optional
from urllib.parse import quote

from . import metrics
from .kube import Gone, Kube, KubeError

log = logging.getLogger(__name__)

# Objects per LIST page: bounds the raw JSON held at once during a (re)list.
PAGE_SIZE = 500
# The API server ends a watch after this many seconds (plus up to the same again, it
# randomises); the client gives up reading a little after that, so a connection that
# silently died (a load balancer, a restarted API server) never leaves the cache deaf.
WATCH_SERVER_TIMEOUT = 240
WATCH_READ_TIMEOUT = 270
CONNECT_TIMEOUT = 10
# Back-off between failed list/watch attempts (seconds): 1, 2, 4 … at most this.
BACKOFF_MAX = 30.0
# Bodies are parsed on the loop's thread. The API server accepts JSON nested up to
# 10,000 levels (Go's encoding/json limit); Python's C decoder recurses once per level,
# counted against the recursion limit (raised above that depth in entry.py) and using
# the main thread's stack: 11,000 levels parse within the usual 8 MiB (measured), so a
# poison object (a task whose args nest 3,000 levels deep once stopped every watch) is
# read and refused (views.py), never fatal.

Key = tuple[str, str]
# (event type, object key, owner key, view). The owner key groups objects by task:
# a task's own key, the task a Job or pod belongs to. View None means "not kept".
Reduce = Callable[[dict[str, Any]], Optional[tuple[Key, Any]]]


@dataclass(frozen=True)
class Resource:
    """An API resource by its REST coordinates, e.g. Resource("batch", "v1", "jobs")."""

    group: str
    version: str
    plural: str

    def path(self, namespace: Optional[str]) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace:
            return f"{base}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{base}/{self.plural}"

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


class Informer:
    """One resource kind in one namespace (None: cluster-wide), listed then watched.

    ``reduce(body)`` returns ``(owner_key, view)`` to keep, or None to ignore the object;
    ``deliver(type, key, owner_key, view)`` is called on the event loop for ADDED,
    MODIFIED and DELETED (view None), and a relist that no longer contains an object
    delivers DELETED for it. ``on_synced()`` is called on the loop once, after the
    first complete list has been delivered.
    """

    def __init__(
        self,
        kube: Kube,
        resource: Resource,
        namespace: Optional[str],
        label_selector: str,
        reduce: Reduce,
        deliver: Callable[[str, Key, Optional[Key], Any], None],
        on_synced: Callable[[], None],
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self._reduce = reduce
        self._deliver = deliver
        self._on_synced = on_synced
        self._task: Optional[asyncio.Task] = None
        # The resourceVersion of the last list or applied watch batch: a broken watch
        # resumes from here (client-go's reflector), so it neither replays what was
        # applied (a deleted object would come back as MODIFIED) nor relists for it.
        self._version: Optional[str] = None
        # Keys delivered and not deleted: what a relist must compare against.
        self._known: set[Key] = set()
        self.synced = False
        self.last_contact = 0.0  # time.monotonic() of the last successful exchange
        self.errors = 0  # consecutive failures (0 while healthy)

    @property
    def name(self) -> str:
        return f"{self.resource}@{self.namespace or '*'}"

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start listing and watching, on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"informer-{self.name}")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # ------------------------------------------------------------ list, then watch

    async def _run(self) -> None:
        while True:
            try:
                if self._version is None:
                    self._version = await self._list()
                await self._watch()
                self.errors = 0
            except Gone:
                log.info("%s: resourceVersion expired; listing again", self.name)
                self._version = None
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - every failure is retried with back-off
                self.errors += 1
                delay = min(BACKOFF_MAX, 2.0 ** (self.errors - 1))
                log.warning("%s: %s; retrying in %.0fs", self.name, error, delay)
                await asyncio.sleep(delay)

    def _query(self, **params: str) -> tuple[str, list[tuple[str, str]]]:
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        return self.resource.path(self.namespace), list(params.items())

    async def _list(self) -> str:
        seen: set[Key] = set()
        token = ""
        while True:
            params = {"limit": str(PAGE_SIZE)}
            if token:
                params["continue"] = token
            # Gone (an expired continue token) lists again from the start.
            page = await self.kube.get_raw(*self._query(**params), timeout=(CONNECT_TIMEOUT, WATCH_READ_TIMEOUT))
            batch = []
            for item in page.get("items") or []:
                key = _key(item)
                seen.add(key)
                batch.append(("ADDED", key) + self._reduced(item))
            self.last_contact = time.monotonic()
            self._apply(batch)
            metadata = page.get("metadata") or {}
            token = metadata.get("continue") or ""
            if not token:
                version = str(metadata.get("resourceVersion") or "")
                break
        # Objects known from before and missing from this list were deleted meanwhile.
        self._listed(seen)
        return version

    def _reduced(self, body: dict[str, Any]) -> tuple[Optional[Key], Any]:
        try:
            kept = self._reduce(body)
        except Exception:  # noqa: BLE001 - one odd object must not stop the watch
            log.exception("%s: cannot read %s; ignoring it", self.name, _key(body))
            kept = None
        return kept if kept is not None else (None, None)

    async def _watch(self) -> None:
        """Watch from self._version until the API server ends the watch, advancing the
        version with each batch applied; raises Gone when it is too old to watch from."""
        version = self._version or ""
        query = self._query(watch="1", resourceVersion=version, allowWatchBookmarks="true",
                            timeoutSeconds=str(WATCH_SERVER_TIMEOUT))
        # Gone when refused outright with 410 (not as an ERROR event): _run relists.
        stream = await self.kube.open_stream(*query, timeout=(CONNECT_TIMEOUT, WATCH_READ_TIMEOUT))
        self.last_contact = time.monotonic()
        received = metrics.WATCH_EVENTS.labels(resource=self.resource.plural)
        try:
            async for lines in _lines(stream.chunks()):
                batch = []
                for line in lines:
                    event = json.loads(line)
                    kind = event.get("type")
                    body = event.get("object") or {}
                    self.last_contact = time.monotonic()
                    if kind == "ERROR":
                        self._apply(batch)  # what came before the error stands
                        self._version = version
                        if body.get("code") == 410:
                            raise Gone(410, body.get("message") or "resourceVersion too old")
                        raise KubeError(int(body.get("code") or 0), body.get("message") or "watch error")
                    version = str((body.get("metadata") or {}).get("resourceVersion") or version)
                    if kind == "BOOKMARK":
                        continue
                    received.inc()
                    key = _key(body)
                    if kind == "DELETED":
                        batch.append(("DELETED", key, None, None))
                    elif kind in ("ADDED", "MODIFIED"):
                        batch.append((kind, key) + self._reduced(body))
                self._apply(batch)
                self._version = version
        finally:
            stream.close()

    # ------------------------------------------------------------ deliveries

    def _listed(self, seen: set[Key]) -> None:
        self._apply([("DELETED", key, None, None) for key in self._known - seen])
        if not self.synced:
            self.synced = True
            self._on_synced()

    def _apply(self, batch: list[tuple]) -> None:
        for kind, key, owner, view in batch:
            if kind == "DELETED":
                if key in self._known:
                    self._known.discard(key)
                    self._deliver("DELETED", key, None, None)
                continue
            if view is None:  # not kept (ignored object): treat as gone
                if key in self._known:
                    self._known.discard(key)
                    self._deliver("DELETED", key, None, None)
                continue
            self._known.add(key)
            self._deliver(kind, key, owner, view)


def _key(body: dict[str, Any]) -> Key:
    metadata = body.get("metadata") or {}
    return (metadata.get("namespace") or "", metadata.get("name") or "")


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """Newline-delimited JSON, as the complete non-empty lines of each chunk (a list, so
    that the events that arrived together are applied together); a line cut by a chunk
    boundary waits for the rest. Linear in the bytes received, however small the chunks
    a large object (a LimeTask can be 1.5 MB) arrives in."""
    pending = bytearray()
    async for chunk in chunks:
        end = chunk.rfind(b"\n")
        if end < 0:
            pending += chunk
            continue
        if pending:
            pending += chunk[:end]
            text, pending = bytes(pending), bytearray(chunk[end + 1:])
        else:
            text, pending = chunk[:end], bytearray(chunk[end + 1:])
        lines = [line for line in text.split(b"\n") if line.strip()]
        if lines:
            yield lines
    if pending.strip():
        yield [bytes(pending)]
