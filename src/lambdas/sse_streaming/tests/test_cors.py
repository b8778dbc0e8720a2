"""CORS: on only for the origins in CORS_ALLOW_ORIGINS, applied by the app alone."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from handler import Settings

ALLOWED = "https://app.example.com"
OTHER = "https://evil.example.net"
CORS = Settings.from_env({"CORS_ALLOW_ORIGINS": f" {ALLOWED} , http://localhost:5173,"})


def preflight(client: TestClient, origin: str) -> tuple[int, dict[str, str]]:
    # What a browser sends before an EventSource reconnect carrying Last-Event-ID.
    response = client.options(
        "/stream",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id",
        },
    )
    return response.status_code, dict(response.headers)


def test_setting_is_a_comma_separated_list() -> None:
    assert CORS.cors_allow_origins == (ALLOWED, "http://localhost:5173")
    assert Settings.from_env({}).cors_allow_origins == ()
    assert Settings.from_env({"CORS_ALLOW_ORIGINS": " , "}).cors_allow_origins == ()
    assert Settings.from_env({"CORS_ALLOW_ORIGINS": "*"}).cors_allow_origins == ("*",)


@pytest.mark.parametrize(
    "value", ["https://app.example.com/", "app.example.com", "https://a.example/path", "*,https://a.example"]
)
def test_bad_origin_names_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="CORS_ALLOW_ORIGINS"):
        Settings.from_env({"CORS_ALLOW_ORIGINS": value})


def test_preflight_from_an_allowed_origin(make_client: Callable[..., TestClient]) -> None:
    status, headers = preflight(make_client(CORS), ALLOWED)
    assert status == 200
    assert headers["access-control-allow-origin"] == ALLOWED
    assert "last-event-id" in headers["access-control-allow-headers"].lower()
    assert "GET" in headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in headers


def test_preflight_from_another_origin_is_refused(make_client: Callable[..., TestClient]) -> None:
    status, headers = preflight(make_client(CORS), OTHER)
    assert status == 400
    assert "access-control-allow-origin" not in headers


@pytest.mark.parametrize("path", ["/health", "/stream?count=1&interval=0"])
def test_simple_request_from_an_allowed_origin(make_client: Callable[..., TestClient], path: str) -> None:
    response = make_client(CORS).get(path, headers={"Origin": ALLOWED})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "origin" in response.headers["vary"].lower()


@pytest.mark.parametrize("path", ["/health", "/stream?count=1&interval=0"])
def test_simple_request_from_another_origin_gets_no_cors_headers(
    make_client: Callable[..., TestClient], path: str
) -> None:
    response = make_client(CORS).get(path, headers={"Origin": OTHER})
    assert response.status_code == 200
    assert not any(name.startswith("access-control-") for name in response.headers)


def test_no_setting_means_no_cors(make_client: Callable[..., TestClient]) -> None:
    client = make_client(Settings())
    response = client.get("/health", headers={"Origin": ALLOWED})
    assert not any(name.startswith("access-control-") for name in response.headers)
    status, headers = preflight(client, ALLOWED)
    assert status == 405
    assert not any(name.startswith("access-control-") for name in headers)
