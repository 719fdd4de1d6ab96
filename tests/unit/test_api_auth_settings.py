"""lime_task_api.auth (bearer tokens, TokenReview verdict cache, API keys) and
lime_task_api.settings (the configuration file), without a server."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from lime_task_api.auth import (
    API_KEY_PREFIX,
    TOKEN_CACHE_ENTRIES,
    Authenticator,
    Unauthenticated,
    bearer_token,
    key_digest,
    new_api_key,
)
from lime_task_api.entry import api_key_secret
from lime_task_api.settings import ConfigError, load_settings, parse_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def authenticator(reviews, keys=None, cache=10.0, refresh=30.0, clock=None):
    def review(token):
        reviews.append(token)
        return {"good": "system:serviceaccount:ns:a"}.get(token)

    listed = []

    def list_keys():
        listed.append(1)
        return dict(keys or {})

    auth = Authenticator(review, list_keys if keys is not None else None, cache, refresh, clock or Clock())
    return auth, listed


@pytest.mark.parametrize("header, token", [("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER  abc ", "abc")])
def test_bearer_tokens_are_read_case_insensitively(header, token):
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic abc", "abc", "Bearer a b"])
def test_anything_else_is_unauthenticated(header):
    with pytest.raises(Unauthenticated):
        bearer_token(header)


def test_a_tokens_verdict_is_cached_for_the_configured_time_only():
    reviews, clock = [], Clock()
    auth, _ = authenticator(reviews, clock=clock)
    assert auth.identify("good") == "system:serviceaccount:ns:a"
    assert auth.identify("good") == "system:serviceaccount:ns:a"
    assert reviews == ["good"]
    clock.now += 10.5
    auth.identify("good")
    assert reviews == ["good", "good"]


def test_refused_tokens_are_never_cached():
    reviews = []
    auth, _ = authenticator(reviews)
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            auth.identify("bad")
    assert reviews == ["bad", "bad"]


def test_the_cache_is_bounded():
    auth = Authenticator(lambda token: "someone", None, 60, 30, Clock())
    for number in range(TOKEN_CACHE_ENTRIES + 50):
        auth.identify(f"token-{number}")
    assert len(auth._cache) == TOKEN_CACHE_ENTRIES


def test_api_keys_are_matched_by_hash_without_a_token_review():
    key = new_api_key()
    reviews, clock = [], Clock()
    keys = {key_digest(key): "partner"}
    auth, listed = authenticator(reviews, keys=keys, clock=clock)
    assert auth.identify(key) == "apikey:partner"
    assert reviews == [] and len(listed) == 1


def test_a_new_key_works_within_a_second_and_unknown_keys_cannot_force_a_list_per_request():
    key = new_api_key()
    keys: dict = {}
    clock = Clock()
    auth, listed = authenticator([], keys=keys, clock=clock)
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            auth.identify(key)
    assert len(listed) == 1
    keys[key_digest(key)] = "late"
    clock.now += 1.0
    assert auth.identify(key) == "apikey:late"


def test_a_revoked_key_stops_at_the_next_refresh():
    key = new_api_key()
    keys = {key_digest(key): "partner"}
    clock = Clock()
    auth, _ = authenticator([], keys=keys, cache=100, refresh=30, clock=clock)
    auth.identify(key)
    keys.clear()
    clock.now += 31
    other = new_api_key()
    with pytest.raises(Unauthenticated):
        auth.identify(other)  # the refresh it triggers forgets the revoked key's verdict
    with pytest.raises(Unauthenticated):
        auth.identify(key)


def test_new_keys_are_long_random_and_prefixed():
    keys = {new_api_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(key.startswith(API_KEY_PREFIX) and len(key) == len(API_KEY_PREFIX) + 43 for key in keys)


def test_the_secret_of_a_key_holds_only_its_hash():
    import base64

    key = new_api_key()
    secret = api_key_secret("partner", key_digest(key), "apps")
    assert secret["metadata"]["labels"] == {"limetask.dev/api-key": "true"}
    assert base64.b64decode(secret["data"]["sha256"]).decode() == key_digest(key)
    assert key not in str(secret)


# -- settings ---------------------------------------------------------------------------


def test_a_full_configuration_is_read():
    settings = parse_settings({
        "namespace": "apps", "audiences": ["lime-task-api"],
        "identities": {"system:serviceaccount:shop:billing": ["billing", "billing", "reports"]},
        "apiKeys": {"enabled": False, "refreshSeconds": 5}, "tokenCacheSeconds": 0, "maxWaitSeconds": 30,
        "maxBodyBytes": 4096,
    })
    assert settings.apps_of("system:serviceaccount:shop:billing") == ("billing", "reports")
    assert settings.apps_of("someone else") == ()
    assert (settings.api_keys_enabled, settings.api_key_refresh_seconds, settings.token_cache_seconds) == (False, 5, 0)
    assert (settings.max_wait_seconds, settings.max_body_bytes, settings.audiences) == (30, 4096, ("lime-task-api",))


def test_an_empty_configuration_maps_nobody():
    settings = parse_settings(None)
    assert settings.identities == {} and settings.namespace is None


@pytest.mark.parametrize("data, words", [
    ([], "must be a mapping"),
    ({"namspace": "x"}, "unknown key 'namspace'"),
    ({"namespace": "Not_A_Label"}, "namespace must be"),
    ({"audiences": "lime"}, "audiences must be a list"),
    ({"audiences": [""]}, "audiences must be a list"),
    ({"identities": ["a"]}, "identities must be a mapping"),
    ({"identities": {"a": []}}, "identities['a'] must be a non-empty list"),
    ({"identities": {"a": "billing"}}, "identities['a'] must be a non-empty list"),
    ({"identities": {"a": ["bad app"]}}, "'bad app' is not an application name"),
    ({"identities": {"a": ["x" * 64]}}, "is not an application name"),
    ({"apiKeys": {"enable": True}}, "apiKeys.enable"),
    ({"apiKeys": {"enabled": "yes"}}, "apiKeys.enabled must be true or false"),
    ({"apiKeys": {"refreshSeconds": 0}}, "apiKeys.refreshSeconds must be"),
    ({"maxWaitSeconds": 0}, "maxWaitSeconds must be an integer from 1 to 300"),
    ({"maxWaitSeconds": 1.5}, "maxWaitSeconds must be an integer"),
    ({"maxWaitSeconds": True}, "maxWaitSeconds must be an integer"),
    ({"maxBodyBytes": 10}, "maxBodyBytes must be an integer from 1024"),
    ({"tokenCacheSeconds": -1}, "tokenCacheSeconds must be a number from 0 to 300"),
])
def test_bad_configurations_are_refused_naming_the_key(data, words):
    with pytest.raises(ConfigError) as caught:
        parse_settings(data)
    assert words in str(caught.value)


def test_a_configuration_file_names_itself_in_its_errors(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("identities:\n  a: [ok]\nmaxWaitSeconds: 0\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(path) in str(caught.value) and "maxWaitSeconds" in str(caught.value)
    path.write_text("identities: [unclosed\n")
    with pytest.raises(ConfigError, match="is not YAML"):
        load_settings(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=10))
def test_any_yaml_value_is_either_settings_or_a_config_error(data):
    try:
        parse_settings(data)
    except ConfigError:
        pass
