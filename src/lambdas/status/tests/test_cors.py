"""CORS: on only for the origins in CORS_ALLOW_ORIGINS, with the SSE service's rules."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
from fastapi.testclient import TestClient

from handler import Settings

ALLOWED = "https://app.example.com"
OTHER = "https://evil.example.net"
CORS = Settings.from_env({"CORS_ALLOW_ORIGINS": f"{ALLOWED},http://localhost:5173"})


def no_cors_headers(headers: Mapping[str, str]) -> bool:
    return not any(name.lower().startswith("access-control-") for name in headers)


@pytest.mark.parametrize("path", ["/health", "/status"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_allowed_origin_may_read(make_client: Callable[..., TestClient], path: str, method: str) -> None:
    response = make_client(CORS).request(method, path, headers={"Origin": ALLOWED})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "origin" in response.headers["vary"].lower()
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize("path", ["/health", "/status"])
def test_other_origin_gets_no_cors_headers(make_client: Callable[..., TestClient], path: str) -> None:
    response = make_client(CORS).get(path, headers={"Origin": OTHER})
    assert response.status_code == 200
    assert no_cors_headers(response.headers)


def test_preflight(make_client: Callable[..., TestClient]) -> None:
    client = make_client(CORS)
    headers = {"Origin": ALLOWED, "Access-Control-Request-Method": "GET"}
    allowed = client.options("/status", headers=headers)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert set(allowed.headers["access-control-allow-methods"].split(", ")) == {"GET", "HEAD"}
    refused = client.options("/status", headers={**headers, "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 400
    other = client.options("/status", headers={**headers, "Origin": OTHER})
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


def test_any_origin(make_client: Callable[..., TestClient]) -> None:
    response = make_client(Settings(cors_allow_origins=("*",))).get("/status", headers={"Origin": OTHER})
    assert response.headers["access-control-allow-origin"] == "*"


def test_no_setting_means_no_cors(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert no_cors_headers(client.get("/status", headers={"Origin": ALLOWED}).headers)
    preflight = client.options("/status", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 405
    assert no_cors_headers(preflight.headers)
