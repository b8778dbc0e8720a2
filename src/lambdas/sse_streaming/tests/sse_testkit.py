"""Test helpers shared by the suite: an SSE parser, a recording source, a raw HTTP client."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

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
