"""Status API for stream clients: one FastAPI `app`, run by uvicorn on port 8080.

On AWS Lambda it runs behind the Lambda Web Adapter in BUFFERED mode: every
answer is a small JSON document, sent whole once it is complete.

Contract:
- `GET /health` answers `{"status": "ok", "version": ..., "revision": ...}`
  (the adapter's readiness check, and the same shape as the SSE service's).
- `GET /status` answers what a client needs before it opens a stream: this
  deployment's version, revision, region and function, the server's UTC time,
  and the SSE service's URL and limits. It is never cached.
- Unknown paths answer 404 and other methods 405, as JSON `{"detail": ...}`.
- HEAD works wherever GET does; CORS is on only for `CORS_ALLOW_ORIGINS`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Match, Route

SERVICE = "status"
# The SSE service's limits on `GET /stream?count=N&interval=S`, which clients
# must stay within; a test checks them against src/lambdas/sse_streaming/handler.py.
STREAM_MAX_COUNT = 10_000
STREAM_MAX_INTERVAL_SECONDS = 60.0
# An origin as browsers send it: scheme and host, no path, no trailing slash.
_ORIGIN = re.compile(r"https?://[^/\s,]+")


# --- Settings ---------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment, read in one place."""

    version: str = "unknown"
    revision: str = "unknown"
    # Set by Lambda itself; None when the app runs anywhere else.
    region: str | None = None
    function: str | None = None
    # The SSE service's base URL (its Function URL), told to clients; None if not configured.
    stream_url: str | None = None
    # Origins allowed to read responses cross-origin; empty means no CORS headers at all.
    cors_allow_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; a bad value raises ValueError naming the variable."""
        env = os.environ if environ is None else environ
        return cls(
            version=env.get("APP_VERSION", "").strip() or "unknown",
            revision=env.get("APP_REVISION", "").strip() or "unknown",
            region=env.get("AWS_REGION", "").strip() or None,
            function=env.get("AWS_LAMBDA_FUNCTION_NAME", "").strip() or None,
            stream_url=_env_url(env, "STREAM_URL"),
            cors_allow_origins=_env_origins(env, "CORS_ALLOW_ORIGINS"),
        )


def _env_url(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        # Reading `.port` raises unless the port is a number in 0..65535; 0 is refused too.
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        valid = False
    if not valid or parts.query or parts.fragment or re.search(r"\s", raw):
        raise ValueError(
            f"{name}={raw!r} is not a base URL; expected http(s)://host[:port][/path] without"
            " a query or fragment, such as the SSE function's Function URL"
        )
    return raw


def _env_origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    # The same rules as the SSE service's CORS_ALLOW_ORIGINS, so one setting fits both.
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


# --- HTTP -------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    revision: str


class StreamInfo(BaseModel):
    url: str | None
    max_count: int
    max_interval_seconds: float


class Status(BaseModel):
    status: Literal["ok"]
    service: str
    version: str
    revision: str
    region: str | None
    function: str | None
    time: str
    stream: StreamInfo


def utc_now() -> str:
    """The current UTC time as the SSE service writes it: ISO-8601, microseconds, `Z`."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = Settings.from_env() if settings is None else settings
    # No redirect from `/status/` to `/status`: a JSON API answers 404 rather than send
    # clients to a URL built from what the adapter forwards.
    app = FastAPI(title=SERVICE, version=settings.version, redirect_slashes=False)
    if settings.cors_allow_origins:
        # The only place CORS is applied: not in the Function URL, not in a proxy.
        # GET and HEAD with no custom header are simple requests: no preflight is needed.
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_allow_origins, allow_methods=["GET", "HEAD"]
        )
    stream = StreamInfo(
        url=settings.stream_url,
        max_count=STREAM_MAX_COUNT,
        max_interval_seconds=STREAM_MAX_INTERVAL_SECONDS,
    )

    # Each GET route also answers HEAD; the HEAD twin stays out of the schema
    # so operation ids stay unique.
    @app.get("/health")
    @app.head("/health", include_in_schema=False)
    async def health() -> Health:
        return Health(status="ok", version=settings.version, revision=settings.revision)

    @app.get("/status")
    @app.head("/status", include_in_schema=False)
    async def status(response: Response) -> Status:
        # The answer carries the current time, so no cache may reuse it.
        response.headers["Cache-Control"] = "no-store"
        return Status(
            status="ok",
            service=SERVICE,
            version=settings.version,
            revision=settings.revision,
            region=settings.region,
            function=settings.function,
            time=utc_now(),
            stream=stream,
        )

    @app.exception_handler(405)
    async def method_not_allowed(request: Request, exc: HTTPException) -> JSONResponse:
        # Starlette's Allow names the methods of the first route on the path only, and GET and
        # HEAD are twin routes here; RFC 9110 wants every method the path supports.
        allowed = {
            method
            for route in request.app.routes
            if isinstance(route, Route) and route.matches(request.scope)[0] is not Match.NONE
            for method in route.methods or ()
        }
        return JSONResponse(
            {"detail": exc.detail}, status_code=405, headers={"Allow": ", ".join(sorted(allowed))}
        )

    return app


app = create_app()
