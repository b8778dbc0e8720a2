"""Shutdown: open streams end themselves with a `shutdown` event inside the grace period."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time

from starlette.types import Message, Scope

from handler import Settings, create_app, parse_last_event_id
from sse_testkit import RecordingSource, parse_sse, uvicorn_process

GRACE_SECONDS = 3


async def stream_until_shutdown(source: RecordingSource, *, set_after: bytes) -> bytes:
    """Run a long stream at the ASGI level and set the shutdown event once `set_after` is sent."""
    app = create_app(Settings(heartbeat_seconds=5.0), source)
    shutdown = asyncio.Event()
    received = bytearray()

    async def receive() -> Message:
        await asyncio.Event().wait()  # The client never leaves.
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            received.extend(message["body"])
            if set_after in received:
                shutdown.set()

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/stream",
        "raw_path": b"/stream",
        "query_string": b"count=10000&interval=0.05",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        # What the lifespan hands every request under a real server.
        "state": {"shutdown": shutdown},
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    await asyncio.sleep(0.01)
    leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leftovers == [], f"tasks still running after shutdown: {leftovers}"
    return bytes(received)


def test_shutdown_event_ends_the_stream_with_the_last_id() -> None:
    source = RecordingSource()
    body = asyncio.run(stream_until_shutdown(source, set_after=b"id: 2\n"))
    frames = parse_sse(body.decode())
    last = frames[-1]
    assert last.event == "shutdown"
    assert last.fields["id"] == "2"
    assert json.loads(last.fields["data"]) == {"last_id": 2, "reason": "server shutting down"}
    assert [f.event for f in frames].count("end") == 0
    assert parse_last_event_id(last.fields["id"]) == 2
    assert (source.started, source.finished) == (1, 1)


def read_stream_until(conn: socket.socket, received: bytes, ticks: int) -> bytes:
    while received.count(b"event: tick") < ticks:
        chunk = conn.recv(65536)
        assert chunk, "connection closed early"
        received += chunk
    return received


def test_sigterm_ends_open_streams_within_the_grace_period() -> None:
    grace = ("--timeout-graceful-shutdown", str(GRACE_SECONDS))
    with uvicorn_process({"SSE_HEARTBEAT_SECONDS": "5"}, *grace) as (server, port, log):
        conns = [socket.create_connection(("127.0.0.1", port), timeout=GRACE_SECONDS + 2) for _ in range(2)]
        for conn in conns:
            conn.sendall(b"GET /stream?count=10000&interval=0.05 HTTP/1.0\r\n\r\n")
        bodies = [read_stream_until(conn, b"", 2) for conn in conns]

        server.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        for n, conn in enumerate(conns):
            with conn:
                while chunk := conn.recv(65536):
                    bodies[n] += chunk
        elapsed = time.monotonic() - sent
        log += server.communicate(timeout=GRACE_SECONDS + 5)[0]

    assert elapsed < GRACE_SECONDS, f"streams took {elapsed:.1f} s to end:\n{log}"
    for raw in bodies:
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        frames = parse_sse(body.decode())
        ticks = [f for f in frames if f.event == "tick"]
        assert frames[-1].event == "shutdown", frames[-3:]
        # The final id is the last tick's, so a reconnect resumes right after it.
        assert frames[-1].fields["id"] == ticks[-1].fields["id"]
    assert "Cancel" not in log, log
    assert "ERROR" not in log, log
    # uvicorn re-raises the captured SIGTERM once it has shut down cleanly.
    assert server.returncode in (0, -signal.SIGTERM), log
