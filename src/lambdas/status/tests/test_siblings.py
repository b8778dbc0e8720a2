"""What this function must share with the SSE service it describes, read from that service's files."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import handler

HERE = Path(__file__).resolve().parent.parent
SSE = HERE.parent / "sse_streaming"


def pins(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return sorted(line for line in lines if line)


def constants(path: Path) -> dict[str, object]:
    """The module-level `NAME = <literal>` assignments of a Python file, without importing it."""
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def test_stream_limits_are_the_sse_service_limits() -> None:
    sse = constants(SSE / "handler.py")
    ours = (handler.STREAM_MAX_COUNT, handler.STREAM_MAX_INTERVAL_SECONDS)
    assert ours == (sse["COUNT_MAX"], sse["INTERVAL_MAX"]), (
        "the SSE service's limits changed: update STREAM_MAX_* in src/lambdas/status/handler.py"
    )


def test_runtime_pins_are_the_sse_service_pins() -> None:
    # One dependency set gives one dependency layer for both images.
    assert pins(HERE / "requirements.txt") == pins(SSE / "requirements.txt"), (
        "src/lambdas/status/requirements.txt must pin what src/lambdas/sse_streaming/requirements.txt pins"
    )
    assert pins(HERE / "requirements-dev.txt") == pins(SSE / "requirements-dev.txt")


def test_base_images_are_the_sse_service_base_images() -> None:
    def base_images(dockerfile: Path) -> list[str]:
        return re.findall(r"^ARG [A-Z_]+_IMAGE=\S+$", dockerfile.read_text(), flags=re.MULTILINE)

    ours = base_images(HERE / "Dockerfile")
    assert len(ours) == 2, ours
    assert all("@sha256:" in line for line in ours), ours
    assert ours == base_images(SSE / "Dockerfile"), (
        "the base-image ARG lines of src/lambdas/status/Dockerfile must match"
        " src/lambdas/sse_streaming/Dockerfile's"
    )
