"""Property: the server never emits an event id that it would refuse as Last-Event-ID."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from handler import COUNT_MAX, COUNT_MIN, LAST_EVENT_ID_MAX, Settings, parse_last_event_id
from sse_testkit import parse_sse

FAST = Settings(heartbeat_seconds=5.0, retry_ms=1500)


def resume_cases() -> list[tuple[int, int]]:
    """Edges of (count, Last-Event-ID), plus a seeded sample of the rest of the space."""
    cases = {
        (count, last_id)
        for count in (COUNT_MIN, COUNT_MIN + 1, 100, COUNT_MAX)
        for last_id in (count - 2, count - 1, count, count + 1, LAST_EVENT_ID_MAX)
        if last_id >= 0
    }
    cases |= {(1, 0), (2, 0), (100, 0)}
    rng = random.Random(20261128)
    for _ in range(30):
        count = rng.randint(COUNT_MIN, COUNT_MAX)
        # Short remainders keep each stream small; the id values still span the space.
        cases.add((count, rng.randint(max(0, count - 20), count + 20)))
        cases.add((count, rng.randint(0, LAST_EVENT_ID_MAX)))
    return sorted(cases)


def test_every_id_in_the_id_space_is_accepted() -> None:
    # Ids are positions 1..count with count <= COUNT_MAX, and a shutdown event
    # repeats the id resumed from (0..count); all of them must parse back.
    assert LAST_EVENT_ID_MAX >= COUNT_MAX
    for n in range(COUNT_MAX + 1):
        assert parse_last_event_id(str(n)) == n


@pytest.mark.parametrize(("count", "last_id"), resume_cases())
def test_emitted_ids_are_accepted_on_resume(
    make_client: Callable[..., TestClient], count: int, last_id: int
) -> None:
    client = make_client(FAST)
    params = {"count": count, "interval": 0}
    response = client.get("/stream", params=params, headers={"Last-Event-ID": str(last_id)})
    assert response.status_code in (200, 204)
    ids = [f.fields["id"] for f in parse_sse(response.text) if "id" in f.fields] if response.text else []
    assert (response.status_code == 204) == (ids == [])
    for raw in ids:
        assert parse_last_event_id(raw) == int(raw) <= count
    for raw in dict.fromkeys(ids[:1] + ids[-1:]):
        resumed = client.get("/stream", params=params, headers={"Last-Event-ID": raw})
        assert resumed.status_code in (200, 204), f"server refused its own id {raw}"
