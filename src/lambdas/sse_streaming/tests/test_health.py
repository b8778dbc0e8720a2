"""`/health` and the environment-variable settings."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from handler import Settings


def test_health_defaults_to_unknown_version(make_client: Callable[..., TestClient]) -> None:
    response = make_client().get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "unknown", "revision": "unknown"}


def test_health_reports_version_and_revision_from_env(make_client: Callable[..., TestClient]) -> None:
    settings = Settings.from_env({"APP_VERSION": "1.2.3", "APP_REVISION": "abc1234"})
    response = make_client(settings).get("/health")
    assert response.json() == {"status": "ok", "version": "1.2.3", "revision": "abc1234"}


def test_settings_defaults() -> None:
    assert Settings.from_env({}) == Settings(
        version="unknown", revision="unknown", heartbeat_seconds=15.0, retry_ms=3000
    )


def test_settings_read_stream_tuning() -> None:
    settings = Settings.from_env({"SSE_HEARTBEAT_SECONDS": "2.5", "SSE_RETRY_MS": "500"})
    assert (settings.heartbeat_seconds, settings.retry_ms) == (2.5, 500)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SSE_HEARTBEAT_SECONDS", "soon"),
        ("SSE_HEARTBEAT_SECONDS", "0"),
        ("SSE_HEARTBEAT_SECONDS", "nan"),
        ("SSE_HEARTBEAT_SECONDS", "7200"),
        ("SSE_RETRY_MS", "1.5"),
        ("SSE_RETRY_MS", "-1"),
    ],
)
def test_bad_setting_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})
