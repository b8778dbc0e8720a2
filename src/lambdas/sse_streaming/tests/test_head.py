"""HEAD works wherever GET does: same status and headers, no body, no stream started."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Route

from handler import Settings, create_app
from sse_testkit import RecordingSource

FAST = Settings(heartbeat_seconds=5.0, retry_ms=1500)
# A concrete request for each GET path; a new GET route without one fails the test below.
EXAMPLES = {
    "/health": "/health",
    "/stream": "/stream?count=3&interval=0",
    "/openapi.json": "/openapi.json",
    "/docs": "/docs",
    "/docs/oauth2-redirect": "/docs/oauth2-redirect",
    "/redoc": "/redoc",
}
# Framing headers describe the body actually sent, so they may differ for HEAD.
FRAMING = {"content-length", "transfer-encoding"}


def get_paths() -> list[str]:
    return [r.path for r in create_app(FAST).routes if isinstance(r, Route) and "GET" in (r.methods or ())]


def test_every_get_route_has_an_example() -> None:
    assert sorted(get_paths()) == sorted(EXAMPLES)


@pytest.mark.parametrize("path", get_paths())
def test_head_matches_get(make_client: Callable[..., TestClient], path: str) -> None:
    client = make_client(FAST)
    get = client.get(EXAMPLES[path])
    head = client.head(EXAMPLES[path])
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert {k: v for k, v in head.headers.items() if k not in FRAMING} == {
        k: v for k, v in get.headers.items() if k not in FRAMING
    }
    if "content-length" in get.headers:
        assert head.headers["content-length"] == get.headers["content-length"]


def test_head_stream_never_starts_the_source(
    make_client: Callable[..., TestClient], source: RecordingSource
) -> None:
    # A GET of this would run for days; HEAD must answer at once.
    response = make_client(FAST, source).head("/stream", params={"count": 10000, "interval": 60})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == b""
    assert source.started == 0


@pytest.mark.parametrize(
    ("params", "headers", "status"),
    [
        ({"count": 3}, {"Last-Event-ID": "3"}, 204),
        ({"count": 0}, {}, 422),
        ({"count": 3}, {"Last-Event-ID": "x"}, 422),
    ],
)
def test_head_stream_other_statuses_match_get(
    make_client: Callable[..., TestClient], params: dict[str, int], headers: dict[str, str], status: int
) -> None:
    client = make_client(FAST)
    assert client.get("/stream", params=params, headers=headers).status_code == status
    head = client.head("/stream", params=params, headers=headers)
    assert head.status_code == status
    assert head.content == b""
