"""Who is calling: a bearer token (RFC 6750) becomes an identity, or 401.

Two kinds of credential:
- a Kubernetes ServiceAccount token (a projected token with the audience the chart
  sets), checked by the API server's TokenReview API; the identity is the username it
  returns, ``system:serviceaccount:<namespace>:<name>``;
- an API key (``ltk_`` + 43 URL-safe characters, 256 random bits) for callers outside
  the cluster. Only its SHA-256 is kept, hex-encoded in the `sha256` entry of a Secret
  labelled ``limetask.dev/api-key=true`` in the API's namespace; the identity is
  ``apikey:<Secret name>``. A plain hash suffices: the key has 256 bits of entropy, so
  no dictionary attack applies (unlike passwords, which need a slow hash).

Which applications an identity may act for is the configuration's business
(lime_task_api.settings), not this module's. The Kubernetes calls are injected
(`review`, `list_keys`), so everything here is tested without a cluster.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from typing import Callable, Mapping, Optional

API_KEY_PREFIX = "ltk_"
API_KEY_LABEL = "limetask.dev/api-key"
API_KEY_DATA = "sha256"
API_KEY_IDENTITY_PREFIX = "apikey:"
# Tokens whose verdict is remembered; past this the oldest are forgotten, so a flood of
# distinct tokens cannot grow the API's memory.
TOKEN_CACHE_ENTRIES = 10_000
# A key that is not (yet) known makes the API re-read the Secrets, at most this often:
# a new key works within a second, and unknown keys cannot make it list Secrets per request.
API_KEY_REREAD_SECONDS = 1.0


class Unauthenticated(Exception):
    """No credential, or one that is not valid: HTTP 401. The message says which."""


def bearer_token(authorization: Optional[str]) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; Unauthenticated if the
    header is missing or of another scheme (the scheme is case-insensitive, RFC 7235)."""
    if not authorization:
        raise Unauthenticated("no credential: send Authorization: Bearer <token>")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthenticated("the Authorization header must be: Bearer <token>")
    return token


def key_digest(key: str) -> str:
    """The hex SHA-256 of a token: what a key's Secret holds, and the cache's key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_api_key() -> str:
    """A fresh API key: ``ltk_`` + 256 random bits, URL-safe base64 (43 characters)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


class Authenticator:
    """Token -> identity, thread-safe (requests are served from a thread pool).

    `review(token)` is the TokenReview: the username, or None if the API server says
    the token is not valid for the audiences. `list_keys()` returns {hex sha256: Secret
    name} of the API-key Secrets (None: API keys are off). `clock` is time.monotonic in
    production, a fake one in tests. Positive verdicts are cached for `cache_seconds`.
    """

    def __init__(
        self,
        review: Callable[[str], Optional[str]],
        list_keys: Optional[Callable[[], Mapping[str, str]]],
        cache_seconds: float,
        key_refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._review, self._list_keys, self._clock = review, list_keys, clock
        self._cache_seconds, self._key_refresh = cache_seconds, key_refresh_seconds
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._keys: Mapping[str, str] = {}
        self._keys_read_at: Optional[float] = None
        self._lock = threading.Lock()
        self._keys_lock = threading.Lock()

    def identify(self, token: str) -> str:
        """The caller's identity; Unauthenticated if the token is not valid."""
        digest = key_digest(token)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(digest)
            if cached is not None and cached[1] > now:
                return cached[0]
        if token.startswith(API_KEY_PREFIX) and self._list_keys is not None:
            identity = self._api_key_identity(digest)
        else:
            username = self._review(token)
            identity = username if username else None
        if identity is None:
            raise Unauthenticated("the credential is not valid (unknown or revoked API key, or a token the "
                                  "API server does not accept for this audience)")
        self._remember(digest, identity, now)
        return identity

    def _remember(self, digest: str, identity: str, now: float) -> None:
        if self._cache_seconds <= 0:
            return
        with self._lock:
            self._cache[digest] = (identity, now + self._cache_seconds)
            self._cache.move_to_end(digest)
            while len(self._cache) > TOKEN_CACHE_ENTRIES:
                self._cache.popitem(last=False)

    def _api_key_identity(self, digest: str) -> Optional[str]:
        with self._keys_lock:
            now = self._clock()
            stale = self._keys_read_at is None or now - self._keys_read_at >= self._key_refresh
            unknown_and_rereadable = digest not in self._keys and (
                self._keys_read_at is None or now - self._keys_read_at >= API_KEY_REREAD_SECONDS
            )
            if stale or unknown_and_rereadable:
                self._keys = dict(self._list_keys())
                self._keys_read_at = now
                # A revoked key must stop working now, not when its cache entry expires.
                with self._lock:
                    for cached in [d for d, (who, _) in self._cache.items() if who.startswith(API_KEY_IDENTITY_PREFIX)]:
                        if cached not in self._keys:
                            del self._cache[cached]
            name = self._keys.get(digest)
        return API_KEY_IDENTITY_PREFIX + name if name else None
