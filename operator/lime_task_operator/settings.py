"""Operator settings, read once from the environment (prefix ``LIME_TASK_OPERATOR_``).

The names and meanings are part of the internal contract (docs/architecture.md) because
the Helm chart and the local dev cluster set them. Every problem is reported at start-up,
all at once and naming the variable, so a bad Deployment fails fast instead of failing
task by task later.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from lime_task.constants import DEFAULT_EXCHANGE
from lime_task.events import redact_url
from lime_task.models import APP_NAME_PATTERN

PREFIX = "LIME_TASK_OPERATOR_"
# KUBE_EVENTS: "all" transitions, "failures" only (the default), or "none". Every Event is
# an API write and an etcd object; the status's conditions already record each
# transition, and failures are what `kubectl describe`, event exporters and alerts look
# for. "all" was 3.5 Events per task (issue #16).
KUBE_EVENTS_CHOICES = ("all", "failures", "none")
DEFAULT_KUBE_EVENTS = "failures"
DEFAULT_TTL_SECONDS = 24 * 3600
# How long a task's container may wait for an image or its configuration (kubelet's
# ErrImagePull, ImagePullBackOff, CreateContainerConfigError, ...) before the task fails.
# Five minutes covers kubelet's image-pull back-off reaching its 300 s cap once, i.e. a
# registry outage of a few minutes or a Secret created just after the task.
DEFAULT_CONTAINER_START_TIMEOUT_SECONDS = 300

# A DNS-1123 label: what a namespace name must be.
_NAMESPACE_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SettingsError(ValueError):
    """The operator's environment is invalid; the message lists every problem found."""


@dataclass(frozen=True)
class Settings:
    default_image: str = ""
    app_images: Mapping[str, str] = field(default_factory=dict)
    # Images a task may name in spec.image besides the configured ones (jobs.image_allowed);
    # empty means only the configured images (DEFAULT_IMAGE, APP_IMAGES).
    allowed_images: tuple[str, ...] = ()
    # 0 means unlimited, for both limits.
    max_running: int = 0
    max_running_per_app: int = 0
    default_ttl_seconds: int = DEFAULT_TTL_SECONDS
    # Empty means cluster-wide.
    namespaces: tuple[str, ...] = ()
    # Empty means events are disabled (tasks say so in their EventPublished condition).
    broker_url: str = ""
    exchange: str = DEFAULT_EXCHANGE
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # The ServiceAccount of task pods (the chart's no-rights account); empty means the
    # namespace's default. Its token is never mounted either way.
    task_service_account: str = ""
    # Seconds a container may wait for a reason in attempts.STUCK_WAITING_REASONS before
    # its task fails with that reason (transitions.observe); at least 1.
    container_start_timeout_seconds: int = DEFAULT_CONTAINER_START_TIMEOUT_SECONDS
    # Port of the Prometheus /metrics endpoint (metrics.py); 0 serves none.
    metrics_port: int = 0
    # Which status transitions are also recorded as Kubernetes Events (KUBE_EVENTS).
    kube_events: str = DEFAULT_KUBE_EVENTS

    def records_event(self, state: str) -> bool:
        """Whether a transition to `state` is recorded as a Kubernetes Event."""
        return self.kube_events == "all" or (self.kube_events == "failures" and state == "FAILURE")

    @property
    def events_enabled(self) -> bool:
        return bool(self.broker_url)

    @property
    def limited(self) -> bool:
        """Whether admission has to count running tasks at all."""
        return self.max_running > 0 or self.max_running_per_app > 0


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; raise SettingsError naming every bad variable."""
    env = os.environ if environ is None else environ
    problems: list[str] = []

    def raw(name: str) -> str:
        return env.get(PREFIX + name, "").strip()

    def non_negative_int(name: str, default: int) -> int:
        text = raw(name)
        if not text:
            return default
        try:
            value = int(text)
        except ValueError:
            problems.append(f"{PREFIX}{name} must be a whole number >= 0, got {text!r}")
            return default
        if value < 0:
            problems.append(f"{PREFIX}{name} must be >= 0, got {value}")
            return default
        return value

    def json_string_map(name: str) -> dict[str, str]:
        text = raw(name)
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            problems.append(f"{PREFIX}{name} must be a JSON object of strings: {error}")
            return {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            problems.append(
                f"{PREFIX}{name} must be a JSON object mapping strings to strings, got {text!r}"
            )
            return {}
        return value

    def comma_list(name: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in raw(name).split(",") if item.strip())

    app_images = json_string_map("APP_IMAGES")
    for app, image in app_images.items():
        if not re.fullmatch(APP_NAME_PATTERN, app):
            problems.append(f"{PREFIX}APP_IMAGES: {app!r} is not a valid app name")
        if not image.strip():
            problems.append(f"{PREFIX}APP_IMAGES: the image for app {app!r} is empty")

    extra_env = json_string_map("EXTRA_ENV")
    for name in extra_env:
        if not _ENV_NAME_PATTERN.fullmatch(name):
            problems.append(f"{PREFIX}EXTRA_ENV: {name!r} is not a valid environment variable name")

    namespaces = comma_list("NAMESPACES")
    for namespace in namespaces:
        if not _NAMESPACE_PATTERN.fullmatch(namespace) or len(namespace) > 63:
            problems.append(f"{PREFIX}NAMESPACES: {namespace!r} is not a valid namespace name")

    broker_url = raw("BROKER_URL")
    if broker_url and not re.match(r"^amqps?://", broker_url):
        problems.append(f"{PREFIX}BROKER_URL must start with amqp:// or amqps://, got {redact_url(broker_url)!r}")

    exchange = raw("EXCHANGE") or DEFAULT_EXCHANGE

    task_service_account = raw("TASK_SERVICE_ACCOUNT")
    if task_service_account and not re.fullmatch(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", task_service_account):
        problems.append(f"{PREFIX}TASK_SERVICE_ACCOUNT: {task_service_account!r} is not a valid ServiceAccount name")
    container_start_timeout = non_negative_int("CONTAINER_START_TIMEOUT_SECONDS", DEFAULT_CONTAINER_START_TIMEOUT_SECONDS)
    if container_start_timeout < 1:
        problems.append(f"{PREFIX}CONTAINER_START_TIMEOUT_SECONDS must be >= 1, got {container_start_timeout}")
        container_start_timeout = DEFAULT_CONTAINER_START_TIMEOUT_SECONDS
    metrics_port = non_negative_int("METRICS_PORT", 0)
    if metrics_port > 65535:
        problems.append(f"{PREFIX}METRICS_PORT must be a TCP port (0 for none), got {metrics_port}")
        metrics_port = 0
    kube_events = raw("KUBE_EVENTS") or DEFAULT_KUBE_EVENTS
    if kube_events not in KUBE_EVENTS_CHOICES:
        problems.append(f"{PREFIX}KUBE_EVENTS must be one of {', '.join(KUBE_EVENTS_CHOICES)}, got {kube_events!r}")
        kube_events = DEFAULT_KUBE_EVENTS
    settings = Settings(
        default_image=raw("DEFAULT_IMAGE"),
        app_images=app_images,
        allowed_images=comma_list("ALLOWED_IMAGES"),
        max_running=non_negative_int("MAX_RUNNING", 0),
        max_running_per_app=non_negative_int("MAX_RUNNING_PER_APP", 0),
        default_ttl_seconds=non_negative_int("DEFAULT_TTL_SECONDS", DEFAULT_TTL_SECONDS),
        namespaces=namespaces,
        broker_url=broker_url,
        exchange=exchange,
        extra_env=extra_env,
        task_service_account=task_service_account,
        container_start_timeout_seconds=container_start_timeout,
        kube_events=kube_events,
        metrics_port=metrics_port,
    )
    if problems:
        raise SettingsError("invalid operator settings:\n  " + "\n  ".join(problems))
    return settings
