"""The HTTP contract on a real uvicorn server, as the image smoke test sees it."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

from fastapi import FastAPI

from handler import Settings, create_app
from sse_testkit import RecordingSource, parse_sse, raw_request

SETTINGS = Settings(version="9.9.9", revision="deadbeef", heartbeat_seconds=5.0, retry_ms=2000)


def split_response(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no end of headers in {raw[:200]!r}"
    status, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def test_http10_stream_is_plain_and_closed(serve: Callable[[FastAPI], int]) -> None:
    port = serve(create_app(SETTINGS))
    raw = raw_request(port, b"GET /stream?count=3&interval=0.05 HTTP/1.0\r\n\r\n")
    status, headers, body = split_response(raw)

    assert status.split(" ", 2)[1] == "200", status
    assert headers["content-type"].startswith("text/event-stream")
    # HTTP/1.0 has no chunked encoding: the body is the raw event stream and
    # the server ends it by closing the connection.
    assert "transfer-encoding" not in headers
    assert headers.get("connection", "").lower() == "close"
    frames = parse_sse(body.decode())
    ticks = [f for f in frames if f.event == "tick"]
    assert [int(t.fields["id"]) for t in ticks] == [1, 2, 3]
    assert [json.loads(t.fields["data"])["seq"] for t in ticks] == [1, 2, 3]
    assert frames[-1].event == "end"


def test_http10_health(serve: Callable[[FastAPI], int]) -> None:
    port = serve(create_app(SETTINGS))
    status, headers, body = split_response(raw_request(port, b"GET /health HTTP/1.0\r\n\r\n"))
    assert status.split(" ", 2)[1] == "200", status
    assert "transfer-encoding" not in headers
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body) == {"status": "ok", "version": "9.9.9", "revision": "deadbeef"}


def test_events_are_not_buffered(serve: Callable[[FastAPI], int]) -> None:
    # Events 2 s apart: the first must arrive at once, not when a buffer fills or the stream ends.
    port = serve(create_app(SETTINGS))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        started = time.monotonic()
        conn.sendall(b"GET /stream?count=3&interval=2 HTTP/1.1\r\nHost: test\r\n\r\n")
        received = b""
        while b"event: tick" not in received:
            chunk = conn.recv(65536)
            assert chunk, "connection closed before the first event"
            received += chunk
        assert time.monotonic() - started < 1.5


def test_disconnect_stops_the_source(serve: Callable[[FastAPI], int]) -> None:
    source = RecordingSource()
    port = serve(create_app(SETTINGS, source))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"GET /stream?count=10000&interval=0.02 HTTP/1.0\r\n\r\n")
        received = b""
        while received.count(b"event: tick") < 2:
            chunk = conn.recv(65536)
            assert chunk, "connection closed early"
            received += chunk

    deadline = time.monotonic() + 2
    while source.finished == 0:
        assert time.monotonic() < deadline, f"source still running {source.produced} ticks after disconnect"
        time.sleep(0.01)
    assert source.cancelled == 1
    produced = source.produced
    time.sleep(0.1)
    assert source.produced == produced, "source kept producing after it was closed"
    assert produced < 100


def test_head_on_a_real_server(serve: Callable[[FastAPI], int]) -> None:
    source = RecordingSource()
    port = serve(create_app(SETTINGS, source))
    for path in ("/health", "/stream?count=10000&interval=60"):
        started = time.monotonic()
        head = raw_request(port, f"HEAD {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        assert time.monotonic() - started < 2, f"HEAD {path} did not answer at once"
        status, headers, body = split_response(head)
        assert status.split(" ", 2)[1] == "200", status
        assert body == b""
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
            received = b""
            while b"\r\n\r\n" not in received:
                received += conn.recv(65536)
        _, get_headers, _ = split_response(received)
        # Framing headers describe the bytes actually sent; everything else matches.
        ignored = {"date", "transfer-encoding"} | ({"content-length"} if "stream" in path else set())
        assert {k: v for k, v in headers.items() if k not in ignored} == {
            k: v for k, v in get_headers.items() if k not in ignored
        }
    assert source.started <= 1  # Only the GET started a stream.
