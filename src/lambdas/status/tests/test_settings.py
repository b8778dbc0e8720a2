"""The environment-variable settings: defaults, values, and errors that name the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from handler import Settings

LAMBDA_DIR = Path(__file__).resolve().parent.parent


def test_defaults() -> None:
    assert Settings.from_env({}) == Settings(
        version="unknown",
        revision="unknown",
        region=None,
        function=None,
        stream_url=None,
        cors_allow_origins=(),
    )


def test_blank_values_count_as_unset() -> None:
    names = ("APP_VERSION", "APP_REVISION", "AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME", "STREAM_URL")
    assert Settings.from_env(dict.fromkeys(names, "  ")) == Settings()


def test_values_are_trimmed() -> None:
    settings = Settings.from_env({"AWS_REGION": " us-east-1 ", "STREAM_URL": " http://127.0.0.1:9000/x "})
    assert (settings.region, settings.stream_url) == ("us-east-1", "http://127.0.0.1:9000/x")


@pytest.mark.parametrize(
    "url",
    ["https://abc.lambda-url.eu-west-1.on.aws/", "http://localhost:8080", "https://example.com/sse/"],
)
def test_stream_url_accepts_base_urls(url: str) -> None:
    assert Settings.from_env({"STREAM_URL": url}).stream_url == url


@pytest.mark.parametrize(
    "url",
    [
        "abc.lambda-url.eu-west-1.on.aws",
        "ftp://example.com/",
        "https://",
        "https://example.com/stream?count=5",
        "https://example.com/#top",
        "https://example.com:99999/",
        "https://example.com:0/",
        "https://[::1/",
        "https://example.com/a b",
    ],
)
def test_bad_stream_url_names_the_variable(url: str) -> None:
    with pytest.raises(ValueError, match=r"^STREAM_URL=.* is not a base URL"):
        Settings.from_env({"STREAM_URL": url})


def test_cors_setting_is_a_comma_separated_list() -> None:
    value = " https://app.example.com , http://localhost:5173,"
    assert Settings.from_env({"CORS_ALLOW_ORIGINS": value}).cors_allow_origins == (
        "https://app.example.com",
        "http://localhost:5173",
    )
    assert Settings.from_env({"CORS_ALLOW_ORIGINS": " , "}).cors_allow_origins == ()
    assert Settings.from_env({"CORS_ALLOW_ORIGINS": "*"}).cors_allow_origins == ("*",)


@pytest.mark.parametrize(
    "value", ["https://app.example.com/", "app.example.com", "https://a.example/path", "*,https://a.example"]
)
def test_bad_origin_names_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match=r"^CORS_ALLOW_ORIGINS: "):
        Settings.from_env({"CORS_ALLOW_ORIGINS": value})


@pytest.mark.parametrize(
    ("name", "value"), [("STREAM_URL", "example.com"), ("CORS_ALLOW_ORIGINS", "https://a.example/")]
)
def test_a_bad_value_stops_the_server_at_startup(name: str, value: str) -> None:
    # The image's own command, with one bad setting: uvicorn must exit at once, naming it.
    env = {k: v for k, v in os.environ.items() if k not in ("STREAM_URL", "CORS_ALLOW_ORIGINS")}
    command = [sys.executable, "-m", "uvicorn", "handler:app", "--host", "127.0.0.1", "--port", "0"]
    result = subprocess.run(
        command, cwd=LAMBDA_DIR, env={**env, name: value}, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert f"ValueError: {name}" in result.stderr, result.stderr
    assert "Uvicorn running" not in result.stderr
