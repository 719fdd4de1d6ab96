"""Operator settings from the environment: defaults, parsing, and clear errors."""

import pytest

from lime_task_operator.settings import DEFAULT_TTL_SECONDS, SettingsError, load_settings

P = "LIME_TASK_OPERATOR_"


def test_defaults_when_nothing_is_set():
    settings = load_settings({})
    assert settings.default_image == ""
    assert settings.app_images == {}
    assert settings.allowed_images == ()
    assert settings.max_running == 0 and settings.max_running_per_app == 0
    assert settings.default_ttl_seconds == DEFAULT_TTL_SECONDS == 86400
    assert settings.namespaces == ()
    assert settings.broker_url == "" and not settings.events_enabled
    assert settings.exchange == "lime_task"
    assert settings.extra_env == {}
    assert not settings.limited


def test_every_variable_is_read():
    settings = load_settings({
        P + "DEFAULT_IMAGE": "registry.local/runner:1",
        P + "APP_IMAGES": '{"billing": "registry.local/billing:2"}',
        P + "ALLOWED_IMAGES": "registry.local/, ghcr.io/lime/ ,",
        P + "MAX_RUNNING": "10",
        P + "MAX_RUNNING_PER_APP": "3",
        P + "DEFAULT_TTL_SECONDS": "60",
        P + "NAMESPACES": "team-a, team-b",
        P + "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/",
        P + "EXCHANGE": "events",
        P + "EXTRA_ENV": '{"PYTHONPATH": "/srv/tasks"}',
    })
    assert settings.default_image == "registry.local/runner:1"
    assert settings.app_images == {"billing": "registry.local/billing:2"}
    assert settings.allowed_images == ("registry.local/", "ghcr.io/lime/")
    assert (settings.max_running, settings.max_running_per_app) == (10, 3)
    assert settings.limited
    assert settings.default_ttl_seconds == 60
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.events_enabled and settings.exchange == "events"
    assert settings.extra_env == {"PYTHONPATH": "/srv/tasks"}


@pytest.mark.parametrize(
    "name, value, fragment",
    [
        ("MAX_RUNNING", "many", "MAX_RUNNING must be a whole number"),
        ("MAX_RUNNING_PER_APP", "-1", "MAX_RUNNING_PER_APP must be >= 0"),
        ("DEFAULT_TTL_SECONDS", "1.5", "DEFAULT_TTL_SECONDS must be a whole number"),
        ("APP_IMAGES", "{not json", "APP_IMAGES must be a JSON object"),
        ("APP_IMAGES", '["a"]', "APP_IMAGES must be a JSON object mapping strings"),
        ("APP_IMAGES", '{"bad app!": "img"}', "'bad app!' is not a valid app name"),
        ("EXTRA_ENV", '{"A": 1}', "EXTRA_ENV must be a JSON object mapping strings"),
        ("EXTRA_ENV", '{"1X": "y"}', "'1X' is not a valid environment variable name"),
        ("NAMESPACES", "ok,Not_OK", "'Not_OK' is not a valid namespace name"),
        ("BROKER_URL", "http://user:secret@host/", "BROKER_URL must start with amqp://"),
        ("CONTAINER_START_TIMEOUT_SECONDS", "0", "CONTAINER_START_TIMEOUT_SECONDS must be >= 1"),
        ("CONTAINER_START_TIMEOUT_SECONDS", "5m", "CONTAINER_START_TIMEOUT_SECONDS must be a whole number"),
    ],
)
def test_bad_values_name_the_variable(name, value, fragment):
    with pytest.raises(SettingsError) as caught:
        load_settings({P + name: value})
    assert P + name in str(caught.value)
    assert fragment in str(caught.value)


def test_all_problems_are_reported_at_once_and_passwords_are_hidden():
    with pytest.raises(SettingsError) as caught:
        load_settings({P + "MAX_RUNNING": "x", P + "BROKER_URL": "http://user:secret@host/"})
    message = str(caught.value)
    assert "MAX_RUNNING" in message and "BROKER_URL" in message
    assert "secret" not in message


def test_container_start_timeout_defaults_to_five_minutes():
    from lime_task_operator.settings import DEFAULT_CONTAINER_START_TIMEOUT_SECONDS

    assert load_settings({}).container_start_timeout_seconds == DEFAULT_CONTAINER_START_TIMEOUT_SECONDS == 300
    assert load_settings({P + "CONTAINER_START_TIMEOUT_SECONDS": "45"}).container_start_timeout_seconds == 45


def test_kube_events_choice_and_what_it_records():
    assert load_settings({}).kube_events == "failures"
    assert load_settings({}).records_event("FAILURE") and not load_settings({}).records_event("SUCCESS")
    everything = load_settings({P + "KUBE_EVENTS": "all"})
    assert everything.records_event("PENDING") and everything.records_event("SUCCESS")
    assert not load_settings({P + "KUBE_EVENTS": "none"}).records_event("FAILURE")
    with pytest.raises(SettingsError, match="KUBE_EVENTS must be one of all, failures, none, got 'some'"):
        load_settings({P + "KUBE_EVENTS": "some"})
