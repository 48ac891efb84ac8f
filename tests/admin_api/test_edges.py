"""No input answers 5xx: times and dates anywhere in the calendar, with any UTC offset, in every
parameter and body field that takes one (property-based, against the real database). A time or
date outside the accepted days gets a 422 naming its field."""

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import httpx
import pytest
from callback_admin_api.context import AdminApi
from callback_shared.models import EARLIEST_ACCEPTED, LATEST_ACCEPTED
from callback_shared.mongo import Document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.strategies import DATES, TIMES
from tests.admin_api.support import Tokens, problem, stored_callback

URL = "/api/v1/callbacks"
ZONES = st.sampled_from(["UTC", "Etc/GMT-14", "Etc/GMT+12", "Pacific/Kiritimati", "Europe/Berlin"])
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def accepted(at: datetime) -> bool:
    try:
        day = at.astimezone(UTC).date()
    except OverflowError:
        return False
    return EARLIEST_ACCEPTED <= day <= LATEST_ACCEPTED


def refused_field(response: httpx.Response) -> set[str]:
    return {error["field"] for error in problem(response, 422).get("errors", [])}


@PROPERTY
@given(start=TIMES, end=TIMES, zone=ZONES)
async def test_list_and_bulk_preview_take_any_range(
    client: httpx.AsyncClient, start: datetime, end: datetime, zone: str
) -> None:
    headers = Tokens().supervisor()
    query = {"from": start.isoformat(), "to": end.isoformat(), "tz": zone}
    listed = await client.get(URL, params=query, headers=headers)
    body = {"all_in_range": query}
    previewed = await client.post(f"{URL}/bulk-cancel/preview", json=body, headers=headers)
    for response in (listed, previewed):
        assert response.status_code < 500, response.text
    if not accepted(start):
        assert any(f.endswith("from") for f in refused_field(listed)), listed.text
        assert any(f.endswith("from") for f in refused_field(previewed)), previewed.text


@PROPERTY
@given(day=DATES, zone=ZONES)
async def test_availability_takes_any_date(
    client: httpx.AsyncClient, tokens: Tokens, service: str, day: date, zone: str
) -> None:
    await client.put(
        f"/api/v1/services/{service}",
        json={"name": service, "time_zone": zone},
        headers=tokens.administrator(),
    )
    response = await client.get(
        f"/api/v1/services/{service}/availability",
        params={"date": day.isoformat()},
        headers=tokens.monitor(),
    )
    assert response.status_code < 500, response.text
    if not EARLIEST_ACCEPTED <= day <= LATEST_ACCEPTED:
        assert refused_field(response) == {"date"}, response.text


@PROPERTY
@given(at=TIMES)
async def test_create_and_reschedule_take_any_desired_time(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    at: datetime,
) -> None:
    body = {
        "type": "SCHEDULED",
        "service_name": service,
        "customer_number": "+14155552671",
        "desired_time": at.isoformat(),
    }
    created = await client.post(URL, json=body, headers=tokens.supervisor())
    assert created.status_code < 500, created.text
    doc = stored_callback(service)
    await mongo["callbacks"].insert_one(doc)
    moved = await client.post(
        f"{URL}/{doc['_id']}/reschedule",
        json={"desired_time": at.isoformat()},
        headers=tokens.supervisor(),
    )
    assert moved.status_code < 500, moved.text
    if not accepted(at):
        assert refused_field(created) == {"desired_time"}, created.text
        assert refused_field(moved) == {"desired_time"}, moved.text


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_the_calendars_edges_are_refused_naming_the_field(
    client: httpx.AsyncClient, tokens: Tokens, at: str
) -> None:
    response = await client.get(URL, params={"from": at, "to": at}, headers=tokens.monitor())
    assert refused_field(response) == {"from", "to"}, response.text


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(1)",
        "data:audio/wav;base64,AAAA",
        "file:///etc/passwd",
        "ftp://recordings.example.com/a.wav",
        "https:///no-host.wav",
        "recordings/a.wav",
        "https://recordings.example.com/" + "a" * 2000,
    ],
)
async def test_a_name_recording_is_an_https_or_http_url(
    client: httpx.AsyncClient, tokens: Tokens, service: str, uri: str
) -> None:
    body = {
        "type": "IMMEDIATE",
        "service_name": service,
        "customer_number": "+14155552671",
        "name_recording_uri": uri,
    }
    response = await client.post(URL, json=body, headers=tokens.supervisor())
    assert refused_field(response) == {"name_recording_uri"}, response.text


async def test_a_body_over_the_cap_is_refused_before_it_is_parsed(
    client: httpx.AsyncClient, tokens: Tokens, api: AdminApi
) -> None:
    cap = api.settings.admin_max_body_bytes
    padding = "x" * cap
    body = '{"type": "IMMEDIATE", "pad": "' + padding + '"}'
    declared = await client.post(
        URL, content=body, headers={**tokens.supervisor(), "content-type": "application/json"}
    )
    assert declared.status_code == 413, declared.text
    assert declared.headers["content-type"].startswith("application/problem+json")
    assert declared.json()["status"] == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536].encode()

    streamed = await client.post(
        URL, content=chunks(), headers={**tokens.supervisor(), "content-type": "application/json"}
    )
    assert streamed.status_code == 413, streamed.text
    small = await client.post(URL, json={"type": "IMMEDIATE"}, headers=tokens.supervisor())
    assert small.status_code == 422  # an ordinary body is parsed as before
