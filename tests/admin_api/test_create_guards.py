"""The create guards counted atomically: racing creates, callbacks that close, guards switched on.

The duplicate check and the open-callbacks cap keep counts (``open_counts``) that one
conditional update takes, so concurrent creates cannot pass them together; callbacks that closed
are found by a recount when a count reaches its limit.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from callback_admin_api.collections import OPEN_COUNTS
from callback_shared.mongo import CALLBACKS, Document
from callback_shared.states import OPEN_STATES
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.support import (
    Tokens,
    configure,
    immediate,
    number,
    problem,
    scheduled,
    tomorrow_at,
)

CALLBACKS_URL = "/api/v1/callbacks"


async def _post_all(
    client: httpx.AsyncClient, bodies: list[dict[str, Any]], headers: dict[str, str]
) -> list[httpx.Response]:
    return list(
        await asyncio.gather(
            *(client.post(CALLBACKS_URL, json=body, headers=headers) for body in bodies)
        )
    )


async def _open(mongo: AsyncDatabase[Document], service: str, **more: Any) -> int:
    return await mongo[CALLBACKS].count_documents(
        {"service_name": service, "state": {"$in": sorted(OPEN_STATES)}, **more}
    )


async def test_twenty_racing_creates_for_one_number_with_the_strict_check_admit_one(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    await configure(client, tokens, service, guards={"duplicate_check": "strict_1"})
    responses = await _post_all(client, [immediate(service)] * 20, tokens.supervisor())
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 19, statuses
    (created,) = [r.json()["id"] for r in responses if r.status_code == 201]
    # every refusal names the one that got in
    for refused in (r for r in responses if r.status_code == 409):
        assert problem(refused, 409)["open_callback_ids"] == [created]
    assert await _open(mongo, service) == 1


async def test_racing_creates_with_max_two_admit_two(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    await configure(client, tokens, service, guards={"duplicate_check": "max_2"})
    responses = await _post_all(client, [immediate(service)] * 12, tokens.supervisor())
    assert sorted(r.status_code for r in responses) == [201] * 2 + [409] * 10
    assert await _open(mongo, service) == 2


async def test_open_callbacks_cap_of_n_with_2n_racing_creates_admits_exactly_n(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    cap = 6
    await configure(
        client, tokens, service, guards={"duplicate_check": "off", "max_open_callbacks": cap}
    )
    bodies = [immediate(service, number(n)) for n in range(2 * cap)]
    responses = await _post_all(client, bodies, tokens.supervisor())
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * cap + [429] * cap, statuses
    assert await _open(mongo, service) == cap


async def test_a_closed_callback_frees_its_place_for_the_next_create(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    await configure(
        client, tokens, service, guards={"duplicate_check": "strict_1", "max_open_callbacks": 1}
    )
    headers = tokens.supervisor()
    for _ in range(3):
        created = await client.post(
            CALLBACKS_URL, json=scheduled(service, tomorrow_at(11)), headers=headers
        )
        assert created.status_code == 201, created.text
        # full: the same number (409), and any number (429)
        problem(await client.post(CALLBACKS_URL, json=immediate(service), headers=headers), 409)
        other = immediate(service, number(7))
        problem(await client.post(CALLBACKS_URL, json=other, headers=headers), 429)
        cancel = await client.post(
            f"{CALLBACKS_URL}/{created.json()['id']}/cancel", headers=headers
        )
        assert cancel.status_code == 200, cancel.text


async def test_a_create_refused_later_gives_its_counted_place_back(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    await configure(
        client,
        tokens,
        service,
        slot_capacity=1,
        guards={"duplicate_check": "strict_1", "max_open_callbacks": 2},
    )
    headers = tokens.supervisor()
    desired = tomorrow_at(9)
    taken = await client.post(
        CALLBACKS_URL, json=scheduled(service, desired, number(1)), headers=headers
    )
    assert taken.status_code == 201
    full = await client.post(CALLBACKS_URL, json=scheduled(service, desired), headers=headers)
    problem(full, 409)
    # the refused create counted nothing: both counts are as before it, without a recount
    counts = {
        doc["_id"]: doc["open"] async for doc in mongo[OPEN_COUNTS].find({"service": service})
    }
    assert counts == {
        f"service|{service}": 1,
        f"number|{service}|{number(1)}": 1,
        f"number|{service}|+14155552671": 0,
    }
    ok = await client.post(CALLBACKS_URL, json=immediate(service), headers=headers)
    assert ok.status_code == 201, ok.text


async def test_switching_a_guard_on_counts_the_callbacks_made_while_it_was_off(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    headers = tokens.supervisor()
    await configure(client, tokens, service, guards={"duplicate_check": "strict_1"})
    first = await client.post(CALLBACKS_URL, json=immediate(service), headers=headers)
    assert first.status_code == 201
    await configure(client, tokens, service, guards={"duplicate_check": "off"})
    second = await client.post(CALLBACKS_URL, json=immediate(service), headers=headers)
    assert second.status_code == 201
    await configure(client, tokens, service, guards={"duplicate_check": "max_2"})
    body = problem(await client.post(CALLBACKS_URL, json=immediate(service), headers=headers), 409)
    assert sorted(body["open_callback_ids"]) == sorted([first.json()["id"], second.json()["id"]])
    # the cap, switched on over callbacks made without it
    await configure(
        client, tokens, service, guards={"duplicate_check": "off", "max_open_callbacks": 2}
    )
    refused = await client.post(CALLBACKS_URL, json=immediate(service, number(3)), headers=headers)
    assert "open callbacks" in problem(refused, 429)["detail"]
