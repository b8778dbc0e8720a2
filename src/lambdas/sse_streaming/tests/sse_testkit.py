"""Test helpers shared by the suite: an SSE parser, a recording source, a raw HTTP client, uvicorn."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from handler import Tick


@dataclass
class Frame:
    """One SSE block (the lines up to a blank line), fields as the spec reads them."""

    comments: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def event(self) -> str | None:
        return self.fields.get("event")


def parse_sse(body: str) -> list[Frame]:
    """Split an event-stream body into frames, following the WHATWG line rules."""
    assert body.endswith("\n\n"), f"stream does not end with a blank line: {body[-80:]!r}"
    frames = []
    for block in body.split("\n\n")[:-1]:
        frame = Frame()
        for line in block.split("\n"):
            if line.startswith(":"):
                frame.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            assert name not in frame.fields, f"field {name!r} repeated in {block!r}"
            frame.fields[name] = value.removeprefix(" ")
        frames.append(frame)
    return frames


class RecordingSource:
    """A clock source that records how far it got and how it ended."""

    def __init__(self) -> None:
        self.started = 0
        self.produced = 0
        self.cancelled = 0
        self.finished = 0

    async def ticks(self, *, first_id: int, count: int, interval: float) -> AsyncIterator[Tick]:
        self.started += 1
        try:
            for n in range(count):
                if n:
                    await asyncio.sleep(interval)
                self.produced += 1
                yield Tick(id=first_id + n, time=datetime.now(UTC))
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
        finally:
            self.finished += 1


def raw_request(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send one raw request and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def dechunk(body: bytes) -> bytes:
    """Decode a chunked HTTP/1.1 body, asserting that it ends with the zero-length chunk."""
    decoded = bytearray()
    while True:
        size_line, sep, body = body.partition(b"\r\n")
        assert sep, f"chunked body cut short: {size_line[-80:]!r}"
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n", f"bytes after the last chunk: {body[:80]!r}"
            return bytes(decoded)
        assert body[size : size + 2] == b"\r\n", "chunk cut short"
        decoded += body[:size]
        body = body[size + 2 :]


def lambda_context(deadline_ms: int) -> str:
    """The `x-amzn-lambda-context` header as the Lambda Web Adapter 0.9.1 sends it.

    The adapter serializes lambda_runtime 0.13's `Context` with serde_json: the
    struct's field names as they are, `deadline` in epoch milliseconds (u64).
    """
    return json.dumps(
        {
            "request_id": "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
            "deadline": deadline_ms,
            "invoked_function_arn": "arn:aws:lambda:eu-west-1:123456789012:function:sse",
            "xray_trace_id": None,
            "client_context": None,
            "identity": None,
            "env_config": {
                "function_name": "sse",
                "memory": 512,
                "version": "$LATEST",
                "log_stream": "",
                "log_group": "",
            },
        }
    )


LAMBDA_DIR = Path(__file__).resolve().parent.parent


@contextmanager
def uvicorn_process(env: Mapping[str, str], *args: str) -> Iterator[tuple[subprocess.Popen[str], int, str]]:
    """Run `uvicorn handler:app` as its own process on a free loopback port, killed on exit.

    Yields the process, its port and what it logged during startup; the rest
    of its output stays in `stdout` for the caller to read.
    """
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    environ.pop("CORS_ALLOW_ORIGINS", None)
    command = [sys.executable, "-m", "uvicorn", "handler:app", "--host", "127.0.0.1", "--port", "0", *args]
    server = subprocess.Popen(
        command, cwd=LAMBDA_DIR, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert server.stdout is not None
        log = ""
        while (running := re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", log)) is None:
            line = server.stdout.readline()
            assert line, f"uvicorn exited during startup:\n{log}"
            log += line
        yield server, int(running.group(1)), log
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
