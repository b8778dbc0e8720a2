"""The generated API description, which `/docs` and `/redoc` load in the browser."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient


def test_openapi_json_describes_both_routes(make_client: Callable[..., TestClient]) -> None:
    response = make_client().get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths) == {"/health", "/stream"}
    # HEAD is answered but not documented twice (that would duplicate operation ids).
    assert set(paths["/stream"]) == set(paths["/health"]) == {"get"}
    stream = paths["/stream"]["get"]
    assert set(stream["responses"]) == {"200", "204", "422"}
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    names = {(p["in"], p["name"]) for p in stream["parameters"]}
    assert names == {("query", "count"), ("query", "interval"), ("header", "last-event-id")}


def test_docs_pages_load(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200, page
        assert "/openapi.json" in response.text
