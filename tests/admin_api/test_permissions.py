"""The permission matrix: every endpoint x the three roles x a granted or an ungranted service.

A role without the permission gets 403; a granted service gets the endpoint's success; an
ungranted one gets 403 where the caller named the service, and for a record the same 404 as a
record that does not exist. Nothing of the ungranted service's records appears in any body, and
a refused request changes nothing.
"""

from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from callback_admin_api.context import AdminApi
from callback_shared.models import ServiceConfig
from callback_shared.mongo import CALLBACKS, SERVICES, Document
from callback_shared.states import CallbackResult, CallbackState
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.support import (
    ADMINISTRATOR,
    MONITOR,
    SUPERVISOR,
    Tokens,
    immediate,
    number,
    stored_callback,
    tomorrow_at,
)

READ, OPERATE, CONFIGURE, EXPORT = "read", "operate", "configure", "export"
ALLOWED = {
    MONITOR: {READ},
    SUPERVISOR: {READ, OPERATE, EXPORT},
    ADMINISTRATOR: {READ, OPERATE, CONFIGURE, EXPORT},
}


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    needs: str
    success: int
    #: status for a caller with the role whose grant lacks the service
    ungranted: int
    body: str | None = None
    params: str | None = None


ENDPOINTS = [
    Endpoint("create", "POST", "/callbacks", OPERATE, 201, 403, body="create"),
    Endpoint("list one service", "GET", "/callbacks", READ, 200, 403, params="service"),
    Endpoint("list everything granted", "GET", "/callbacks", READ, 200, 200, params="range"),
    Endpoint("detail", "GET", "/callbacks/{scheduled}", READ, 200, 404, params="advanced"),
    Endpoint("reschedule", "POST", "/callbacks/{scheduled}/reschedule", OPERATE, 200, 404, "slot"),
    Endpoint("cancel", "POST", "/callbacks/{scheduled}/cancel", OPERATE, 200, 404),
    Endpoint("recreate", "POST", "/callbacks/{completed}/recreate", OPERATE, 201, 404),
    Endpoint("bulk preview", "POST", "/callbacks/bulk-cancel/preview", OPERATE, 200, 200, "range"),
    Endpoint("bulk cancel", "POST", "/callbacks/bulk-cancel", OPERATE, 200, 200, "range"),
    # nobody has cancelled anything in this test's service: the report is empty (404)
    Endpoint("cancellation report", "GET", "/reports/cancellations", EXPORT, 404, 404),
    Endpoint("search", "GET", "/search", READ, 200, 200, params="q"),
    Endpoint("services", "GET", "/services", READ, 200, 200),
    Endpoint("service settings", "GET", "/services/{service}", READ, 200, 403),
    Endpoint("edit settings", "PUT", "/services/{service}", CONFIGURE, 200, 403, body="settings"),
    Endpoint("remove settings", "DELETE", "/services/{service}", CONFIGURE, 204, 403),
    Endpoint(
        "availability", "GET", "/services/{service}/availability", READ, 200, 403, params="date"
    ),
]


@pytest.mark.parametrize("granted", [True, False], ids=["granted", "ungranted"])
@pytest.mark.parametrize("role", [MONITOR, SUPERVISOR, ADMINISTRATOR])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
async def test_permission_matrix(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    api: AdminApi,
    mongo: AsyncDatabase[Document],
    endpoint: Endpoint,
    role: str,
    granted: bool,
) -> None:
    scheduled = stored_callback(service, customer_number=number(901))
    completed = stored_callback(
        service,
        customer_number=number(902),
        state=CallbackState.COMPLETED,
        result=CallbackResult.AGENT,
    )
    await mongo[CALLBACKS].insert_many([scheduled, completed])
    await api.repository.save_service(ServiceConfig(name=service, slot_capacity=5))
    records_before = await mongo[CALLBACKS].find({"service_name": service}).to_list()
    settings_before = await mongo[SERVICES].find_one({"_id": service})

    other = service + "-other"
    headers = tokens.header(role, services=(service,) if granted else (other,), sub="matrix")
    path = "/api/v1" + endpoint.path.format(
        scheduled=scheduled["_id"], completed=completed["_id"], service=service
    )
    json = {
        "create": immediate(service, number(903)),
        "settings": {"name": service, "slot_capacity": 9},
        "slot": {"desired_time": (tomorrow_at(10) + timedelta(days=1)).isoformat()},
        "range": {"all_in_range": {"range": "next_7_days"}},
        None: None,
    }[endpoint.body]
    params = {
        "service": {"service": service, "range": "next_7_days"},
        "range": {"range": "next_7_days"},
        "advanced": {"advanced": "true"},
        "q": {"q": str(scheduled["_id"])},
        "date": {"date": tomorrow_at(0).date().isoformat()},
        None: None,
    }[endpoint.params]
    response = await client.request(
        endpoint.method, path, json=json, params=params, headers=headers
    )

    if endpoint.needs not in ALLOWED[role]:
        expected = 403
    else:
        expected = endpoint.success if granted else endpoint.ungranted
    assert response.status_code == expected, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
        # a refused request changes nothing
        assert await mongo[CALLBACKS].find({"service_name": service}).to_list() == records_before
        assert await mongo[SERVICES].find_one({"_id": service}) == settings_before

    if not granted:
        text = response.text
        for doc in records_before:
            assert str(doc["_id"]) not in text
            assert doc["customer_number"] not in text
        if endpoint.name in ("search", "list everything granted"):
            assert response.json()["items"] == []
        if endpoint.name == "services" and response.status_code == 200:
            assert [item["settings"]["name"] for item in response.json()["items"]] == [other]
    elif expected == 200 and endpoint.name == "search":
        assert [row["callback_id"] for row in response.json()["items"]] == [str(scheduled["_id"])]
    elif expected == 200 and endpoint.name == "services":
        assert [item["settings"]["name"] for item in response.json()["items"]] == [service]
    elif expected == 200 and endpoint.name == "bulk preview":
        assert [item["id"] for item in response.json()["items"]] == [str(scheduled["_id"])]
    elif expected == 200 and endpoint.name == "bulk cancel":
        assert response.json()["cancelled"] == 1
    elif expected == 200 and endpoint.name.startswith("list"):
        listed = {item["id"] for item in response.json()["items"]}
        assert str(scheduled["_id"]) in listed
