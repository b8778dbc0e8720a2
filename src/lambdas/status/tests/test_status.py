"""`/health` and `/status`: the JSON documents, their values and their headers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from handler import Settings

LAMBDA = Settings.from_env(
    {
        "APP_VERSION": "1.2.3",
        "APP_REVISION": "abc1234",
        "AWS_REGION": "eu-west-1",
        "AWS_LAMBDA_FUNCTION_NAME": "prod-status",
        "STREAM_URL": "https://abc.lambda-url.eu-west-1.on.aws/",
    }
)


def test_health_defaults_to_unknown_version(make_client: Callable[..., TestClient]) -> None:
    response = make_client().get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "ok", "version": "unknown", "revision": "unknown"}


def test_health_reports_version_and_revision(make_client: Callable[..., TestClient]) -> None:
    response = make_client(LAMBDA).get("/health")
    assert response.json() == {"status": "ok", "version": "1.2.3", "revision": "abc1234"}


def test_status_on_lambda(make_client: Callable[..., TestClient]) -> None:
    before = datetime.now(UTC)
    response = make_client(LAMBDA).get("/status")
    after = datetime.now(UTC)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    time = body.pop("time")
    assert body == {
        "status": "ok",
        "service": "status",
        "version": "1.2.3",
        "revision": "abc1234",
        "region": "eu-west-1",
        "function": "prod-status",
        "stream": {
            "url": "https://abc.lambda-url.eu-west-1.on.aws/",
            "max_count": 10000,
            "max_interval_seconds": 60.0,
        },
    }
    # The SSE service's tick format: UTC, microseconds, a `Z` suffix.
    assert time.endswith("Z")
    assert len(time) == len("2026-12-02T04:16:00.000000Z")
    moment = datetime.fromisoformat(time.removesuffix("Z") + "+00:00")
    assert moment.utcoffset() == timedelta(0)
    assert before <= moment <= after


def test_status_off_lambda_has_nulls(make_client: Callable[..., TestClient]) -> None:
    body = make_client().get("/status").json()
    assert (body["region"], body["function"], body["stream"]["url"]) == (None, None, None)
    assert (body["version"], body["revision"]) == ("unknown", "unknown")


def test_status_time_moves(make_client: Callable[..., TestClient]) -> None:
    # The time is read per request, not once at startup.
    client = make_client()
    first = client.get("/status").json()["time"]
    second = client.get("/status").json()["time"]
    assert first < second
