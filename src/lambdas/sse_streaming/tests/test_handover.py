"""The handover: streams end cleanly before the Lambda invocation's deadline and resume in the next.

Everything here goes through the app's HTTP surface only (no handler internals),
so the same tests can be run against an older handler to see them fail.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from handler import Settings
from sse_testkit import Frame, dechunk, lambda_context, parse_sse, uvicorn_process


def settings(**env: str) -> Settings:
    return Settings.from_env({"SSE_HEARTBEAT_SECONDS": "5", "SSE_RETRY_MS": "1500", **env})


def invocation(seconds_left: float) -> dict[str, str]:
    """The header the adapter adds to a request whose invocation ends in `seconds_left`."""
    return {"x-amzn-lambda-context": lambda_context(round((time.time() + seconds_left) * 1000))}


def kinds(frames: list[Frame]) -> list[str]:
    return [f.event or ("heartbeat" if f.comments == ["heartbeat"] else "retry") for f in frames]


def tick_ids(frames: list[Frame]) -> list[int]:
    return [int(f.fields["id"]) for f in frames if f.event == "tick"]


def assert_handover(frames: list[Frame], last_id: int) -> None:
    assert frames[-1].event == "handover", kinds(frames)[-3:]
    assert frames[-1].fields == {
        "id": str(last_id),
        "event": "handover",
        "retry": "250",
        "data": json.dumps({"last_id": last_id, "reason": "invocation deadline"}, separators=(",", ":")),
    }
    assert "end" not in kinds(frames)


def test_stream_hands_over_before_the_deadline_with_the_last_id(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(settings(SSE_HANDOVER_MARGIN_SECONDS="0.3"))
    headers = invocation(1.0)
    deadline = time.time() + 1.0
    started = time.monotonic()
    response = client.get("/stream", params={"count": 40, "interval": 0.05}, headers=headers)
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert time.time() < deadline
    assert 0.6 < elapsed < 1.0, elapsed
    frames = parse_sse(response.text)
    ids = tick_ids(frames)
    assert ids == list(range(1, len(ids) + 1))
    assert len(ids) >= 5
    assert_handover(frames, ids[-1])


def test_eventsource_resumes_across_handovers_exactly_once_then_end(
    make_client: Callable[..., TestClient],
) -> None:
    # Each request is a new invocation with its own deadline, as on Lambda.
    client = make_client(settings(SSE_HANDOVER_MARGIN_SECONDS="0.3"))
    count = 30
    received: list[int] = []
    responses: list[list[Frame]] = []
    last_event_id = ""
    for _ in range(20):
        deadline = time.time() + 0.8
        response = client.get(
            "/stream",
            params={"count": count, "interval": 0.04},
            headers={**invocation(0.8), "Last-Event-ID": last_event_id},
        )
        assert time.time() < deadline, "the response outlived its invocation"
        assert response.status_code == 200
        frames = parse_sse(response.text)
        responses.append(frames)
        received += tick_ids(frames)
        if frames[-1].event == "end":
            break
        # EventSource keeps the last `id` field it saw and waits the last `retry`.
        last_event_id = [f.fields["id"] for f in frames if "id" in f.fields][-1]
        time.sleep(int(frames[-1].fields["retry"]) / 1000)
    else:
        pytest.fail(f"no end after 20 connections: {received}")

    assert received == list(range(1, count + 1))
    assert len(responses) >= 3, "expected at least two handovers"
    resumed_from = 0
    for frames in responses[:-1]:
        ids = tick_ids(frames)
        assert ids, "a handover without progress"
        assert ids[0] == resumed_from + 1
        assert_handover(frames, ids[-1])
        resumed_from = ids[-1]
    last = responses[-1]
    assert [k for r in responses for k in kinds(r)].count("end") == 1
    assert json.loads(last[-1].fields["data"]) == {"last_id": count, "count": len(tick_ids(last))}
    over = client.get("/stream", params={"count": count}, headers={"Last-Event-ID": str(count)})
    assert over.status_code == 204


def test_without_the_header_the_cap_stands_in_for_the_deadline(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(settings(SSE_MAX_STREAM_SECONDS="1", SSE_HANDOVER_MARGIN_SECONDS="0.3"))
    started = time.monotonic()
    response = client.get("/stream", params={"count": 40, "interval": 0.05})
    elapsed = time.monotonic() - started
    frames = parse_sse(response.text)
    assert_handover(frames, tick_ids(frames)[-1])
    assert 0.6 < elapsed < 1.0, elapsed


def test_malformed_header_falls_back_to_the_cap_and_logs_once(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(settings(SSE_MAX_STREAM_SECONDS="1", SSE_HANDOVER_MARGIN_SECONDS="0.5"))
    # The last one is what the cargo-lambda emulator sends: 600000 ms after 1970.
    for bad in ("not json", '{"deadline": "soon"}', lambda_context(600_000)):
        started = time.monotonic()
        response = client.get(
            "/stream", params={"count": 40, "interval": 0.05}, headers={"x-amzn-lambda-context": bad}
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        frames = parse_sse(response.text)
        assert_handover(frames, tick_ids(frames)[-1])
        assert 0.4 < elapsed < 1.0, elapsed
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "x-amzn-lambda-context" in warnings[0].getMessage()
    assert "SSE_MAX_STREAM_SECONDS" in warnings[0].getMessage()


def test_the_cap_also_limits_a_stream_with_a_later_deadline(make_client: Callable[..., TestClient]) -> None:
    client = make_client(settings(SSE_MAX_STREAM_SECONDS="1", SSE_HANDOVER_MARGIN_SECONDS="0.3"))
    started = time.monotonic()
    response = client.get("/stream", params={"count": 40, "interval": 0.05}, headers=invocation(60))
    elapsed = time.monotonic() - started
    frames = parse_sse(response.text)
    assert_handover(frames, tick_ids(frames)[-1])
    assert 0.6 < elapsed < 1.0, elapsed


@pytest.mark.parametrize(
    ("seconds_left", "margin"),
    [pytest.param(-10.0, "0.3", id="deadline-past"), pytest.param(1.0, "3", id="margin-exceeds-time-left")],
)
def test_no_time_left_hands_over_at_once(
    make_client: Callable[..., TestClient], seconds_left: float, margin: str
) -> None:
    client = make_client(settings(SSE_HANDOVER_MARGIN_SECONDS=margin))
    started = time.monotonic()
    response = client.get(
        "/stream",
        params={"count": 40, "interval": 0},
        headers={**invocation(seconds_left), "Last-Event-ID": "5"},
    )
    assert time.monotonic() - started < 0.5
    frames = parse_sse(response.text)
    # Not one tick: the resume id is handed straight back.
    assert kinds(frames) == ["retry", "handover"]
    assert_handover(frames, 5)


def test_heartbeats_flow_until_the_handover(make_client: Callable[..., TestClient]) -> None:
    # Ticks 3 s apart, heartbeats every 0.4 s: the handover at 1.0 s comes
    # between heartbeats, not at the next one (1.2 s, the deadline itself).
    client = make_client(settings(SSE_HEARTBEAT_SECONDS="0.4", SSE_HANDOVER_MARGIN_SECONDS="0.2"))
    started = time.monotonic()
    response = client.get("/stream", params={"count": 2, "interval": 3}, headers=invocation(1.2))
    elapsed = time.monotonic() - started
    frames = parse_sse(response.text)
    assert kinds(frames) == ["retry", "tick", "heartbeat", "heartbeat", "handover"]
    assert_handover(frames, 1)
    assert 0.9 < elapsed < 1.15, elapsed


def test_the_switch_turns_the_handover_off(make_client: Callable[..., TestClient]) -> None:
    # The same deadline on both: with the handover on the stream ends early,
    # off it runs to its end past the deadline (on Lambda, the runtime cuts it).
    params = {"count": 10, "interval": 0.05}
    env = {"SSE_HANDOVER_MARGIN_SECONDS": "0.1"}
    on = make_client(settings(**env)).get("/stream", params=params, headers=invocation(0.3))
    off_client = make_client(settings(**env, SSE_HANDOVER="off"))
    deadline = time.time() + 0.3
    off = off_client.get("/stream", params=params, headers=invocation(0.3))
    assert time.time() > deadline

    on_frames = parse_sse(on.text)
    assert_handover(on_frames, tick_ids(on_frames)[-1])
    assert len(tick_ids(on_frames)) < 10
    off_frames = parse_sse(off.text)
    assert tick_ids(off_frames) == list(range(1, 11))
    assert kinds(off_frames)[-1] == "end"
    assert "handover" not in kinds(off_frames)


def read_response(conn: socket.socket, give_up: float) -> tuple[bytes, float]:
    """Read until the server closes; also return the wall-clock time the last byte arrived."""
    received, last = b"", 0.0
    while chunk := conn.recv(65536):
        received, last = received + chunk, time.time()
        assert last < give_up, f"still streaming at {give_up=}: {received[-120:]!r}"
    return received, last


def test_uvicorn_completes_the_chunked_response_before_the_deadline() -> None:
    env = {"SSE_HEARTBEAT_SECONDS": "5", "SSE_MAX_STREAM_SECONDS": "2", "SSE_HANDOVER_MARGIN_SECONDS": "0.5"}
    with uvicorn_process(env) as (server, port, log):
        # One stream inside an invocation that ends in 1.8 s, one with no
        # header, whose deadline is the 2 s cap.
        deadline = time.time() + 1.8
        context = invocation(1.8)["x-amzn-lambda-context"].encode()
        request = b"GET /stream?count=10000&interval=0.05 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        with (
            socket.create_connection(("127.0.0.1", port), timeout=3) as in_lambda,
            socket.create_connection(("127.0.0.1", port), timeout=3) as capped,
        ):
            in_lambda.sendall(request + b"x-amzn-lambda-context: " + context + b"\r\n\r\n")
            cap_deadline = time.time() + 2
            capped.sendall(request + b"\r\n")
            responses = [read_response(in_lambda, deadline + 1), read_response(capped, cap_deadline + 1)]
        server.terminate()
        log += server.communicate(timeout=5)[0]

    for (raw, ended), limit in zip(responses, (deadline, cap_deadline), strict=True):
        assert ended < limit, f"response ended {ended - limit:.2f} s after its deadline"
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"transfer-encoding: chunked" in head.lower()
        # The terminating zero-length chunk is there: the response completed normally.
        frames = parse_sse(dechunk(body).decode())
        ids = tick_ids(frames)
        assert ids == list(range(1, len(ids) + 1))
        assert_handover(frames, ids[-1])
    assert "ERROR" not in log, log
    assert "Traceback" not in log, log
