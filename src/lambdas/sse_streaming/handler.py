"""Server-Sent-Events service: one FastAPI `app`, run by uvicorn on port 8080.

On AWS Lambda it runs behind the Lambda Web Adapter in RESPONSE_STREAM mode, so
every byte yielded here reaches the Function URL client as soon as it is sent.

Contract:
- `GET /health` answers `{"status": "ok", "version": ..., "revision": ...}`.
- `GET /stream?count=N&interval=S` answers `text/event-stream`: one `retry:`
  block, then N `tick` events one interval apart, then one `end` event.
  A `Last-Event-ID` request header resumes after that id.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal, Protocol

import anyio
from fastapi import FastAPI, Header, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.responses import StreamingResponse
from starlette.types import Send

COUNT_MIN = 1
COUNT_MAX = 10_000
COUNT_DEFAULT = 100
INTERVAL_MIN = 0.0
INTERVAL_MAX = 60.0
INTERVAL_DEFAULT = 1.0
# 10**15 plus COUNT_MAX stays below 2**53, so every id is exact in JavaScript.
LAST_EVENT_ID_MAX = 10**15
_LAST_EVENT_ID = re.compile(r"[0-9]{1,16}")

HEARTBEAT_FRAME = b": heartbeat\n\n"
TICK_EVENT = "tick"
END_EVENT = "end"


# --- Settings ---------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment, read in one place."""

    version: str = "unknown"
    revision: str = "unknown"
    heartbeat_seconds: float = 15.0
    retry_ms: int = 3000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; a bad value raises ValueError naming the variable."""
        env = os.environ if environ is None else environ
        return cls(
            version=env.get("APP_VERSION", "").strip() or "unknown",
            revision=env.get("APP_REVISION", "").strip() or "unknown",
            heartbeat_seconds=_env_float(env, "SSE_HEARTBEAT_SECONDS", 15.0, low=0.01, high=3600.0),
            retry_ms=_env_int(env, "SSE_RETRY_MS", 3000, low=0, high=3_600_000),
        )


def _env_float(env: Mapping[str, str], name: str, default: float, *, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; expected seconds in [{low}, {high}]") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name}={raw!r} is out of range; expected seconds in [{low}, {high}]")
    return value


def _env_int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer; expected [{low}, {high}]") from None
    if not low <= value <= high:
        raise ValueError(f"{name}={raw!r} is out of range; expected [{low}, {high}]")
    return value


# --- Event source -----------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """One event: its SSE id and the moment the source produced it."""

    id: int
    time: datetime

    def payload(self) -> dict[str, object]:
        return {"seq": self.id, "time": self.time.isoformat(timespec="microseconds").replace("+00:00", "Z")}


class EventSource(Protocol):
    """Where the stream's events come from."""

    def ticks(self, *, first_id: int, count: int, interval: float) -> AsyncIterator[Tick]:
        """Yield `count` ticks with ids `first_id, first_id + 1, ...`, `interval` seconds apart."""
        ...


class ClockSource:
    """The server's own clock: tick n carries id n and the UTC time it was produced."""

    async def ticks(self, *, first_id: int, count: int, interval: float) -> AsyncIterator[Tick]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(count):
            # Sleeping until an absolute deadline keeps the pace from drifting
            # by the time spent sending each event.
            delay = start + n * interval - loop.time()
            await asyncio.sleep(max(delay, 0.0))
            yield Tick(id=first_id + n, time=datetime.now(UTC))


# --- SSE encoding -----------------------------------------------------------


def retry_frame(retry_ms: int) -> bytes:
    return f"retry: {retry_ms}\n\n".encode()


def tick_frame(tick: Tick) -> bytes:
    data = json.dumps(tick.payload(), separators=(",", ":"))
    return f"id: {tick.id}\nevent: {TICK_EVENT}\ndata: {data}\n\n".encode()


def end_frame(last_id: int, sent: int) -> bytes:
    # No `id:` line, so a browser's Last-Event-ID stays at the last tick.
    data = json.dumps({"last_id": last_id, "count": sent}, separators=(",", ":"))
    return f"event: {END_EVENT}\ndata: {data}\n\n".encode()


async def sse_frames(
    ticks: AsyncIterator[Tick], *, last_id: int, heartbeat_seconds: float, retry_ms: int
) -> AsyncIterator[bytes]:
    """Encode ticks as SSE, adding a heartbeat after each quiet `heartbeat_seconds`.

    The source's next tick is awaited in its own task so that a heartbeat
    timeout never cancels the source mid-step; that task is always cancelled
    and awaited before this generator finishes, however it finishes.
    """
    pending: asyncio.Task[Tick] | None = None
    sent = 0
    try:
        yield retry_frame(retry_ms)
        while True:
            if pending is None:
                pending = asyncio.create_task(_next_tick(ticks), name="sse-next-tick")
            done, _ = await asyncio.wait((pending,), timeout=heartbeat_seconds)
            if not done:
                yield HEARTBEAT_FRAME
                continue
            finished, pending = pending, None
            try:
                tick = finished.result()
            except StopAsyncIteration:
                break
            last_id = tick.id
            sent += 1
            yield tick_frame(tick)
        yield end_frame(last_id, sent)
    finally:
        await _close_source(pending, ticks)


async def _next_tick(ticks: AsyncIterator[Tick]) -> Tick:
    return await anext(ticks)


async def _close_source(pending: asyncio.Task[Tick] | None, ticks: AsyncIterator[Tick]) -> None:
    # Shielded: this runs while the request is being cancelled, and the
    # cleanup itself must not be cancelled half way.
    with anyio.CancelScope(shield=True):
        if pending is not None:
            pending.cancel()
            await asyncio.wait((pending,))
            if not pending.cancelled():
                pending.exception()  # Mark any source error as retrieved.
        aclose: Callable[[], Awaitable[object]] | None = getattr(ticks, "aclose", None)
        if aclose is not None:
            await aclose()


class SSEResponse(StreamingResponse):
    """A `text/event-stream` response that always closes its frame generator.

    Starlette stops iterating on disconnect (by cancellation, or by `send`
    raising) but leaves the generator to the garbage collector; closing it
    here stops the event source at once instead.
    """

    media_type = "text/event-stream"

    def __init__(self, frames: AsyncIterator[bytes]) -> None:
        super().__init__(frames, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._frames = frames

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            aclose: Callable[[], Awaitable[object]] | None = getattr(self._frames, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()


# --- HTTP -------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    revision: str


def parse_last_event_id(raw: str | None) -> int:
    """The id to resume after: 0 when absent or empty (SSE's "no last id")."""
    if raw is None or raw == "":
        return 0
    if _LAST_EVENT_ID.fullmatch(raw) is None or int(raw) > LAST_EVENT_ID_MAX:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("header", "last-event-id"),
                    "msg": f"Last-Event-ID must be a decimal integer between 0 and {LAST_EVENT_ID_MAX}",
                    "input": raw,
                }
            ]
        )
    return int(raw)


def create_app(settings: Settings | None = None, source: EventSource | None = None) -> FastAPI:
    settings = Settings.from_env() if settings is None else settings
    source = ClockSource() if source is None else source
    app = FastAPI(title="sse-streaming", version=settings.version)

    @app.get("/health")
    async def health() -> Health:
        return Health(status="ok", version=settings.version, revision=settings.revision)

    @app.get("/stream", response_class=SSEResponse)
    async def stream(
        count: Annotated[
            int, Query(ge=COUNT_MIN, le=COUNT_MAX, description="How many tick events to send.")
        ] = COUNT_DEFAULT,
        interval: Annotated[
            float,
            Query(
                ge=INTERVAL_MIN,
                le=INTERVAL_MAX,
                allow_inf_nan=False,
                description="Seconds between tick events.",
            ),
        ] = INTERVAL_DEFAULT,
        last_event_id: Annotated[
            str | None,
            Header(description="Resume after this event id (sent by EventSource on reconnect)."),
        ] = None,
    ) -> SSEResponse:
        last_id = parse_last_event_id(last_event_id)
        ticks = source.ticks(first_id=last_id + 1, count=count, interval=interval)
        return SSEResponse(
            sse_frames(
                ticks,
                last_id=last_id,
                heartbeat_seconds=settings.heartbeat_seconds,
                retry_ms=settings.retry_ms,
            )
        )

    return app


app = create_app()
