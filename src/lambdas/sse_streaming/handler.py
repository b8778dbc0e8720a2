"""Server-Sent-Events service: one FastAPI `app`, run by uvicorn on port 8080.

On AWS Lambda it runs behind the Lambda Web Adapter in RESPONSE_STREAM mode, so
every byte yielded here reaches the Function URL client as soon as it is sent.

Contract (the README's "The stream contract" has the long form):
- `GET /health` answers `{"status": "ok", "version": ..., "revision": ...}`.
- `GET /stream?count=N&interval=S` answers `text/event-stream`: one `retry:`
  block, then `tick` events with ids 1..N one interval apart, then one `end`
  event. A `Last-Event-ID: K` request header resumes with ids K+1..N; when
  K >= N the stream is over and the answer is 204, which stops EventSource.
- On SIGTERM/SIGINT each open stream sends a `shutdown` event and ends, so it
  finishes inside uvicorn's graceful-shutdown timeout and clients resume.
- `SSE_HANDOVER_MARGIN_SECONDS` before its deadline, each stream sends a
  `handover` event and ends, so the response completes inside the Lambda
  invocation and EventSource resumes in the next. The deadline is the
  invocation's (the adapter's `x-amzn-lambda-context` header), or
  `SSE_MAX_STREAM_SECONDS` after the request if that is sooner or there is none.
- HEAD works wherever GET does; CORS is on only for `CORS_ALLOW_ORIGINS`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Annotated, Literal, Protocol

import anyio
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

COUNT_MIN = 1
COUNT_MAX = 10_000
COUNT_DEFAULT = 100
INTERVAL_MIN = 0.0
INTERVAL_MAX = 60.0
INTERVAL_DEFAULT = 1.0
# Ids are positions 1..count, so the server never emits more than COUNT_MAX.
# A larger Last-Event-ID (up to this bound, exact in JavaScript) is a resume
# past the end, answered 204, not an error.
LAST_EVENT_ID_MAX = 10**15
_LAST_EVENT_ID = re.compile(r"[0-9]{1,16}")
# An origin as browsers send it: scheme and host, no path, no trailing slash.
_ORIGIN = re.compile(r"https?://[^/\s,]+")

HEARTBEAT_FRAME = b": heartbeat\n\n"
TICK_EVENT = "tick"
END_EVENT = "end"
SHUTDOWN_EVENT = "shutdown"
HANDOVER_EVENT = "handover"
# The reconnect delay a handover asks for: the stream is healthy, so the client
# should come back at once, but not so fast that a failing reconnect spins.
HANDOVER_RETRY_MS = 250
# The AWS Lambda Web Adapter (0.9.1, src/lib.rs) puts lambda_runtime's Context
# here as JSON; its `deadline` is the invocation's end in epoch milliseconds.
LAMBDA_CONTEXT_HEADER = "x-amzn-lambda-context"
# No invocation lasts longer, so a deadline further than this from now, either
# way, is not one: cargo-lambda 1.9.2's emulator sends the constant 600000 (1970).
LAMBDA_MAX_TIMEOUT_SECONDS = 900
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# --- Settings ---------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment, read in one place."""

    version: str = "unknown"
    revision: str = "unknown"
    heartbeat_seconds: float = 15.0
    retry_ms: int = 3000
    # Origins allowed to read responses cross-origin; empty means no CORS headers at all.
    cors_allow_origins: tuple[str, ...] = ()
    # Off: streams run to their end whatever the deadline (Lambda then cuts them).
    handover: bool = True
    # Streams hand over this long before their deadline.
    handover_margin_seconds: float = 5.0
    # No stream lasts longer, invocation or not (without the adapter's header, the only limit).
    max_stream_seconds: float = 900.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; a bad value raises ValueError naming the variable."""
        env = os.environ if environ is None else environ
        settings = cls(
            version=env.get("APP_VERSION", "").strip() or "unknown",
            revision=env.get("APP_REVISION", "").strip() or "unknown",
            heartbeat_seconds=_env_float(env, "SSE_HEARTBEAT_SECONDS", 15.0, low=0.01, high=3600.0),
            retry_ms=_env_int(env, "SSE_RETRY_MS", 3000, low=0, high=3_600_000),
            cors_allow_origins=_env_origins(env, "CORS_ALLOW_ORIGINS"),
            handover=_env_switch(env, "SSE_HANDOVER"),
            handover_margin_seconds=_env_float(env, "SSE_HANDOVER_MARGIN_SECONDS", 5.0, low=0.1, high=600.0),
            max_stream_seconds=_env_float(env, "SSE_MAX_STREAM_SECONDS", 900.0, low=1.0, high=86400.0),
        )
        if settings.max_stream_seconds <= settings.handover_margin_seconds:
            # Every stream without a deadline header would hand over before its first tick.
            raise ValueError(
                f"SSE_MAX_STREAM_SECONDS={settings.max_stream_seconds:g} must be greater than"
                f" SSE_HANDOVER_MARGIN_SECONDS={settings.handover_margin_seconds:g}"
            )
        return settings


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


def _env_switch(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip()
    if raw.lower() not in ("", "on", "off"):
        raise ValueError(f"{name}={raw!r} is not a switch; expected on or off (unset means on)")
    return raw.lower() != "off"


def _env_origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    origins = tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())
    if origins == ("*",):
        return origins
    for origin in origins:
        if _ORIGIN.fullmatch(origin) is None:
            raise ValueError(
                f"{name}: {origin!r} is not an origin; expected comma-separated"
                " scheme://host[:port] values without a path or trailing slash, or a lone *"
            )
    return origins


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


def shutdown_frame(last_id: int) -> bytes:
    return _resume_frame(SHUTDOWN_EVENT, last_id, "server shutting down")


def handover_frame(last_id: int, retry_ms: int) -> bytes:
    return _resume_frame(HANDOVER_EVENT, last_id, "invocation deadline", f"retry: {retry_ms}\n")


def _resume_frame(event: str, last_id: int, reason: str, extra: str = "") -> bytes:
    # The id repeats the last one sent (or the one resumed from), so a client
    # that reconnects, by hand or as EventSource does, resumes right after it.
    data = json.dumps({"last_id": last_id, "reason": reason}, separators=(",", ":"))
    return f"id: {last_id}\nevent: {event}\n{extra}data: {data}\n\n".encode()


async def sse_frames(
    ticks: AsyncIterator[Tick],
    *,
    last_id: int,
    heartbeat_seconds: float,
    retry_ms: int,
    shutdown: asyncio.Event | None = None,
    handover_at: float = math.inf,
) -> AsyncIterator[bytes]:
    """Encode ticks as SSE, adding a heartbeat after each quiet `heartbeat_seconds`.

    The source's next tick is awaited in its own task so that a heartbeat
    timeout never cancels the source mid-step; that task is always cancelled
    and awaited before this generator finishes, however it finishes. Once
    `shutdown` is set the stream sends a `shutdown` event and ends; from the
    event-loop time `handover_at` on, it sends a `handover` event and ends.
    """
    loop = asyncio.get_running_loop()
    pending: asyncio.Task[Tick] | None = None
    stopping: asyncio.Task[object] | None = None
    sent = 0
    try:
        yield retry_frame(retry_ms)
        stopping = asyncio.create_task((shutdown or asyncio.Event()).wait(), name="sse-shutdown")
        while True:
            if pending is None:
                pending = asyncio.create_task(_next_tick(ticks), name="sse-next-tick")
            timeout, handing_over = heartbeat_seconds, False
            if handover_at - loop.time() <= heartbeat_seconds:
                timeout, handing_over = max(handover_at - loop.time(), 0.0), True
            done, _ = await asyncio.wait(
                (pending, stopping), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if stopping in done:
                yield shutdown_frame(last_id)
                return
            tick: Tick | None = None
            if done:
                finished, pending = pending, None
                try:
                    tick = finished.result()
                except StopAsyncIteration:
                    break
            # A tick that is ready only at the handover is left unsent: the
            # next invocation resumes after `last_id` and produces it again.
            if handing_over and (tick is None or loop.time() >= handover_at):
                yield handover_frame(last_id, min(retry_ms, HANDOVER_RETRY_MS))
                return
            if tick is None:
                yield HEARTBEAT_FRAME
                continue
            last_id = tick.id
            sent += 1
            yield tick_frame(tick)
        yield end_frame(last_id, sent)
    finally:
        await _close_source(pending, stopping, ticks)


async def _next_tick(ticks: AsyncIterator[Tick]) -> Tick:
    return await anext(ticks)


async def _close_source(
    pending: asyncio.Task[Tick] | None, stopping: asyncio.Task[object] | None, ticks: AsyncIterator[Tick]
) -> None:
    # Shielded: this runs while the request is being cancelled, and the
    # cleanup itself must not be cancelled half way.
    with anyio.CancelScope(shield=True):
        for task in (pending, stopping):
            if task is not None:
                task.cancel()
                await asyncio.wait((task,))
                if not task.cancelled():
                    task.exception()  # Mark any source error as retrieved.
        aclose: Callable[[], Awaitable[object]] | None = getattr(ticks, "aclose", None)
        if aclose is not None:
            await aclose()


class SSEResponse(StreamingResponse):
    """A `text/event-stream` response that always closes its frame generator.

    Starlette stops iterating on disconnect (by cancellation, or by `send`
    raising) but leaves the generator to the garbage collector; closing it
    here stops the event source at once instead. A HEAD request gets the same
    status and headers and never starts the generator.
    """

    media_type = "text/event-stream"

    def __init__(self, frames: AsyncIterator[bytes], status_code: int = 200) -> None:
        # `status_code` is in the signature because FastAPI reads its default
        # to document the response; without it /openapi.json fails.
        super().__init__(frames, status_code=status_code, headers=SSE_HEADERS)
        self._frames = frames

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD":
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await super().__call__(scope, receive, send)

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            aclose: Callable[[], Awaitable[object]] | None = getattr(self._frames, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()


# --- Shutdown ---------------------------------------------------------------


SignalHandler = Callable[[int, FrameType | None], object]


@contextmanager
def on_shutdown_signal(callback: Callable[[], None]) -> Iterator[None]:
    """Call `callback` on this loop when SIGTERM or SIGINT arrives, then pass the signal on.

    uvicorn installs its own handlers before the lifespan starts and only
    starts its graceful shutdown from them; wrapping them lets open streams end
    themselves within that grace period instead of being cancelled after it.
    Signals can only be handled in the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()

    def chain(previous: SignalHandler) -> SignalHandler:
        def handler(signum: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(callback)
            previous(signum, frame)

        return handler

    replaced: dict[signal.Signals, SignalHandler] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if callable(previous):  # Otherwise no server handler is there to hand the signal to.
            replaced[sig] = previous
            signal.signal(sig, chain(previous))
    try:
        yield
    finally:
        for sig, previous in replaced.items():
            signal.signal(sig, previous)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, asyncio.Event]]:
    """Give every request the server's shutdown event as `request.state.shutdown`."""
    shutdown = asyncio.Event()
    with on_shutdown_signal(shutdown.set):
        yield {"shutdown": shutdown}


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


def parse_lambda_deadline(raw: str | None, now: float) -> float | None:
    """The invocation's deadline in epoch seconds from `x-amzn-lambda-context`; None when absent.

    A header that is there but is not a JSON object with a positive numeric
    `deadline` (epoch milliseconds, as lambda_runtime serializes its Context),
    or whose deadline is not within LAMBDA_MAX_TIMEOUT_SECONDS of `now` (epoch
    seconds), raises ValueError saying so. A deadline just past is returned:
    the stream then hands over at once.
    """
    if raw is None:
        return None
    try:
        context = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError(f"{LAMBDA_CONTEXT_HEADER} is not JSON: {raw[:80]!r}") from None
    deadline = context.get("deadline") if isinstance(context, dict) else None
    # Compared before any float conversion, so a huge integer cannot overflow.
    if isinstance(deadline, bool) or not isinstance(deadline, int | float) or not 0 < deadline < 2**53:
        raise ValueError(
            f"{LAMBDA_CONTEXT_HEADER} has no positive numeric deadline (epoch milliseconds): {raw[:80]!r}"
        )
    if abs(deadline / 1000 - now) > LAMBDA_MAX_TIMEOUT_SECONDS:
        raise ValueError(
            f"{LAMBDA_CONTEXT_HEADER} deadline {deadline} (epoch milliseconds) is more than"
            f" {LAMBDA_MAX_TIMEOUT_SECONDS} s from now, so it is no invocation's"
        )
    return deadline / 1000


def create_app(settings: Settings | None = None, source: EventSource | None = None) -> FastAPI:
    settings = Settings.from_env() if settings is None else settings
    source = ClockSource() if source is None else source
    logger = logging.getLogger(__name__)
    warned = False

    def handover_at(lambda_context: str | None) -> float:
        """The event-loop time at which a stream starting now hands over; inf when that is off."""
        nonlocal warned
        if not settings.handover:
            return math.inf
        now = time.time()
        deadline = now + settings.max_stream_seconds
        try:
            invocation_deadline = parse_lambda_deadline(lambda_context, now)
        except ValueError as error:
            # Once per app (the image runs one): a broken adapter would otherwise log on every stream.
            if not warned:
                warned = True
                logger.warning("%s; only SSE_MAX_STREAM_SECONDS limits streams", error)
            invocation_deadline = None
        if invocation_deadline is not None:
            deadline = min(deadline, invocation_deadline)
        # The loop's clock is monotonic; the deadline is wall-clock time, converted once here.
        return asyncio.get_running_loop().time() + deadline - now - settings.handover_margin_seconds

    app = FastAPI(title="sse-streaming", version=settings.version, lifespan=lifespan)
    if settings.cors_allow_origins:
        # The only place CORS is applied: not in the Function URL, not in a proxy.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=["GET", "HEAD"],
            # EventSource sends Last-Event-ID when it reconnects, which needs a preflight.
            allow_headers=["Last-Event-ID"],
        )

    # Each GET route also answers HEAD; the HEAD twin stays out of the schema
    # so operation ids stay unique.
    @app.get("/health")
    @app.head("/health", include_in_schema=False)
    async def health() -> Health:
        return Health(status="ok", version=settings.version, revision=settings.revision)

    @app.get(
        "/stream",
        response_class=SSEResponse,
        responses={204: {"description": "Last-Event-ID is at or past the end: the stream is over."}},
    )
    @app.head("/stream", response_class=SSEResponse, include_in_schema=False)
    async def stream(
        request: Request,
        count: Annotated[
            int,
            Query(
                ge=COUNT_MIN,
                le=COUNT_MAX,
                description="Events in the whole stream: ids 1..count, across reconnects.",
            ),
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
            Header(
                description="Resume after this id (EventSource sends it on reconnect); >= count gives 204."
            ),
        ] = None,
    ) -> Response:
        last_id = parse_last_event_id(last_event_id)
        if last_id >= count:
            # EventSource reuses its URL, so `count` is the same on every
            # reconnect; 204 is the HTML spec's "stop reconnecting".
            return Response(status_code=204)
        ticks = source.ticks(first_id=last_id + 1, count=count - last_id, interval=interval)
        return SSEResponse(
            sse_frames(
                ticks,
                last_id=last_id,
                heartbeat_seconds=settings.heartbeat_seconds,
                retry_ms=settings.retry_ms,
                shutdown=getattr(request.state, "shutdown", None),
                handover_at=handover_at(request.headers.get(LAMBDA_CONTEXT_HEADER)),
            )
        )

    return app


app = create_app()
