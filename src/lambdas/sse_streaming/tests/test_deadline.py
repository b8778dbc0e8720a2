"""The invocation deadline from the adapter's header, and the handover settings."""

from __future__ import annotations

import pytest

from handler import LAMBDA_CONTEXT_HEADER, Settings, parse_lambda_deadline
from sse_testkit import lambda_context

NOW = 1_764_000_000.0


def test_missing_header_means_no_invocation_deadline() -> None:
    assert parse_lambda_deadline(None, NOW) is None


def test_the_adapters_context_gives_the_deadline_in_epoch_seconds() -> None:
    assert parse_lambda_deadline(lambda_context(1_764_000_060_123), NOW) == 1_764_000_060.123


def test_a_deadline_just_past_is_returned() -> None:
    # The stream then hands over at once (test_handover.py).
    assert parse_lambda_deadline(lambda_context(1_763_999_990_000), NOW) == 1_763_999_990.0


@pytest.mark.parametrize(
    "deadline_ms",
    [
        # What cargo-lambda 1.9.2 sends: 600000 ms since 1970, a timeout mistaken for a deadline.
        pytest.param(600_000, id="emulator-constant"),
        pytest.param(1_763_999_099_000, id="901-s-ago"),
        pytest.param(1_764_000_901_000, id="in-901-s"),
    ],
)
def test_a_deadline_no_invocation_could_have_is_an_error(deadline_ms: int) -> None:
    with pytest.raises(
        ValueError, match=f"{LAMBDA_CONTEXT_HEADER} deadline {deadline_ms} .* more than 900 s"
    ):
        parse_lambda_deadline(lambda_context(deadline_ms), NOW)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param("deadline=1764000000000", id="not-json"),
        pytest.param('{"deadline": 1764000000000', id="truncated"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="nested-too-deep"),
        pytest.param("[1764000000000]", id="not-an-object"),
        pytest.param('{"request_id": "x"}', id="no-deadline"),
        pytest.param('{"deadline": null}', id="null"),
        pytest.param('{"deadline": "1764000000000"}', id="string"),
        pytest.param('{"deadline": true}', id="bool"),
        pytest.param('{"deadline": 0}', id="zero"),
        pytest.param('{"deadline": -1764000000000}', id="negative"),
        pytest.param('{"deadline": NaN}', id="nan"),
        pytest.param('{"deadline": Infinity}', id="infinity"),
        pytest.param('{"deadline": 1' + "0" * 400 + "}", id="huge-integer"),
    ],
)
def test_malformed_header_is_an_error_naming_it(raw: str) -> None:
    with pytest.raises(ValueError, match=LAMBDA_CONTEXT_HEADER):
        parse_lambda_deadline(raw, NOW)


def test_handover_settings_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.handover, settings.handover_margin_seconds, settings.max_stream_seconds) == (
        True,
        5.0,
        900.0,
    )


@pytest.mark.parametrize(("value", "on"), [("on", True), ("OFF", False), (" off ", False), ("", True)])
def test_handover_switch(value: str, on: bool) -> None:
    assert Settings.from_env({"SSE_HANDOVER": value}).handover is on


def test_handover_settings_are_read() -> None:
    settings = Settings.from_env({"SSE_HANDOVER_MARGIN_SECONDS": "2.5", "SSE_MAX_STREAM_SECONDS": "60"})
    assert (settings.handover_margin_seconds, settings.max_stream_seconds) == (2.5, 60.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SSE_HANDOVER", "no"),
        ("SSE_HANDOVER", "0"),
        ("SSE_HANDOVER_MARGIN_SECONDS", "soon"),
        ("SSE_HANDOVER_MARGIN_SECONDS", "0"),
        ("SSE_HANDOVER_MARGIN_SECONDS", "nan"),
        ("SSE_HANDOVER_MARGIN_SECONDS", "601"),
        ("SSE_MAX_STREAM_SECONDS", "0.5"),
        ("SSE_MAX_STREAM_SECONDS", "inf"),
    ],
)
def test_bad_handover_setting_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_cap_must_exceed_the_margin() -> None:
    # Otherwise a stream without a deadline header would hand over before its first tick.
    env = {"SSE_MAX_STREAM_SECONDS": "5", "SSE_HANDOVER_MARGIN_SECONDS": "5"}
    with pytest.raises(ValueError, match="SSE_MAX_STREAM_SECONDS=5 must be greater than SSE_HANDOVER_MARGIN"):
        Settings.from_env(env)
