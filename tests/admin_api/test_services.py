"""Service settings (administrator), the granted services, and a day's availability."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.admin_api.support import Tokens, configure, fields, number, problem, scheduled

URL = "/api/v1/services"
WEEK = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


async def test_settings_are_stored_read_and_removed(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    hours = {
        "monday": [{"opens": "08:00", "closes": "12:00"}, {"opens": "13:00", "closes": "18:00"}]
    }
    settings = {
        "name": service,
        "time_zone": "Europe/Paris",
        "office_hours": hours,
        "closed_dates": ["2030-12-25"],
        "slot_length_minutes": 30,
        "slot_capacity": 4,
        "desired_window_seconds": 300,
        "dial_retry": {"max_attempts": 5, "min_interval_seconds": 60},
        "guards": {
            "duplicate_check": "max_2",
            "max_requests_per_number_per_day": 3,
            "max_open_callbacks": 100,
            "immediate_outside_office_hours": "accept",
        },
        "default_country": "FR",
    }
    put = await client.put(f"{URL}/{service}", json=settings, headers=tokens.administrator())
    assert put.status_code == 200, put.text
    got = await client.get(f"{URL}/{service}", headers=tokens.monitor())
    assert got.json()["stored"] is True
    stored = got.json()["settings"]
    for key, value in settings.items():
        if key != "guards":
            assert stored[key] == value, key
    assert stored["guards"]["duplicate_check"] == "max_2"
    deleted = await client.delete(f"{URL}/{service}", headers=tokens.administrator())
    assert deleted.status_code == 204
    defaults = (await client.get(f"{URL}/{service}", headers=tokens.monitor())).json()
    assert defaults["stored"] is False
    assert defaults["settings"]["desired_window_seconds"] == 120
    assert defaults["settings"]["time_zone"] == "UTC"
    problem(await client.delete(f"{URL}/{service}", headers=tokens.administrator()), 404)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"office_hours": {"monday": [{"opens": "18:00", "closes": "09:00"}]}}, "office_hours"),
        ({"office_hours": {"funday": [{"opens": "09:00", "closes": "17:00"}]}}, "office_hours"),
        ({"slot_capacity": 0}, "slot_capacity"),
        ({"guards": {"duplicate_check": "max_3"}}, "guards"),
        ({"closed_dates": ["2030-02-30"]}, "closed_dates"),
        ({"default_country": "france"}, "default_country"),
        ({"name": "another"}, "name"),
    ],
)
async def test_bad_settings_name_the_field_and_change_nothing(
    client: httpx.AsyncClient, tokens: Tokens, service: str, change: dict[str, Any], field: str
) -> None:
    await configure(client, tokens, service, slot_capacity=3)
    response = await client.put(
        f"{URL}/{service}", json={"name": service, **change}, headers=tokens.administrator()
    )
    assert any(f.startswith(field) for f in fields(problem(response, 422)))
    kept = (await client.get(f"{URL}/{service}", headers=tokens.monitor())).json()["settings"]
    assert kept["slot_capacity"] == 3


async def test_only_an_administrator_edits_settings(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    for headers in (tokens.supervisor(), tokens.monitor()):
        response = await client.put(f"{URL}/{service}", json={"name": service}, headers=headers)
        problem(response, 403)
        problem(await client.delete(f"{URL}/{service}", headers=headers), 403)
    ungranted = await client.put(
        f"{URL}/{service}", json={"name": service}, headers=tokens.administrator("elsewhere")
    )
    problem(ungranted, 403)
    assert (await client.get(f"{URL}/{service}", headers=tokens.monitor())).json()[
        "stored"
    ] is False


async def test_services_lists_only_granted_ones(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    other = service + "-other"
    await configure(client, tokens, service, slot_capacity=7)
    await configure(client, tokens, other)
    mine = (await client.get(URL, headers=tokens.monitor(service, "never-configured"))).json()
    assert [(s["settings"]["name"], s["stored"]) for s in mine["items"]] == [
        ("never-configured", False),
        (service, True),
    ]
    assert mine["items"][1]["settings"]["slot_capacity"] == 7
    everything = (await client.get(URL, headers=tokens.monitor())).json()
    names = {s["settings"]["name"] for s in everything["items"]}
    assert {service, other} <= names


async def test_availability_lists_open_slots_with_remaining_capacity(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    day = datetime.now(UTC).date() + timedelta(days=3)
    hours = {WEEK[day.weekday()]: [{"opens": "09:00", "closes": "10:00"}]}
    await configure(
        client,
        tokens,
        service,
        time_zone="America/New_York",
        office_hours=hours,
        slot_length_minutes=20,
        slot_capacity=2,
    )
    url = f"{URL}/{service}/availability"
    before = await client.get(url, params={"date": day.isoformat()}, headers=tokens.monitor())
    assert before.status_code == 200, before.text
    slots = before.json()["slots"]
    assert [s["local_start"][11:16] for s in slots] == ["09:00", "09:20", "09:40"]
    assert all(s["remaining"] == 2 for s in slots)
    first = datetime.fromisoformat(slots[0]["start"])
    assert first.utcoffset() == timedelta(0) and first.hour in (13, 14)  # EST/EDT
    for n in range(2):
        response = await client.post(
            "/api/v1/callbacks",
            json=scheduled(service, first, number(n)),
            headers=tokens.supervisor(),
        )
        assert response.status_code == 201, response.text
    second = datetime.fromisoformat(slots[1]["start"])
    await client.post(
        "/api/v1/callbacks", json=scheduled(service, second, number(3)), headers=tokens.supervisor()
    )
    after = await client.get(url, params={"date": day.isoformat()}, headers=tokens.monitor())
    remaining = [(s["local_start"][11:16], s["remaining"]) for s in after.json()["slots"]]
    assert remaining == [("09:20", 1), ("09:40", 2)]


async def test_availability_of_a_closed_day_is_empty(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    day = datetime.now(UTC).date() + timedelta(days=5)
    await configure(client, tokens, service, closed_dates=[day.isoformat()])
    body = (
        await client.get(
            f"{URL}/{service}/availability",
            params={"date": day.isoformat()},
            headers=tokens.monitor(),
        )
    ).json()
    assert body["closed"] is True and body["slots"] == []
    open_day = (
        await client.get(
            f"{URL}/{service}/availability",
            params={"date": (day + timedelta(days=1)).isoformat()},
            headers=tokens.monitor(),
        )
    ).json()
    assert open_day["closed"] is False and len(open_day["slots"]) == 96  # 24 h of 15 minutes


async def test_availability_needs_a_valid_date_and_a_granted_service(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    url = f"{URL}/{service}/availability"
    problem(await client.get(url, params={"date": "tomorrow"}, headers=tokens.monitor()), 422)
    problem(await client.get(url, headers=tokens.monitor()), 422)
    problem(
        await client.get(url, params={"date": "2030-01-01"}, headers=tokens.monitor("elsewhere")),
        403,
    )
