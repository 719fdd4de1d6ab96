"""The API's configuration file (the chart renders it into a ConfigMap): pure parsing.

    namespace: lime-tasks            # where the tasks live (default: the pod's namespace)
    audiences: [lime-task-api]       # TokenReview audiences a ServiceAccount token must have
    identities:                      # identity -> the applications it may act for
      system:serviceaccount:shop:billing: [billing]
      apikey:partner-x: [partner]
    apiKeys:
      enabled: true                  # look for API-key Secrets in `namespace`
      refreshSeconds: 30
    tokenCacheSeconds: 10
    maxWaitSeconds: 60
    maxBodyBytes: 262144

An identity is the username TokenReview returns for a token
(``system:serviceaccount:<namespace>:<name>`` for a ServiceAccount), or
``apikey:<Secret name>`` for an API key (lime_task_api.auth). Nothing else decides which
application a caller acts for: an identity not listed gets 403.

Every refusal names the key and says what is expected (ConfigError), so a wrong chart
value stops the API at start-up instead of letting it serve with a surprise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from lime_task.models import APP_NAME_MAX, APP_NAME_PATTERN

from .bodies import DEFAULT_MAX_BODY_BYTES

_KEYS = ("namespace", "audiences", "identities", "apiKeys", "tokenCacheSeconds", "maxWaitSeconds", "maxBodyBytes")
_API_KEY_KEYS = ("enabled", "refreshSeconds")
# A namespace name is a DNS label (RFC 1123).
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# One long poll holds a thread and a watch on the API server for its whole length; a
# minute keeps both bounded (clients loop, as TaskStatus.wait does).
DEFAULT_MAX_WAIT_SECONDS = 60
# A TokenReview per request would put the API server on every request's path; a token's
# verdict is reused for this long (a revoked token keeps working at most this long).
DEFAULT_TOKEN_CACHE_SECONDS = 10
DEFAULT_API_KEY_REFRESH_SECONDS = 30


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and the rule."""


@dataclass(frozen=True)
class Settings:
    """What the API serves and whom it lets in. Times in seconds, sizes in bytes."""

    namespace: Optional[str]
    audiences: tuple[str, ...]
    identities: Mapping[str, tuple[str, ...]]
    api_keys_enabled: bool = True
    api_key_refresh_seconds: float = DEFAULT_API_KEY_REFRESH_SECONDS
    token_cache_seconds: float = DEFAULT_TOKEN_CACHE_SECONDS
    max_wait_seconds: int = DEFAULT_MAX_WAIT_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def apps_of(self, identity: str) -> tuple[str, ...]:
        """The applications `identity` may act for (empty: none, so 403)."""
        return self.identities.get(identity, ())


def _number(data: Mapping[str, Any], key: str, default: float, minimum: float, maximum: float, integer: bool) -> Any:
    value = data.get(key, default)
    ok = type(value) is int or (not integer and type(value) is float)
    if not ok or not minimum <= value <= maximum:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{key} must be {kind} from {minimum} to {maximum}, got {value!r}")
    return value


def parse_settings(data: Any) -> Settings:
    """Settings from the configuration's mapping; ConfigError naming the key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"the configuration must be a mapping, got {type(data).__name__}")
    unknown = [key for key in data if key not in _KEYS]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; the keys are {', '.join(_KEYS)}")
    namespace = data.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not _DNS_LABEL.fullmatch(namespace)):
        raise ConfigError(f"namespace must be a namespace name (a DNS label), got {namespace!r}")
    audiences = data.get("audiences", [])
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        raise ConfigError(f"audiences must be a list of non-empty strings, got {audiences!r}")
    identities_raw = data.get("identities", {}) or {}
    if not isinstance(identities_raw, dict):
        raise ConfigError(f"identities must be a mapping of identity to a list of apps, got {identities_raw!r}")
    identities: dict[str, tuple[str, ...]] = {}
    for identity, apps in identities_raw.items():
        where = f"identities[{identity!r}]"
        if not isinstance(identity, str) or not identity:
            raise ConfigError(f"{where}: an identity must be a non-empty string")
        if not isinstance(apps, list) or not apps:
            raise ConfigError(f"{where} must be a non-empty list of application names, got {apps!r}")
        for app in apps:
            if not isinstance(app, str) or len(app) > APP_NAME_MAX or not re.fullmatch(APP_NAME_PATTERN, app):
                raise ConfigError(
                    f"{where}: {app!r} is not an application name (at most {APP_NAME_MAX} characters, "
                    f"pattern {APP_NAME_PATTERN})"
                )
        identities[identity] = tuple(dict.fromkeys(apps))
    api_keys = data.get("apiKeys", {}) or {}
    if not isinstance(api_keys, dict):
        raise ConfigError(f"apiKeys must be a mapping, got {api_keys!r}")
    unknown = [key for key in api_keys if key not in _API_KEY_KEYS]
    if unknown:
        raise ConfigError(f"unknown key apiKeys.{unknown[0]}; the keys are {', '.join(_API_KEY_KEYS)}")
    enabled = api_keys.get("enabled", True)
    if type(enabled) is not bool:
        raise ConfigError(f"apiKeys.enabled must be true or false, got {enabled!r}")
    refresh = _number(
        {"apiKeys.refreshSeconds": api_keys.get("refreshSeconds", DEFAULT_API_KEY_REFRESH_SECONDS)},
        "apiKeys.refreshSeconds", DEFAULT_API_KEY_REFRESH_SECONDS, 1, 3600, False,
    )
    return Settings(
        namespace=namespace,
        audiences=tuple(audiences),
        identities=identities,
        api_keys_enabled=enabled,
        api_key_refresh_seconds=float(refresh),
        token_cache_seconds=float(_number(data, "tokenCacheSeconds", DEFAULT_TOKEN_CACHE_SECONDS, 0, 300, False)),
        max_wait_seconds=_number(data, "maxWaitSeconds", DEFAULT_MAX_WAIT_SECONDS, 1, 300, True),
        max_body_bytes=_number(data, "maxBodyBytes", DEFAULT_MAX_BODY_BYTES, 1024, 16 * 1024 * 1024, True),
    )


def load_settings(path: Path) -> Settings:
    """Settings from a YAML (or JSON) file; ConfigError naming the file and the problem."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read the configuration {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"the configuration {path} is not YAML: {error}") from None
    try:
        return parse_settings(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
