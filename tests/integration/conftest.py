"""Fixtures of the integration tests on top of the session's (tests/conftest.py)."""

from __future__ import annotations

import pytest

from ._operator_helpers import Api


@pytest.fixture
def api(cluster, namespace):
    """LimeTasks, Jobs, pods and Events of the test's namespace (_operator_helpers.Api)."""
    with cluster.api_client() as api_client:
        yield Api(api_client, namespace)
