"""Client disconnects, driven at the ASGI level so the event loop can be inspected."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from starlette.requests import ClientDisconnect
from starlette.types import Message, Scope

from handler import Settings, create_app
from sse_testkit import RecordingSource


async def stream_until_disconnect(
    settings: Settings, source: RecordingSource, *, spec_version: str, hang_up_after: bytes
) -> bytes:
    """Request a long stream and hang up once `hang_up_after` has been received.

    ASGI 2.3 servers (uvicorn's h11) report the hang-up as `http.disconnect`;
    from 2.4 on, Starlette learns of it from `send` raising OSError instead.
    """
    app = create_app(settings, source)
    hung_up = asyncio.Event()
    received = bytearray()

    async def receive() -> Message:
        await hung_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] != "http.response.body":
            return
        if hung_up.is_set():
            raise OSError("client went away")
        received.extend(message["body"])
        if hang_up_after in received:
            hung_up.set()

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
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
    }
    with contextlib.suppress(ClientDisconnect, OSError):
        await asyncio.wait_for(app(scope, receive, send), timeout=5)
    # Let any task that was merely cancelled finish before counting.
    await asyncio.sleep(0.01)
    leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leftovers == [], f"tasks still running after disconnect: {leftovers}"
    return bytes(received)


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
def test_disconnect_between_events_closes_the_source(spec_version: str) -> None:
    source = RecordingSource()
    settings = Settings(heartbeat_seconds=5.0)
    body = asyncio.run(
        stream_until_disconnect(settings, source, spec_version=spec_version, hang_up_after=b"id: 2\n")
    )
    assert b"id: 2\n" in body
    assert source.started == source.finished == 1
    assert source.produced < 5


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
def test_disconnect_during_heartbeat_cancels_the_pending_step(spec_version: str) -> None:
    # The hang-up lands while the next tick is still being awaited in its own
    # task; that task must be cancelled, not left running.
    source = RecordingSource()
    settings = Settings(heartbeat_seconds=0.01)
    body = asyncio.run(
        stream_until_disconnect(settings, source, spec_version=spec_version, hang_up_after=b": heartbeat")
    )
    assert b"id: 1\n" in body
    assert (source.started, source.cancelled, source.finished) == (1, 1, 1)
    assert source.produced == 1
