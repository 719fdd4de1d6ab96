"""A pod's volumes on the local node: written to a per-pod directory, tokens kept fresh.

What goes into each volume is decided by the pure ``volumes`` module; this module writes
it to ``<pod dir>/volumes/<volume name>/`` and keeps the ServiceAccount tokens of
projected volumes fresh. The API is reached only through the two callables the node
agent hands in (a token requester and a ConfigMap/Secret reader, both acting as the
node's own identity), so the Node authorizer decides what a pod may get, as on a real
kubelet.

Files are replaced atomically (write, then rename), so a process reading its token while
it is refreshed sees the old or the new one, never half of one. The directory is bind-
mounted (not copied) into the container, so replaced files show through the mount.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from . import volumes
from .volumes import FileItem, TokenSource

log = logging.getLogger("lime-local-node.volumes")

# (service account, namespace, TokenRequest body) -> (token, expiration time)
TokenRequester = Callable[[str, str, dict], "tuple[str, datetime]"]
# A refresh that failed is tried again this much later (the old token still works).
RETRY_SECONDS = 10.0


class TokenError(Exception):
    """The TokenRequest was refused or failed; the pod waits and retries, like kubelet."""


@dataclass
class _Token:
    volume_dir: Path
    source: TokenSource
    refresh_at: float = 0.0  # time.monotonic()


def write_file(directory: Path, item: FileItem) -> None:
    """Atomically (re)place ``item`` under ``directory`` with its mode."""
    path = directory / item.path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(item.data)
        os.chmod(tmp, item.mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class PodVolumes:
    def __init__(self, root: Path, pod: dict, request_token: TokenRequester, lookup: volumes.RawLookup,
                 clock: Callable[[], float] = time.monotonic):
        self.root = root
        self.pod = pod
        self.request_token = request_token
        self.lookup = lookup
        self.clock = clock
        self.tokens: list[_Token] = []
        self.lock = threading.Lock()

    def volume_dir(self, name: str) -> Path:
        return self.root / name

    def prepare(self) -> None:
        """Write every volume a container mounts. ConfigError (a missing ConfigMap or
        Secret) and TokenError propagate: the caller keeps the pod waiting and retries.
        Everything is computed before anything is written, so a retry starts clean."""
        planned: list[tuple[Path, list[FileItem], list[TokenSource]]] = []
        for volume in volumes.volumes_to_prepare(self.pod):
            files, tokens = volumes.render_files(volume, self.pod, self.lookup)
            planned.append((self.volume_dir(volume["name"]), files, tokens))
        fresh = [(_Token(directory, source), self._issue(source)) for directory, _, sources in planned
                 for source in sources]
        for directory, files, _ in planned:
            directory.mkdir(parents=True, exist_ok=True)
            for item in files:
                write_file(directory, item)
        with self.lock:
            self.tokens = []
            for token, (text, refresh_at) in fresh:
                write_file(token.volume_dir, FileItem(token.source.path, text.encode(), token.source.mode))
                token.refresh_at = refresh_at
                self.tokens.append(token)

    def _issue(self, source: TokenSource) -> tuple[str, float]:
        """A new token and the monotonic time at which to replace it."""
        meta = self.pod["metadata"]
        body = volumes.token_request(self.pod, source)
        issued = self.clock()
        try:
            token, expires = self.request_token(volumes.service_account_name(self.pod), meta["namespace"], body)
        except TokenError:
            raise
        except Exception as exc:  # noqa: BLE001 - any API failure: wait and retry
            raise TokenError(f"requesting a token for ServiceAccount "
                             f"{meta['namespace']}/{volumes.service_account_name(self.pod)} failed: {exc}") from exc
        lifetime = (expires - datetime.now(timezone.utc)).total_seconds()
        return token, issued + volumes.refresh_delay(lifetime)

    def host_mounts(self, container: dict) -> list[tuple[str, str, bool]]:
        """(host source, container target, read-only) for each of the container's mounts.
        A missing subPath is created as a directory, as kubelet does."""
        out = []
        for mount in volumes.mounts_for(self.pod, container):
            source = self.volume_dir(mount.volume)
            if mount.sub_path:
                source = source / mount.sub_path
                if not source.exists():
                    source.mkdir(parents=True, exist_ok=True)
            out.append((str(source), mount.target, mount.read_only))
        return out

    def next_refresh(self) -> float | None:
        with self.lock:
            return min((t.refresh_at for t in self.tokens), default=None)

    def refresh_due(self) -> None:
        """Replace each token whose time has come; a failure keeps the old token (still
        valid for the remaining 20% of its life) and tries again soon."""
        now = self.clock()
        with self.lock:
            due = [t for t in self.tokens if t.refresh_at <= now]
        for token in due:
            try:
                text, refresh_at = self._issue(token.source)
                write_file(token.volume_dir, FileItem(token.source.path, text.encode(), token.source.mode))
                token.refresh_at = refresh_at
                log.info("refreshed the token in %s", token.volume_dir / token.source.path)
            except Exception as exc:  # noqa: BLE001 - keep the pod running on the old token
                log.warning("token refresh for %s failed (%s); retrying in %.0fs",
                            token.volume_dir, exc, RETRY_SECONDS)
                token.refresh_at = now + RETRY_SECONDS
