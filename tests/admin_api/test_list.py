"""The list: ranges, filters, the search box, pages and cursors, overdue warning, indexes."""

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from callback_admin_api.listing import (
    ListCriteria,
    QueryPlan,
    SearchField,
    build_criteria,
    query_plan,
)
from callback_admin_api.repository import LIST_PROJECTION, PAGE_SORT, Repository, window_filter
from callback_shared.documents import OVERDUE_MESSAGE
from callback_shared.models import CallbackType
from callback_shared.mongo import CALLBACKS, Document, backfill_number_prefixes
from callback_shared.states import CallbackResult, CallbackState
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.support import Tokens, configure, fields, number, problem, stored_callback

URL = "/api/v1/callbacks"
S = CallbackState


def now_s() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def seed(mongo: AsyncDatabase[Document], docs: list[Document]) -> list[Document]:
    await mongo[CALLBACKS].insert_many(docs)
    return docs


async def listed(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> Any:
    response = await client.get(URL, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


async def test_range_presets_select_on_desired_time(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    now = now_s()
    midnight = now.replace(hour=0, minute=0, second=0)
    at = {
        # past retention (14 days) and the TTL monitor's grace: deleted any moment now
        "25 days ago": now - timedelta(days=25),
        "14.5 days ago": now - timedelta(days=14, hours=12),
        "10 days ago": now - timedelta(days=10),
        "just after midnight": midnight + timedelta(seconds=1),
        "just before midnight": midnight + timedelta(days=1, seconds=-1),
        "in 3 days": now + timedelta(days=3),
        "in 10 days": now + timedelta(days=10),
        "in 20 days": now + timedelta(days=20),
    }
    docs = {name: stored_callback(service, desired=moment) for name, moment in at.items()}
    await seed(mongo, list(docs.values()))
    headers = tokens.monitor()

    async def names(**params: Any) -> list[str]:
        page = await listed(client, headers, service=service, **params)
        by_id = {str(doc["_id"]): name for name, doc in docs.items()}
        return [by_id[i] for i in ids(page)]

    assert await names(range="today") == ["just after midnight", "just before midnight"]
    past_today = ["just after midnight"] if at["just after midnight"] < now else []
    assert await names(range="last_14_days") == ["10 days ago", *past_today]
    assert await names() == ["10 days ago", *past_today]  # the default range
    assert await names(range="last_30_days") == ["14.5 days ago", "10 days ago", *past_today]
    future_today = ["just before midnight"]
    assert await names(range="next_7_days") == [*future_today, "in 3 days"]
    assert await names(range="next_2_weeks") == [*future_today, "in 3 days", "in 10 days"]
    custom = await names(
        **{
            "from": (now + timedelta(days=2)).isoformat(),
            "to": (now + timedelta(days=30)).isoformat(),
        }
    )
    assert custom == ["in 3 days", "in 10 days", "in 20 days"]


async def test_today_is_the_day_of_the_given_time_zone(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    zone_now = datetime.now(UTC) + timedelta(hours=14)  # Pacific/Kiritimati is UTC+14
    local_midnight = zone_now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        hours=14
    )
    inside = stored_callback(service, desired=local_midnight + timedelta(hours=23))
    outside = stored_callback(service, desired=local_midnight - timedelta(minutes=1))
    await seed(mongo, [inside, outside])
    page = await listed(
        client, tokens.monitor(), service=service, range="today", tz="Pacific/Kiritimati"
    )
    assert ids(page) == [str(inside["_id"])]
    problem(await client.get(URL, params={"tz": "Nowhere/City"}, headers=tokens.monitor()), 422)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2030-01-01T00:00:00Z"}, "to"),
        ({"to": "2030-01-01T00:00:00Z"}, "from"),
        ({"from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z"}, "to"),
        ({"from": "2030-01-01T00:00:00", "to": "2030-01-02T00:00:00Z"}, "from"),
        ({"range": "yesterday"}, "range"),
        ({"range": "today", "from": "2030-01-01T00:00:00Z", "to": "2030-01-02T00:00:00Z"}, "range"),
        ({"state": "SLEEPING"}, "state"),
        ({"page_size": 251}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"field": "phone_number", "q": "+1 (415) abc"}, "q"),
        ({"field": "id", "q": "xyz"}, "q"),
        ({"q": "+1415"}, "field"),
        ({"field": "agent", "q": "x"}, "field"),
    ],
)
async def test_bad_list_parameters_name_the_field(
    client: httpx.AsyncClient, tokens: Tokens, params: dict[str, Any], field: str
) -> None:
    response = await client.get(URL, params=params, headers=tokens.monitor())
    named = fields(problem(response, 422))
    assert any(f == field or f.startswith(field + ".") for f in named), named


async def test_state_and_service_filters_are_repeatable(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    other, third = service + "-b", service + "-c"
    docs = [
        stored_callback(service, state=S.QUEUED),
        stored_callback(service, state=S.COMPLETED, result=CallbackResult.AGENT),
        stored_callback(other, state=S.SCHEDULED),
        stored_callback(other, state=S.PROCESSING),
        stored_callback(third, state=S.QUEUED),
    ]
    await seed(mongo, docs)
    headers = tokens.monitor()
    window = {"range": "next_7_days"}

    async def got(**params: Any) -> list[str]:
        page = await listed(client, headers, **window, **params)
        return sorted(ids(page))

    every = await got(service=[service, other, third])
    assert every == sorted(str(d["_id"]) for d in docs)
    assert await got(service=[service, other], state=["QUEUED", "SCHEDULED"]) == sorted(
        [str(docs[0]["_id"]), str(docs[2]["_id"])]
    )
    assert await got(service=[service, third], state="QUEUED") == sorted(
        [str(docs[0]["_id"]), str(docs[4]["_id"])]
    )
    assert await got(service=other, state=["COMPLETED"]) == []
    # more (service, state) pairs than streams: one query with $in clauses, same answer
    all_states = [s.value for s in S]
    assert await got(service=[service, other, third], state=all_states) == every


async def test_search_box_matches_prefixes_of_each_column(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    other = service + "-zz"
    docs = [
        stored_callback(service, customer_number=number(11)),
        stored_callback(service, customer_number="+442071234567", state=S.QUEUED),
        stored_callback(other, customer_number=number(12)),
    ]
    await seed(mongo, docs)
    headers = tokens.monitor()
    base = {"range": "next_7_days", "service": [service, other]}

    async def got(field: str, q: str) -> list[str]:
        return sorted(ids(await listed(client, headers, **base, field=field, q=q)))

    a, b, c = (str(d["_id"]) for d in docs)
    assert await got("phone_number", "+1415555") == sorted([a, c])
    assert await got("phone_number", "1415555001") == sorted([a, c])  # without + ; 0011 and 0012
    assert await got("phone_number", "+44 20") == [b]
    # six digits: the stored prefix (an index of its own)
    assert await got("phone_number", "+141555") == sorted([a, c])
    assert await got("phone_number", "44 (207) 1") == [b]
    assert await got("phone_number", "+141556") == []
    assert await got("service_name", service) == sorted([a, b, c])
    assert await got("service_name", other) == [c]
    assert await got("id", a[:8]) == [a]
    assert await got("id", a.upper()) == [a]
    assert await got("id", a[:4]) == sorted(x for x in [a, b, c] if x.startswith(a[:4]))
    assert await got("state", "que") == [b]
    assert await got("state", "COMP") == []


@pytest.mark.parametrize(
    ("field", "q"),
    [
        ("service_name", ".*"),
        ("service_name", '{"$ne": null}'),
        ("service_name", "svc-"),  # a prefix of every test service, but not granted ones
    ],
)
async def test_search_text_is_a_literal_prefix_never_a_pattern(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    field: str,
    q: str,
) -> None:
    await seed(mongo, [stored_callback(service)])
    page = await listed(client, tokens.monitor(service), range="next_7_days", field=field, q=q)
    expected = 1 if service.startswith(q) else 0
    assert len(page["items"]) == expected
    assert all(item["service_name"] == service for item in page["items"])


async def test_pages_follow_the_cursor_through_ties_without_gaps_or_repeats(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    start = now_s() + timedelta(hours=2)
    docs = []
    for n in range(620):
        # bursts of 40 callbacks at the same desired time (a slot), spread over hours
        desired = start + timedelta(minutes=15 * (n // 40))
        docs.append(stored_callback(service, desired=desired, customer_number=number(n)))
    await seed(mongo, docs)
    expected = [
        str(d["_id"]) for d in sorted(docs, key=lambda d: (d["desired_time"], d["_id"].bytes))
    ]
    for page_size, pages in ((250, 3), (33, 19)):
        seen, cursor, count = [], None, 0
        while True:
            params = {"service": service, "range": "next_7_days", "page_size": page_size}
            if cursor:
                params["cursor"] = cursor
            page = await listed(client, tokens.monitor(), **params)
            assert len(page["items"]) <= page_size
            seen += ids(page)
            count += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == expected
        assert count == pages


async def test_sparse_results_are_found_across_a_wide_range(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    """Three callbacks days apart: the growing windows reach all of them in one page."""
    now = now_s()
    docs = [stored_callback(service, desired=now - timedelta(days=d)) for d in (14.5, 7, 0.5)]
    await seed(mongo, docs)
    page = await listed(client, tokens.monitor(), service=service, range="last_30_days")
    assert ids(page) == [str(d["_id"]) for d in docs]
    assert page["next_cursor"] is None


async def test_a_page_after_an_empty_stretch_reads_about_a_page(
    service: str, mongo: AsyncDatabase[Document]
) -> None:
    """A range that starts 29 hours before the oldest callback (as "last 30 days" starts
    before the oldest kept): the window that first reaches callbacks holds 3.2 hours of them in
    11.4, and the next is sized by those 3.2 hours. Sized by the 11.4 it would match 264
    callbacks for the 59 still needed (a server that applies the limit after reading them all
    reads them all)."""
    start = now_s() - timedelta(days=3)
    first = start + timedelta(hours=29)
    docs = [stored_callback(service, desired=first + timedelta(minutes=m)) for m in range(1500)]
    await seed(mongo, docs)
    criteria = build_criteria(
        start,
        start + timedelta(days=2),
        services=frozenset({service}),
        states=None,
        search_field=None,
        q=None,
    )
    plan = query_plan(criteria)
    repository = Repository(mongo)
    matched: list[int] = []
    read = repository._read

    async def counted(plan: QueryPlan, stream: Document, desired_time: Any, limit: int) -> Any:
        filter_ = window_filter(plan, stream, desired_time)
        matched.append(await mongo[CALLBACKS].count_documents(filter_))
        return await read(plan, stream, desired_time, limit)

    repository._read = counted  # type: ignore[method-assign]
    found, _ = await repository.page(criteria, plan, None, 250)
    assert [doc["_id"] for doc in found] == [doc["_id"] for doc in docs[:250]]
    # windows of 1, 1.5, 2.25, 3.4, 5.1 and 7.6 hours before the first (each half as wide
    # again as the last); 11.4 hours whose last 3.2 hold 191
    assert matched[:7] == [0, 0, 0, 0, 0, 0, 191]
    assert sum(matched) <= 1.5 * 250, matched


async def test_the_stretch_past_retention_is_one_window(
    service: str, mongo: AsyncDatabase[Document]
) -> None:
    """``last_30_days`` starts 16 days before the oldest callback kept: that stretch (where
    only callbacks the TTL monitor has yet to delete remain) is one query, and the windows
    start from the retention edge. Crossed in doubling windows, the first to reach the
    callbacks was 256 hours wide and matched all 1,500."""
    now = now_s()
    first = now - timedelta(days=14) + timedelta(hours=29)
    docs = [stored_callback(service, desired=first + timedelta(minutes=m)) for m in range(1500)]
    expired = stored_callback(service, desired=now - timedelta(days=20))  # not deleted yet
    await seed(mongo, [expired, *docs])
    criteria = build_criteria(
        now - timedelta(days=30),
        now,
        services=frozenset({service}),
        states=None,
        search_field=None,
        q=None,
    )
    repository = Repository(mongo)
    windows: list[tuple[datetime, int]] = []
    read = repository._read

    async def counted(plan: QueryPlan, stream: Document, desired_time: Any, limit: int) -> Any:
        filter_ = window_filter(plan, stream, desired_time)
        windows.append((desired_time["$lt"], await mongo[CALLBACKS].count_documents(filter_)))
        return await read(plan, stream, desired_time, limit)

    repository._read = counted  # type: ignore[method-assign]
    found, _ = await repository.page(criteria, query_plan(criteria), None, 250)
    assert [doc["_id"] for doc in found] == [expired["_id"]] + [doc["_id"] for doc in docs[:249]]
    edge, matched = windows[0]
    assert abs(edge - (now - timedelta(days=14))) < timedelta(minutes=1)
    assert matched == 1  # the one past its expiry
    assert sum(count for _, count in windows) <= 1 + 1.5 * 250, windows
    # the default range starts at the edge (a few seconds before it by now): its first window
    # is the first hour, not a sliver up to the edge
    windows.clear()
    criteria = replace(criteria, start=now - timedelta(days=14))
    await repository.page(criteria, query_plan(criteria), None, 250)
    assert windows[0][0] == criteria.start + timedelta(hours=1)


async def test_overdue_warning_and_scheduled_marker(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    await configure(client, tokens, service, desired_window_seconds=300)
    now = now_s()
    late = stored_callback(service, desired=now - timedelta(minutes=10))
    in_window = stored_callback(service, desired=now - timedelta(minutes=2))
    done = stored_callback(
        service,
        desired=now - timedelta(minutes=20),
        state=S.COMPLETED,
        result=CallbackResult.AGENT,
    )
    immediate = stored_callback(
        service, desired=now - timedelta(minutes=30), state=S.QUEUED, type_=CallbackType.IMMEDIATE
    )
    await seed(mongo, [late, in_window, done, immediate])
    items = {
        item["id"]: item
        for item in (await listed(client, tokens.monitor(), service=service, range="today"))[
            "items"
        ]
    }
    if len(items) < 4:  # the test ran just after midnight: look at the last 14 days instead
        page = await listed(client, tokens.monitor(), service=service)
        items = {item["id"]: item for item in page["items"]}
    flags = {
        name: (items[str(doc["_id"])]["overdue"], items[str(doc["_id"])]["overdue_message"])
        for name, doc in [("late", late), ("in_window", in_window), ("done", done)]
    }
    assert flags == {
        "late": (True, OVERDUE_MESSAGE),
        "in_window": (False, None),
        "done": (False, None),
    }
    assert items[str(late["_id"])]["originated_as_scheduled"] is True
    assert items[str(immediate["_id"])]["originated_as_scheduled"] is False
    detail = (await client.get(f"{URL}/{late['_id']}", headers=tokens.monitor())).json()
    assert detail["overdue"] is True and detail["overdue_message"] == OVERDUE_MESSAGE


async def test_overdue_message_says_what_is_late(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    """Routing silent past the service's bound, a call not reported ended past the stall bound,
    a retry waiting: each is overdue with a message saying which; a cancel pending is shown."""
    await configure(
        client,
        tokens,
        service,
        desired_window_seconds=60,
        routing_silence_seconds=30,
        processing_stall_seconds=600,
    )
    now = now_s()
    desired = now - timedelta(minutes=10)
    silent = stored_callback(
        service, desired=desired, state=S.QUEUED, routing_seen_at=now - timedelta(seconds=45)
    )
    heard = stored_callback(
        service, desired=desired, state=S.ROUTING, routing_seen_at=now - timedelta(seconds=5)
    )
    stalled = stored_callback(
        service, desired=desired, state=S.PROCESSING, routing_seen_at=now - timedelta(hours=1)
    )
    retrying = stored_callback(
        service, desired=desired, attempt=2, dispatch_at=now + timedelta(minutes=4)
    )
    pending = stored_callback(
        service,
        desired=desired,
        state=S.ROUTING,
        routing_seen_at=now,
        cancel_request={
            "requested_at": now,
            "actor": "ada",
            "batch_id": None,
            "state": "ROUTING",
            "status": "PENDING",
            "answered_at": None,
            "reason": None,
        },
    )
    await seed(mongo, [silent, heard, stalled, retrying, pending])
    page = await listed(client, tokens.monitor(), service=service, range="last_14_days")
    items = {item["id"]: item for item in page["items"]}

    def shown(doc: Document) -> tuple[bool, str]:
        item = items[str(doc["_id"])]
        return item["overdue"], item["overdue_message"] or ""

    overdue, message = shown(silent)
    assert overdue and message.startswith("No sign of life from routing since"), message
    assert "reclaimed" in message
    assert shown(heard) == (False, "")
    overdue, message = shown(stalled)
    assert overdue and message.startswith("Stalled: connected to an agent since"), message
    overdue, message = shown(retrying)
    assert overdue and message.startswith("Waiting for dial attempt 2 at"), message
    assert items[str(pending["_id"])]["cancel_pending"] is True
    assert items[str(pending["_id"])]["can_cancel"] is False
    assert items[str(pending["_id"])]["cancel_request"]["actor"] == "ada"
    assert items[str(heard["_id"])]["cancel_pending"] is False


def _index_names(plan: Document) -> list[str]:
    return re.findall(r"'indexName': '([^']+)'", str(plan))


@pytest.mark.parametrize(
    ("criteria", "index"),
    [
        ({}, "by_desired_time"),
        ({"services": frozenset({"billing"})}, "by_service_desired_time"),
        ({"states": frozenset({S.QUEUED})}, "by_state_desired_time"),
        (
            {"services": frozenset({"billing"}), "states": frozenset({S.QUEUED})},
            "by_service_state_desired_time",
        ),
        (
            {"services": frozenset({"a", "b"}), "states": frozenset({S.QUEUED, S.SCHEDULED})},
            "by_service_state_desired_time",
        ),
    ],
)
async def test_list_queries_walk_an_index(
    mongo: AsyncDatabase[Document], criteria: dict[str, Any], index: str
) -> None:
    """`explain` of every query a page of these filters sends: an index scan, no COLLSCAN."""
    now = now_s()
    await seed(
        mongo, [stored_callback("billing", desired=now + timedelta(minutes=m)) for m in range(5)]
    )
    built = ListCriteria(now, now + timedelta(days=7), **criteria)
    plan = query_plan(built)
    for stream in plan.streams:
        filter_ = window_filter(plan, stream, {"$gte": built.start, "$lt": built.end})
        cursor = mongo[CALLBACKS].find(filter_, LIST_PROJECTION).sort(PAGE_SORT).limit(251)
        explained = await cursor.explain()
        winning = explained["queryPlanner"]["winningPlan"]
        assert "COLLSCAN" not in str(winning)
        assert _index_names(winning) == [index]


@pytest.mark.parametrize(
    ("field", "q", "driver"),
    [
        (SearchField.ID, "abc", "_id"),
        (SearchField.ID, "0f1e2d3c-4b", "_id"),
        (SearchField.ID, "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", "_id"),
        (SearchField.ID, "ab", "time"),
        (SearchField.PHONE_NUMBER, "+1415555", "customer_number"),
        (SearchField.PHONE_NUMBER, "+14155", "time"),
        (SearchField.PHONE_NUMBER, "+1415", "time"),
    ],
)
def test_a_selective_search_is_one_query_over_the_range(
    field: SearchField, q: str, driver: str
) -> None:
    """An id prefix of 3+ hex digits (1 callback in 4,096) and a number prefix of 7+ digits
    are read in one query over the whole range, led by their own field; a short prefix, which
    matches many, by windows of desired time."""
    now = now_s()
    built = build_criteria(
        now, now + timedelta(days=7), services=None, states=None, search_field=field, q=q
    )
    plan = query_plan(built)
    assert (plan.driver, plan.windowed) == (driver, driver == "time")
    (stream,) = plan.streams
    if driver != "time":
        assert next(iter(stream)) == driver


@pytest.mark.parametrize(
    ("services", "states", "streams"),
    [
        (None, None, 1),
        (frozenset({"billing", "sales"}), frozenset({S.QUEUED}), 2),
        (frozenset({f"s{n}" for n in range(9)}), None, 1),  # above MAX_STREAMS: $in
    ],
)
async def test_a_six_digit_number_prefix_is_read_by_its_stored_prefix(
    mongo: AsyncDatabase[Document],
    services: frozenset[str] | None,
    states: frozenset[S] | None,
    streams: int,
) -> None:
    """A 6-digit prefix is an equality on ``customer_number_prefix``, read in windows of desired
    time like the list (bounded by the page, not by how many share the prefix); each query of
    a page walks ``by_customer_number_prefix``."""
    now = now_s()
    await seed(mongo, [stored_callback("billing", desired=now + timedelta(minutes=1))])
    built = build_criteria(
        now,
        now + timedelta(days=7),
        services=services,
        states=states,
        search_field=SearchField.PHONE_NUMBER,
        q="+1 (415) 55",
    )
    assert built.search == {"customer_number_prefix": "+141555"}
    plan = query_plan(built)
    assert (plan.driver, plan.windowed, len(plan.streams)) == (
        "customer_number_prefix",
        True,
        streams,
    )
    for stream in plan.streams:
        assert next(iter(stream)) == "customer_number_prefix"
        filter_ = window_filter(plan, stream, {"$gte": built.start, "$lt": built.end})
        cursor = mongo[CALLBACKS].find(filter_, LIST_PROJECTION).sort(PAGE_SORT).limit(251)
        winning = (await cursor.explain())["queryPlanner"]["winningPlan"]
        if services is None:
            # with service and state clauses too, the choice is the server's: MongoDB walks
            # this index or by_service_state_desired_time; the local server scans
            assert _index_names(winning) == ["by_customer_number_prefix"], str(winning)


async def test_records_stored_before_the_number_prefix_get_it_and_are_found(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    """A record stored by an earlier version (no ``customer_number_prefix``) is given it at the
    next start (``ensure_indexes``), and a 6-digit search finds it."""
    old = stored_callback(service, customer_number="+33142685300")
    del old["customer_number_prefix"]
    await seed(mongo, [old])
    headers = tokens.monitor(service)
    base = {"range": "next_7_days", "service": service, "field": "phone_number"}
    assert ids(await listed(client, headers, **base, q="+3314268")) == [str(old["_id"])]
    assert ids(await listed(client, headers, **base, q="+331426")) == []  # not yet
    assert await backfill_number_prefixes(mongo) >= 1
    stored = await mongo[CALLBACKS].find_one({"_id": old["_id"]})
    assert stored is not None and stored["customer_number_prefix"] == "+331426"
    assert ids(await listed(client, headers, **base, q="+331426")) == [str(old["_id"])]
    assert await backfill_number_prefixes(mongo) == 0


def test_search_clauses_are_values_only() -> None:
    start, end = now_s(), now_s() + timedelta(days=1)
    criteria = build_criteria(
        start, end, services=None, states=None, search_field=SearchField.SERVICE_NAME, q="$where"
    )
    assert criteria.search == {"service_name": {"$gte": "$where", "$lt": "$where\uffff"}}
    full = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
    by_id = build_criteria(
        start, end, services=None, states=None, search_field=SearchField.ID, q=full
    )
    assert by_id.search == {"_id": UUID(full)}
    assert query_plan(by_id).driver == "_id"
