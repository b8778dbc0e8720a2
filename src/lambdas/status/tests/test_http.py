"""The HTTP surface: errors as JSON, HEAD wherever GET works, the schema, a real server."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Route

from handler import Settings, create_app

SETTINGS = Settings(version="9.9.9", revision="deadbeef", region="eu-west-1", function="status")
# A concrete request for each GET path; a new GET route without one fails the test below.
EXAMPLES = {
    "/health": "/health",
    "/status": "/status",
    "/openapi.json": "/openapi.json",
    "/docs": "/docs",
    "/docs/oauth2-redirect": "/docs/oauth2-redirect",
    "/redoc": "/redoc",
}


def raw_request(port: int, request: bytes, timeout: float = 5.0) -> tuple[str, dict[str, str], bytes]:
    """Send one raw request, read until the server closes, and split status, headers and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert sep, f"no end of headers in {head[:200]!r}"
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def get_paths() -> list[str]:
    routes = create_app(SETTINGS).routes
    return [r.path for r in routes if isinstance(r, Route) and "GET" in (r.methods or ())]


def test_every_get_route_has_an_example() -> None:
    assert sorted(get_paths()) == sorted(EXAMPLES)


@pytest.mark.parametrize("path", get_paths())
def test_head_matches_get(make_client: Callable[..., TestClient], path: str) -> None:
    client = make_client(SETTINGS)
    get = client.get(EXAMPLES[path])
    head = client.head(EXAMPLES[path])
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    # Content-Length included: the time in /status always has the same length.
    assert dict(head.headers) == dict(get.headers)


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
@pytest.mark.parametrize("path", ["/", "/nope", "/status/", "/Status", "/stream"])
def test_unknown_paths_are_404_json(make_client: Callable[..., TestClient], method: str, path: str) -> None:
    response = make_client().request(method, path, follow_redirects=False)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.content == (b"" if method == "HEAD" else b'{"detail":"Not Found"}')


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/health", "/status", "/openapi.json"])
def test_other_methods_are_405_json(make_client: Callable[..., TestClient], method: str, path: str) -> None:
    # OPTIONS too: without CORS_ALLOW_ORIGINS there is no preflight to answer.
    response = make_client().request(method, path)
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "Method Not Allowed"}
    assert sorted(response.headers["allow"].split(", ")) == ["GET", "HEAD"]


def test_openapi_describes_both_routes(make_client: Callable[..., TestClient]) -> None:
    paths = make_client().get("/openapi.json").json()["paths"]
    assert set(paths) == {"/health", "/status"}
    # HEAD is answered but not documented twice (that would duplicate operation ids).
    assert set(paths["/health"]) == set(paths["/status"]) == {"get"}
    assert set(paths["/status"]["get"]["responses"]) == {"200"}


def test_a_real_server_answers_whole_json_documents(serve: Callable[[FastAPI], int]) -> None:
    # What the adapter sees in BUFFERED mode: a Content-Length body, and HEAD with none.
    port = serve(create_app(SETTINGS))
    for path in ("/health", "/status"):
        request = f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode()
        status, headers, body = raw_request(port, request)
        assert status.split(" ", 2)[1] == "200", status
        assert "transfer-encoding" not in headers
        assert int(headers["content-length"]) == len(body)
        assert json.loads(body)["status"] == "ok"
        status, head_headers, head_body = raw_request(port, request.replace(b"GET", b"HEAD", 1))
        assert status.split(" ", 2)[1] == "200", status
        assert head_body == b""
        assert head_headers["content-type"] == headers["content-type"] == "application/json"


def test_the_adapters_readiness_path_answers(make_client: Callable[..., TestClient]) -> None:
    # The adapter holds the first invoke until this path answers 2xx; a typo would hang every cold start.
    dockerfile = (Path(__file__).resolve().parent.parent / "Dockerfile").read_text()
    [path] = re.findall(r"AWS_LWA_READINESS_CHECK_PATH=(\S+)", dockerfile)
    assert make_client().get(path).status_code == 200
