"""`/stream` through the app object: framing, resume, validation, heartbeats."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from handler import LAST_EVENT_ID_MAX, ClockSource, Settings, Tick
from sse_testkit import Frame, RecordingSource, parse_sse

FAST = Settings(heartbeat_seconds=5.0, retry_ms=1500)


def ticks_of(frames: list[Frame]) -> list[Frame]:
    return [frame for frame in frames if frame.event == "tick"]


def test_stream_headers(make_client: Callable[..., TestClient]) -> None:
    response = make_client(FAST).get("/stream", params={"count": 1, "interval": 0})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"


def test_stream_framing(make_client: Callable[..., TestClient]) -> None:
    response = make_client(FAST).get("/stream", params={"count": 5, "interval": 0.01})
    frames = parse_sse(response.text)

    assert frames[0].fields == {"retry": "1500"}
    ticks = ticks_of(frames)
    assert [int(t.fields["id"]) for t in ticks] == [1, 2, 3, 4, 5]
    times = []
    for tick in ticks:
        assert set(tick.fields) == {"id", "event", "data"}
        data = json.loads(tick.fields["data"])
        assert data["seq"] == int(tick.fields["id"])
        moment = datetime.fromisoformat(data["time"].replace("Z", "+00:00"))
        assert moment.utcoffset() == timedelta(0)
        times.append(moment)
    assert times == sorted(times)
    assert frames[-1].event == "end"
    assert json.loads(frames[-1].fields["data"]) == {"last_id": 5, "count": 5}
    assert "id" not in frames[-1].fields
    assert len(frames) == 1 + 5 + 1


class SpySource:
    """Records the arguments the endpoint passes, then sends a single tick."""

    def __init__(self) -> None:
        self.calls: list[dict[str, float]] = []

    def ticks(self, *, first_id: int, count: int, interval: float) -> AsyncIterator[Tick]:
        self.calls.append({"first_id": first_id, "count": count, "interval": interval})
        return ClockSource().ticks(first_id=first_id, count=1, interval=0)


def test_defaults_are_100_events_one_second_apart(make_client: Callable[..., TestClient]) -> None:
    # The defaults are checked through the source's arguments rather than by
    # waiting 100 s for a real default stream.
    spy = SpySource()
    assert make_client(FAST, spy).get("/stream").status_code == 200
    assert spy.calls == [{"first_id": 1, "count": 100, "interval": 1.0}]


def test_last_event_id_resumes_after_that_id(make_client: Callable[..., TestClient]) -> None:
    # The stream has `count` events in all; a resume sends only the rest.
    response = make_client(FAST).get(
        "/stream", params={"count": 44, "interval": 0}, headers={"Last-Event-ID": "41"}
    )
    frames = parse_sse(response.text)
    assert [int(t.fields["id"]) for t in ticks_of(frames)] == [42, 43, 44]
    assert json.loads(frames[-1].fields["data"]) == {"last_id": 44, "count": 3}


@pytest.mark.parametrize("last_id", ["5", "6", "1000", str(LAST_EVENT_ID_MAX)])
def test_resume_at_or_past_the_end_is_204(
    make_client: Callable[..., TestClient], source: RecordingSource, last_id: str
) -> None:
    # 204 is the HTML spec's "stop reconnecting" for EventSource.
    response = make_client(FAST, source).get(
        "/stream", params={"count": 5, "interval": 0}, headers={"Last-Event-ID": last_id}
    )
    assert response.status_code == 204
    assert response.content == b""
    assert source.started == 0


def test_eventsource_that_ignores_end_stops_after_count_events(
    make_client: Callable[..., TestClient],
) -> None:
    # A browser EventSource that does not close() on `end` reconnects with the
    # same URL and its last id; it must get the rest of the stream, then 204.
    client = make_client(FAST)
    received: list[int] = []
    headers: dict[str, str] = {}
    for _ in range(10):
        response = client.get("/stream", params={"count": 4, "interval": 0}, headers=headers)
        if response.status_code == 204:
            break
        ids = [int(t.fields["id"]) for t in ticks_of(parse_sse(response.text))]
        received += ids[:2]  # Pretend the connection dropped after two events.
        headers = {"Last-Event-ID": str(received[-1])}
    else:
        pytest.fail(f"still streaming after 10 reconnects: {received}")
    assert received == [1, 2, 3, 4]


def test_empty_last_event_id_starts_from_one(make_client: Callable[..., TestClient]) -> None:
    response = make_client(FAST).get(
        "/stream", params={"count": 1, "interval": 0}, headers={"Last-Event-ID": ""}
    )
    assert [t.fields["id"] for t in ticks_of(parse_sse(response.text))] == ["1"]


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "1e3", "0x10", "+5", "1000000000000001"])
def test_malformed_last_event_id_is_422(make_client: Callable[..., TestClient], value: str) -> None:
    response = make_client(FAST).get("/stream", headers={"Last-Event-ID": value})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["header", "last-event-id"]
    assert "Last-Event-ID must be a decimal integer" in error["msg"]
    assert error["input"] == value


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"count": "0"}, "count"),
        ({"count": "10001"}, "count"),
        ({"count": "many"}, "count"),
        ({"count": "1.5"}, "count"),
        ({"interval": "-0.1"}, "interval"),
        ({"interval": "60.5"}, "interval"),
        ({"interval": "nan"}, "interval"),
        ({"interval": "inf"}, "interval"),
        ({"interval": "fast"}, "interval"),
    ],
)
def test_bad_query_parameters_are_422(
    make_client: Callable[..., TestClient], source: RecordingSource, params: dict[str, str], field: str
) -> None:
    response = make_client(FAST, source).get("/stream", params=params)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", field]
    assert error["msg"]
    assert source.started == 0


def test_boundary_values_are_accepted(make_client: Callable[..., TestClient]) -> None:
    client = make_client(FAST)
    assert client.get("/stream", params={"count": 1, "interval": 0}).status_code == 200
    resumed = client.get("/stream", params={"count": 2, "interval": 0}, headers={"Last-Event-ID": "0"})
    assert resumed.status_code == 200


def test_heartbeat_fills_quiet_gaps(make_client: Callable[..., TestClient], source: RecordingSource) -> None:
    settings = Settings(heartbeat_seconds=0.05, retry_ms=1000)
    response = make_client(settings, source).get("/stream", params={"count": 2, "interval": 0.3})
    frames = parse_sse(response.text)
    kinds = [f.event or ("heartbeat" if f.comments == ["heartbeat"] else "retry") for f in frames]
    assert kinds[:2] == ["retry", "tick"]
    assert kinds[-2:] == ["tick", "end"]
    gap = kinds[2:-2]
    # 0.3 s of quiet with a 0.05 s heartbeat: several heartbeats (about 5), and only heartbeats.
    assert len(gap) >= 2
    assert set(gap) == {"heartbeat"}
    # A heartbeat must never cancel the source's pending step.
    assert (source.produced, source.cancelled, source.finished) == (2, 0, 1)


def test_no_heartbeat_while_events_flow(make_client: Callable[..., TestClient]) -> None:
    settings = Settings(heartbeat_seconds=1.0, retry_ms=1000)
    response = make_client(settings).get("/stream", params={"count": 5, "interval": 0.01})
    assert ": heartbeat" not in response.text
