"""Growth with stored callbacks: each operation's latency, CPU and memory at 10k, 100k, 300k.

One database is seeded incrementally (10k callbacks, everything measured, up to 100k, measured, up
to 300k, measured): four weeks of desired times (from 2 hours inside retention to 15 days ahead,
evenly) over 20 services with stored settings and every request guard on, past callbacks in every
state, numbers ``+1415`` and 7 random digits (one in 10 of a busy exchange: ``+141577`` and 5);
those that come due during the run are emitted once (no routing runs: the scheduler emits nothing
again within the hour). At each size admin-api, scheduler and state-tracker run as their own
processes (``start_service``, restarted per size) and this process, their client, measures:

* ``create``: POST /callbacks, one at a time, strict duplicate check, daily throttle and
  open-callbacks cap on, half scheduled into a slot (the seeded services: their open counts are
  recounted once after each seeding, by a warm-up create, as after a settings change);
* ``list_page`` / ``list_next``: GET /callbacks, 250 a page, a range preset with service and
  state filters (and one without), then the following page by cursor;
* ``search``: GET /callbacks with ``field`` + ``q`` (phone-number prefixes of 5, 6 and 8
  digits, the 6-digit prefix of a busy exchange, a callback-id prefix, a service-name prefix),
  within the default range; ``search_<scenario>_rows_<size>``: the rows of its first page;
  ``search_floor_*``: the same first pages read by this process's raw client with the least
  work (the admin API's queries over exactly the stretch of desired time each page holds);
* ``detail``: GET /callbacks/{id} of seeded callbacks;
* ``dispatch_minute``: 1k callbacks due at one instant (service ``bench-dispatch``): from the
  due instant until the scheduler has put the last one on the due topic; 10 rounds (10k
  dispatches, then the scheduler's resident memory);
* ``routing_events``: 500 callbacks x 4 routing events (QUEUED .. COMPLETED) sent to the
  state-tracker: from the first sent until the last completion is announced;
* ``bulk_cancel_1k``: POST /callbacks/bulk-cancel over a range holding 1k open callbacks of
  service ``bench-cancel`` (synchronous: at most 1000).

What a measured operation adds (creates, due, routed and cancelled callbacks) is deleted after
its phase, so every size holds what was seeded. Latencies are p50/p99 over the repetitions;
CPU per operation is the service process's (``/proc``) over the phase, beside SecantusDB's
(``server_cpu_ms_per_*``); ``*_less_idle`` takes out the process's idle rate (measured after
the phases) over the phase's wall time. Resident memory (VmRSS, sampled every 0.5 s, and the
kernel's peak VmHWM) of every service process: ``rss_mb_max`` over the run, ``rss_mb_<service>``
at the end of the largest size. ``growth_<op>`` = p50 at the largest size / p50 at the
smallest; ``growth_<op>_paired`` = p50 at the largest size / p50 of the same requests against a
database of the smallest size made right after each (its own admin-api; see
:class:`Reference`), which the VM's drift over the run does not move;
``growth_search_same_answer``: ``growth_search`` over the search scenarios whose first page
holds as many rows at both sizes (the others' answers grow with the data);
``growth_search_floor``: ``growth_search`` of the raw client's least-work reads of the same
answers (the part of the growth that is the answers' own on this server), and
``growth_search_floor_paired`` against the same reads of the reference's answers, each right
after its own.

``SCALE_SIZES=2000,5000,10000`` (sizes), ``SCALE_ROUNDS`` (repetitions of each interactive
scenario, default 30), ``SCALE_OPS=create,detail`` (only those) and ``SCALE_WARMUP=0`` (no
unmeasured first pass) for development.
``python -m bench.scale plot`` draws docs/performance/scale.png again from
bench/results/scale.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from aiokafka import AIOKafkaConsumer
from callback_admin_api.listing import (
    RangePreset,
    SearchField,
    build_criteria,
    query_plan,
    resolve_range,
)
from callback_admin_api.repository import LIST_PROJECTION, PAGE_SORT, Repository, window_filter
from callback_admin_api.rules import MAX_PAGE_SIZE
from callback_admin_api.settings import AdminApiSettings
from callback_admin_api.tokens import mint_token
from callback_dev.infra import Infrastructure
from callback_scheduler.settings import SchedulerSettings
from callback_shared.models import (
    RETENTION,
    DuplicateCheck,
    RequestGuards,
    ServiceConfig,
    utcnow,
)
from callback_shared.mongo import CALLBACKS, Document, make_mongo_client
from callback_shared.settings import PlatformSettings
from callback_state_tracker.settings import StateTrackerSettings
from pymongo.asynchronous.database import AsyncDatabase

from bench.common import (
    callback_documents,
    insert,
    isolated_settings,
    prepare,
    produce,
    routing_events,
    seeded_record,
    start_service,
    stop_service,
)
from bench.harness import (
    CpuMeter,
    Metric,
    Result,
    backend,
    idle_cpu_ms_per_s,
    median,
    percentile,
)

DEFAULT_SIZES = (10_000, 100_000, 300_000)
#: repetitions of each interactive scenario (list, search) per size
ROUNDS = int(os.environ.get("SCALE_ROUNDS", "30"))
CREATES = 200
DETAILS = 100
DISPATCH_ROUNDS, DUE_AT_ONCE = 10, 1_000
ROUTING_ROUNDS, ROUTED = 4, 500
CANCEL_ROUNDS, CANCELLED = 5, 1_000
IDLE_SECONDS = 10.0
#: one unmeasured pass at the smallest size first (SCALE_WARMUP=0: none)
WARM_UP = os.environ.get("SCALE_WARMUP", "1") != "0"
SEED_BATCH = 5_000
#: a busy exchange: this share of the seeded callbacks have numbers with this 6-digit prefix
BUSY_PREFIX, BUSY_SHARE = "+141577", 0.1

SERVICES = [f"service-{n:02d}" for n in range(20)]
#: the measured operations' own services (their callbacks are deleted after each phase)
DISPATCH_SERVICE = "bench-dispatch"
ROUTING_SERVICE = "bench-routing"
CANCEL_SERVICE = "bench-cancel"
SECRET = secrets.token_urlsafe(48)
#: seeded desired times: evenly this far back and ahead of the seeding. Back to just inside
#: retention, as a collection in steady state holds (callbacks expire 14 days after their
#: desired time, one after the other); the margin, longer than a run, so that none expires
#: during it. (Until 2026-12-02: 13 days back, a day's empty stretch after the retention edge that
#: every range starting there, the default one, crossed first.)
PAST, FUTURE = RETENTION - timedelta(hours=2), timedelta(days=15)
#: no routing runs here to take what the scheduler emits: never emit it again during the run
REDISPATCH_AFTER_SECONDS = 3600.0
#: the list's scenarios (query parameters): each read page 1, then page 2 by its cursor
LISTS: dict[str, dict[str, Any]] = {
    "14d_4services_2states": {
        "range": "last_14_days",
        "service": SERVICES[3:7],
        "state": ["COMPLETED", "QUEUED"],
    },
    "next7d_5services": {"range": "next_7_days", "service": SERVICES[7:12]},
    "30d_completed": {"range": "last_30_days", "state": "COMPLETED"},
    "next2w_all": {"range": "next_2_weeks"},
}
#: the search box's scenarios, in the default range (last 14 days), every service
SEARCHES: dict[str, dict[str, Any]] = {
    "phone5": {"field": "phone_number", "q": "+14155"},
    "phone6": {"field": "phone_number", "q": "+141555"},
    "phone6_busy": {"field": "phone_number", "q": BUSY_PREFIX},
    "phone8": {"field": "phone_number", "q": "+14155550"},
    "id3": {"field": "id", "q": "abc"},
    "service": {"field": "service_name", "q": "service-1"},
}
#: operations: (name, the process doing it); growth targets of the interactive ones
OPERATIONS = [
    ("create", "admin-api"),
    ("list_page", "admin-api"),
    ("list_next", "admin-api"),
    ("search", "admin-api"),
    ("detail", "admin-api"),
    ("dispatch_minute", "scheduler"),
    ("routing_events", "state-tracker"),
    ("bulk_cancel_1k", "admin-api"),
]
GROWTH_TARGETS = {"create": 1.5, "list_page": 1.5, "search": 1.5, "detail": 1.5}
RSS_TARGET_MB = 256.0
PLOT = Path(__file__).parent.parent / "docs" / "performance" / "scale.png"


def sizes() -> list[int]:
    raw = os.environ.get("SCALE_SIZES")
    if not raw:
        return list(DEFAULT_SIZES)
    return sorted({int(part) for part in raw.split(",") if part.strip()})


def label(size: int) -> str:
    return f"{size // 1000}k" if size % 1000 == 0 else str(size)


def _key(name: str) -> str:
    """A process's name in a metric's: admin-api -> admin_api."""
    return name.replace("-", "_")


# --- measuring -----------------------------------------------------------------------------------


@dataclass
class Phase:
    """One operation at one size: latencies, and the CPU of its process and of the server."""

    operations: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    scenarios: dict[str, list[float]] = field(default_factory=dict)
    #: the rows of each scenario's first page (searches)
    rows: dict[str, int] = field(default_factory=dict)
    #: each search scenario's first page read by the raw client with the least work (see
    #: _answer_queries), here and on the reference
    floor: dict[str, list[float]] = field(default_factory=dict)
    ref_floor: dict[str, list[float]] = field(default_factory=dict)
    #: the same requests against the reference (the smallest size), see :class:`Reference`
    ref_latencies_ms: list[float] = field(default_factory=list)
    ref_scenarios: dict[str, list[float]] = field(default_factory=dict)
    cpu: CpuMeter = field(default_factory=CpuMeter)
    server: CpuMeter | None = None

    def start(self) -> None:
        self.cpu.start()
        if self.server is not None:
            self.server.start()

    def stop(self) -> None:
        self.cpu.stop()
        if self.server is not None:
            self.server.stop()

    def add(self, latency_ms: float, scenario: str | None = None) -> None:
        self.operations += 1
        self.latencies_ms.append(latency_ms)
        if scenario is not None:
            self.scenarios.setdefault(scenario, []).append(latency_ms)

    def add_ref(self, latency_ms: float, scenario: str | None = None) -> None:
        """The same request against the reference, made right after this one."""
        self.ref_latencies_ms.append(latency_ms)
        if scenario is not None:
            self.ref_scenarios.setdefault(scenario, []).append(latency_ms)


def _rss_mb(pid: int, key: str = "VmRSS") -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class Memory:
    """Resident memory of the running service processes, sampled, with each one's peak."""

    pids: dict[str, int] = field(default_factory=dict)
    peak: dict[str, float] = field(default_factory=dict)

    def note(self, name: str, rss: float | None) -> None:
        if rss is not None:
            self.peak[name] = max(self.peak.get(name, 0.0), rss)

    async def sample(self, every: float = 0.5) -> None:
        while True:
            for name, pid in list(self.pids.items()):
                self.note(name, _rss_mb(pid))
            await asyncio.sleep(every)

    def forget(self, name: str) -> None:
        """Before the process stops: its kernel-kept peak (VmHWM) counts too."""
        pid = self.pids.pop(name, None)
        if pid is not None:
            self.note(name, _rss_mb(pid, "VmHWM"))


@dataclass
class Reference:
    """The smallest size again, beside every measured one: a database seeded alike, with its
    own admin-api. Each interactive request (create, list page, search, detail) at a size is
    followed by the same request against it, so both are timed by the same machine within the
    same second. The VM's speed drifts over a run (the admin-api's own CPU per create was 4.7
    ms at 10k and 7.35 ms at 300k in one run, 6.2 and 4.4 in another), which ``growth_<op>``,
    comparing phases minutes apart, carries; ``growth_<op>_paired`` (p50 at the largest size ÷
    the reference's p50 in the same phase) does not. Its requests are left out of the phase's
    CPU meters."""

    admin: AdminApiSettings
    db: AsyncDatabase[Document]
    rng: random.Random
    seeded: list[uuid.UUID] = field(default_factory=list)
    http: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self.http is None:
            raise RuntimeError("the reference's admin-api is not running")
        return self.http


@dataclass
class Context:
    infra: Infrastructure
    db: AsyncDatabase[Document]
    admin: AdminApiSettings
    scheduler: SchedulerSettings
    tracker: StateTrackerSettings
    memory: Memory
    rng: random.Random
    ref: Reference
    seeded: list[uuid.UUID] = field(default_factory=list)

    @property
    def server_pid(self) -> int | None:
        return self.infra.mongo.pid if self.infra.mongo is not None else None

    def phase(self, pid: int) -> Phase:
        server = self.server_pid
        return Phase(cpu=CpuMeter(pid), server=CpuMeter(server) if server else None)


async def _timed(request: Awaitable[httpx.Response], expect: int = 200) -> tuple[float, Any]:
    started = time.perf_counter()
    response = await request
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != expect:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text[:500]}")
    return elapsed, response


async def _ref_timed(
    phase: Phase, request: Awaitable[httpx.Response], expect: int = 200
) -> tuple[float, Any]:
    """A request to the reference, with the phase's CPU meters (the size's) paused."""
    phase.stop()
    try:
        return await _timed(request, expect)
    finally:
        phase.start()


# --- seeding -------------------------------------------------------------------------------------


def _service(name: str) -> ServiceConfig:
    return ServiceConfig(
        name=name,
        slot_capacity=1_000,
        guards=RequestGuards(
            duplicate_check=DuplicateCheck.STRICT_1,
            max_requests_per_number_per_day=3,
            max_open_callbacks=1_000_000,
        ),
    )


async def _seed(
    db: AsyncDatabase[Document], rng: random.Random, seeded: list[uuid.UUID], count: int
) -> float:
    """``count`` more callbacks (their ids onto ``seeded``); inserts per second."""
    now = utcnow()
    started = time.perf_counter()
    done = 0
    while done < count:
        batch = []
        for _ in range(min(SEED_BATCH, count - done)):
            busy = rng.random() < BUSY_SHARE
            number = f"{BUSY_PREFIX}{rng.randrange(10**5):05d}" if busy else None
            batch.append(seeded_record(rng, now, SERVICES, PAST, FUTURE, number))
        await db[CALLBACKS].insert_many(batch, ordered=False)
        seeded += [doc["_id"] for doc in batch]
        done += len(batch)
        if done % 50_000 < SEED_BATCH:
            rate = done / (time.perf_counter() - started)
            print(f"  seeded {done}/{count} ({rate:.0f}/s)", flush=True)
    return count / (time.perf_counter() - started)


async def _delete(ctx: Context, service: str) -> None:
    await ctx.db[CALLBACKS].delete_many({"service_name": service})


async def _delete_ids(db: AsyncDatabase[Document], ids: list[uuid.UUID]) -> None:
    for at in range(0, len(ids), 50):  # long $in lists are slow on the test server
        await db[CALLBACKS].delete_many({"_id": {"$in": ids[at : at + 50]}})


# --- the operations ------------------------------------------------------------------------------


async def _details(ctx: Context, http: httpx.AsyncClient, pid: int) -> Phase:
    ids = ctx.rng.sample(ctx.seeded, DETAILS + 10)
    ref_ids = ctx.ref.rng.sample(ctx.ref.seeded, DETAILS + 10)
    for callback_id, ref_id in zip(ids[:10], ref_ids[:10], strict=True):  # warm-up
        await _timed(http.get(f"/api/v1/callbacks/{callback_id}"))
        await _timed(ctx.ref.client.get(f"/api/v1/callbacks/{ref_id}"))
    phase = ctx.phase(pid)
    phase.start()
    for callback_id, ref_id in zip(ids[10:], ref_ids[10:], strict=True):
        elapsed, _ = await _timed(http.get(f"/api/v1/callbacks/{callback_id}"))
        phase.add(elapsed)
        elapsed, _ = await _ref_timed(phase, ctx.ref.client.get(f"/api/v1/callbacks/{ref_id}"))
        phase.add_ref(elapsed)
    phase.stop()
    return phase


async def _lists(ctx: Context, http: httpx.AsyncClient, pid: int) -> tuple[Phase, Phase]:
    """Page 1 of each scenario, then page 2 by its cursor; scenarios interleaved."""
    for params in LISTS.values():  # warm-up
        await _timed(http.get("/api/v1/callbacks", params=params))
        await _timed(ctx.ref.client.get("/api/v1/callbacks", params=params))
    first, following = ctx.phase(pid), ctx.phase(pid)
    # one meter for both (the pages alternate): the CPU per page is shared by both phases
    both = ctx.phase(pid)

    def own(request: Awaitable[httpx.Response]) -> Awaitable[tuple[float, Any]]:
        return _timed(request)

    def ref(request: Awaitable[httpx.Response]) -> Awaitable[tuple[float, Any]]:
        return _ref_timed(both, request)

    sides = (
        (http, own, first.add, following.add),
        (ctx.ref.client, ref, first.add_ref, following.add_ref),
    )
    both.start()
    for _ in range(ROUNDS):
        for name, params in LISTS.items():
            for client, timed, add_first, add_next in sides:
                elapsed, response = await timed(client.get("/api/v1/callbacks", params=params))
                add_first(elapsed, name)
                cursor = response.json()["next_cursor"]
                if cursor is None:
                    continue  # a small development size: one page
                following_page = {**params, "cursor": cursor}
                elapsed, _ = await timed(client.get("/api/v1/callbacks", params=following_page))
                add_next(elapsed, name)
    both.stop()
    for phase in (first, following):
        phase.cpu, phase.server = both.cpu, both.server
    return first, following


async def _searches(ctx: Context, http: httpx.AsyncClient, pid: int) -> Phase:
    counts: dict[str, int] = {}
    #: each scenario's least-work queries for its first page: here, and on the reference
    answers: dict[str, list[Document]] = {}
    ref_answers: dict[str, list[Document]] = {}
    for name, params in SEARCHES.items():  # warm-up, and how many each finds (of a page)
        now = utcnow()
        _, response = await _timed(ctx.ref.client.get("/api/v1/callbacks", params=params))
        ref_answers[name] = _answer_queries(params, response.json()["items"], now)
        now = utcnow()
        _, response = await _timed(http.get("/api/v1/callbacks", params=params))
        items = response.json()["items"]
        counts[name] = len(items)
        answers[name] = _answer_queries(params, items, now)
    found = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"  search items on page 1: {found}", flush=True)
    phase = ctx.phase(pid)
    phase.rows = counts
    phase.start()
    for _ in range(ROUNDS):
        for name, params in SEARCHES.items():
            elapsed, _ = await _timed(http.get("/api/v1/callbacks", params=params))
            phase.add(elapsed, name)
            request = ctx.ref.client.get("/api/v1/callbacks", params=params)
            elapsed, _ = await _ref_timed(phase, request)
            phase.add_ref(elapsed, name)
    phase.stop()
    for _ in range(ROUNDS):
        for name, queries in answers.items():
            started = time.perf_counter()
            rows = await _read_answer(ctx.db, queries)
            phase.floor.setdefault(name, []).append((time.perf_counter() - started) * 1000)
            if rows != counts[name]:
                print(f"  search {name}: the floor read {rows} rows, the page {counts[name]}")
            started = time.perf_counter()
            await _read_answer(ctx.ref.db, ref_answers[name])
            phase.ref_floor.setdefault(name, []).append((time.perf_counter() - started) * 1000)
    return phase


def _answer_queries(params: dict[str, Any], items: list[Any], now: datetime) -> list[Document]:
    """The least a server can be asked for a search's first page: the admin API's own queries
    for it (same indexes), over exactly the stretch of desired time the page holds (the whole
    range when it holds nothing), so no window reads more than the answer."""
    start, end = resolve_range(RangePreset.LAST_14_DAYS, None, None, now=now, zone=ZoneInfo("UTC"))
    criteria = build_criteria(
        start,
        end,
        services=None,
        states=None,
        search_field=SearchField(params["field"]),
        q=params["q"],
    )
    plan = query_plan(criteria)
    times: Document = {"$gte": start, "$lt": end}
    if items:
        first, last = (datetime.fromisoformat(items[at]["desired_time"]) for at in (0, -1))
        # BSON times are whole milliseconds; "$lte" on the middle key of a compound index
        # misses the bound on SecantusDB 0.7.0b3 (the admin API never sends it)
        upto = last.astimezone(UTC) + timedelta(milliseconds=1)
        times = {"$gte": first.astimezone(UTC), "$lt": upto}
    return [window_filter(plan, stream, times) for stream in plan.streams]


async def _read_answer(db: AsyncDatabase[Document], queries: list[Document]) -> int:
    rows = 0
    for query in queries:
        cursor = db[CALLBACKS].find(query, LIST_PROJECTION).sort(PAGE_SORT).limit(MAX_PAGE_SIZE)
        rows += len(await cursor.to_list())
    return rows


async def _creates(ctx: Context, http: httpx.AsyncClient, pid: int, index: int) -> Phase:
    """One at a time, over the seeded services; half scheduled into one slot of each."""
    slot = (utcnow() + timedelta(days=1, hours=index)).replace(minute=0, second=0, microsecond=0)
    created: list[uuid.UUID] = []
    ref_created: list[uuid.UUID] = []

    def create(n: int, client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        body: dict[str, Any] = {
            "service_name": SERVICES[n % len(SERVICES)],
            "customer_number": f"+1650{253 + index:03d}{n:04d}",
            "type": "IMMEDIATE",
        }
        if n % 2:
            body |= {"type": "SCHEDULED", "desired_time": slot.isoformat()}
        return client.post("/api/v1/callbacks", json=body)

    def note(response: httpx.Response, ids: list[uuid.UUID]) -> None:
        ids.append(uuid.UUID(response.headers["Location"].rsplit("/", 1)[1]))

    # warm-up: one create per service, which also recounts its open callbacks once
    for n in range(len(SERVICES)):
        note((await _timed(create(n, http), expect=201))[1], created)
        note((await _timed(create(n, ctx.ref.client), expect=201))[1], ref_created)
    phase = ctx.phase(pid)
    phase.start()
    for n in range(len(SERVICES), len(SERVICES) + CREATES):
        elapsed, response = await _timed(create(n, http), expect=201)
        phase.add(elapsed)
        note(response, created)
        elapsed, response = await _ref_timed(phase, create(n, ctx.ref.client), expect=201)
        phase.add_ref(elapsed)
        note(response, ref_created)
    phase.stop()
    # not left for the later phases and sizes (the scheduler emits the immediate ones)
    await _delete_ids(ctx.db, created)
    await _delete_ids(ctx.ref.db, ref_created)
    return phase


def _consumer(settings: PlatformSettings, topic: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
    )


async def _until_seen(
    consumer: AIOKafkaConsumer, keys: set[bytes], matches: Callable[[bytes], bool], within: float
) -> float:
    """Read until every key has a matching record; the latest such record's timestamp (s)."""
    waiting = set(keys)
    latest = 0.0
    deadline = time.monotonic() + within
    while waiting:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(waiting)} of {len(keys)} records missing")
        for records in (await consumer.getmany(timeout_ms=200, max_records=2000)).values():
            for record in records:
                if record.key in waiting and matches(record.value):
                    waiting.discard(record.key)
                    latest = max(latest, record.timestamp / 1000)
    return latest


async def _dispatches(ctx: Context, pid: int) -> Phase:
    """Rounds of 1k callbacks due at one instant: from that instant until the last is emitted."""
    consumer = _consumer(ctx.scheduler, ctx.scheduler.topic_due_callbacks)
    await consumer.start()
    phase = ctx.phase(pid)
    lead = 5.0
    try:
        for _ in range(3 * DISPATCH_ROUNDS):
            if phase.operations == DISPATCH_ROUNDS:
                break
            due = (utcnow() + timedelta(seconds=lead)).replace(microsecond=0)
            docs = callback_documents([due] * DUE_AT_ONCE, service_name=DISPATCH_SERVICE)
            inserting = time.perf_counter()
            await insert(ctx.db, docs)
            lead = max(lead, 3 * (time.perf_counter() - inserting) + 2)
            wait = (due - utcnow()).total_seconds() - 1
            if wait < 0.2:  # inserting was slow: this round goes by unmeasured
                await _delete(ctx, DISPATCH_SERVICE)
                continue
            await asyncio.sleep(wait)
            phase.start()
            keys = {str(doc["_id"]).encode() for doc in docs}
            last = await _until_seen(consumer, keys, lambda _: True, within=120)
            phase.stop()
            phase.add((last - due.timestamp()) * 1000)
            await _delete(ctx, DISPATCH_SERVICE)
    finally:
        await consumer.stop()
    if phase.operations < DISPATCH_ROUNDS:
        raise RuntimeError(f"only {phase.operations} dispatch rounds measured: slow inserts")
    return phase


async def _routing(ctx: Context, pid: int) -> Phase:
    """Rounds of 500 callbacks x 4 routing events: from the first sent until the state-tracker
    announced the last completion (after a small unmeasured round: the consumer joins)."""
    consumer = _consumer(ctx.tracker, ctx.tracker.topic_lifecycle_events)
    await consumer.start()
    phase = ctx.phase(pid)
    try:
        for count in [50] + [ROUTED] * ROUTING_ROUNDS:
            # not due during the round: the scheduler leaves them alone
            docs = callback_documents(
                [utcnow() + timedelta(hours=2)] * count, service_name=ROUTING_SERVICE
            )
            await insert(ctx.db, docs)
            events = routing_events(docs)
            messages = [(event.key, event.model_dump_json().encode()) for event in events]
            keys = {str(doc["_id"]).encode() for doc in docs}
            measured = count == ROUTED
            if measured:
                phase.start()
            started = time.perf_counter()
            await produce(ctx.tracker, ctx.tracker.topic_routing_events, messages)
            await _until_seen(consumer, keys, lambda v: b'"state":"COMPLETED"' in v, within=900)
            elapsed = (time.perf_counter() - started) * 1000
            if measured:
                phase.stop()
                phase.add(elapsed)
            print(f"  routing: {len(events)} events in {elapsed / 1000:.1f}s", flush=True)
            await _delete(ctx, ROUTING_SERVICE)
    finally:
        await consumer.stop()
    return phase


async def _bulk_cancels(ctx: Context, http: httpx.AsyncClient, pid: int) -> Phase:
    """Rounds of a bulk cancel of a range holding 1k open callbacks (of their own service)."""
    phase = ctx.phase(pid)
    for n in range(CANCEL_ROUNDS):
        start = (utcnow() + timedelta(days=2, hours=2 * n)).replace(microsecond=0)
        spread = [start + timedelta(seconds=3600 * k / CANCELLED) for k in range(CANCELLED)]
        await insert(ctx.db, callback_documents(spread, service_name=CANCEL_SERVICE))
        body = {
            "all_in_range": {
                "from": start.isoformat(),
                "to": (start + timedelta(hours=1)).isoformat(),
                "service": [CANCEL_SERVICE],
            }
        }
        phase.start()
        elapsed, response = await _timed(http.post("/api/v1/callbacks/bulk-cancel", json=body))
        phase.stop()
        if response.json()["cancelled"] != CANCELLED:
            raise RuntimeError(f"bulk cancel: {response.json()['cancelled']} cancelled")
        phase.add(elapsed)
        await _delete(ctx, CANCEL_SERVICE)
    return phase


# --- one size ------------------------------------------------------------------------------------


async def _measure(ctx: Context, index: int) -> tuple[dict[str, Phase], dict[str, Any]]:
    auth = {"Authorization": f"Bearer {mint_token(SECRET, 'bench-scale', ['callback_supervisor'])}"}
    started: dict[str, asyncio.subprocess.Process] = {}
    #: the reference's admin-api: not a measured service (its memory and idle CPU not reported)
    reference: asyncio.subprocess.Process | None = None
    extra: dict[str, Any] = {}
    try:
        admin, port = await start_service("callback-admin-api", ctx.admin)
        started["admin-api"] = admin
        reference, ref_port = await start_service("callback-admin-api", ctx.ref.admin)
        started["scheduler"], _ = await start_service("callback-scheduler", ctx.scheduler)
        started["state-tracker"], _ = await start_service("callback-state-tracker", ctx.tracker)
        pids = {name: process.pid for name, process in started.items()}
        ctx.memory.pids.update(pids)
        phases: dict[str, Phase] = {}
        async with (
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=900
            ) as http,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{ref_port}", headers=auth, timeout=900
            ) as ctx.ref.http,
        ):
            wanted = {op for op, _ in operations()}
            if "detail" in wanted:
                phases["detail"] = await _details(ctx, http, pids["admin-api"])
            if wanted & {"list_page", "list_next"}:
                phases["list_page"], phases["list_next"] = await _lists(
                    ctx, http, pids["admin-api"]
                )
            if "search" in wanted:
                phases["search"] = await _searches(ctx, http, pids["admin-api"])
            if "create" in wanted:
                phases["create"] = await _creates(ctx, http, pids["admin-api"], index)
            if "dispatch_minute" in wanted:
                phases["dispatch_minute"] = await _dispatches(ctx, pids["scheduler"])
                extra["scheduler_rss"] = _rss_mb(pids["scheduler"])
            if "routing_events" in wanted:
                phases["routing_events"] = await _routing(ctx, pids["state-tracker"])
            if "bulk_cancel_1k" in wanted:
                phases["bulk_cancel_1k"] = await _bulk_cancels(ctx, http, pids["admin-api"])
        # nothing to do: each process's (and the server's) own idle rate, all at once
        watched = dict(pids)
        if ctx.server_pid is not None:
            watched["server"] = ctx.server_pid
        rates = await asyncio.gather(
            *(idle_cpu_ms_per_s(pid, IDLE_SECONDS) for pid in watched.values())
        )
        extra["idle"] = dict(zip(watched, rates, strict=True))
        extra["rss_end"] = {name: _rss_mb(pid) for name, pid in pids.items()}
        if ctx.server_pid is not None:
            extra["rss_end"]["secantusdb"] = _rss_mb(ctx.server_pid)
    finally:
        ctx.ref.http = None
        for name, process in started.items():
            ctx.memory.forget(name)
            await stop_service(process)
        if reference is not None:
            await stop_service(reference)
    return phases, extra


# --- the benchmark -------------------------------------------------------------------------------


async def run(infra: Infrastructure) -> Result:
    admin = isolated_settings(AdminApiSettings, infra, jwt_secret=SECRET)
    shared = {name: getattr(admin, name) for name in PlatformSettings.model_fields}
    await (await prepare(admin)).client.close()  # topics and indexes
    # SecantusDB drops a connection idle for 5 minutes, and a delete_many is not retried on
    # another: this client's phases leave it idle longer than that
    db = make_mongo_client(admin, maxIdleTimeMS=60_000)[admin.mongodb_database]
    ref_admin = isolated_settings(AdminApiSettings, infra, jwt_secret=SECRET)
    await (await prepare(ref_admin)).client.close()
    ref = Reference(
        admin=ref_admin,
        db=make_mongo_client(ref_admin, maxIdleTimeMS=60_000)[ref_admin.mongodb_database],
        rng=random.Random(14),
    )
    ctx = Context(
        infra=infra,
        db=db,
        admin=admin,
        scheduler=SchedulerSettings(
            **shared, scheduler_redispatch_after_seconds=REDISPATCH_AFTER_SECONDS
        ),
        tracker=StateTrackerSettings(**shared),
        memory=Memory(),
        rng=random.Random(14),
        ref=ref,
    )
    repository = Repository(db)
    chosen = sizes()
    print(f"seeding the reference: {chosen[0]} callbacks...", flush=True)
    await _seed(ref.db, ref.rng, ref.seeded, chosen[0])
    for name in SERVICES:
        await Repository(ref.db).save_service(_service(name))
    figures: dict[int, tuple[dict[str, Phase], dict[str, Any]]] = {}
    sampler = asyncio.create_task(ctx.memory.sample())
    loads: list[str] = []
    run_started = time.monotonic()
    try:
        for index, size in enumerate(chosen):
            print(f"seeding up to {size} callbacks...", flush=True)
            seed_per_s = await _seed(ctx.db, ctx.rng, ctx.seeded, size - len(ctx.seeded))
            # the seeding wrote no open counts: recount them at their next use
            for name in SERVICES:
                await repository.save_service(_service(name))
            loads.append(_load())
            print(f"{label(size)}: seeded at {seed_per_s:.0f}/s; load {loads[-1]}", flush=True)
            if index == 0 and WARM_UP:
                # the first pass after Kafka and the server start ran markedly slower (creates
                # 100 ms at 10k, 65 ms at 100k): one pass unmeasured, or growth looks flatter
                print("warm-up pass (not measured)...", flush=True)
                await _measure(ctx, len(chosen))
            phases, extra = await _measure(ctx, index)
            extra["seed_per_s"] = seed_per_s
            extra["load"] = _load()
            figures[size] = (phases, extra)
            _print_size(size, phases, extra)
    finally:
        sampler.cancel()
        await ctx.db.client.drop_database(admin.mongodb_database)
        await ctx.db.client.close()
        await ref.db.client.drop_database(ref_admin.mongodb_database)
        await ref.db.client.close()
    result = Result(
        "scale",
        backend=f"{backend(infra)}; {', '.join(label(s) for s in chosen)} stored callbacks; "
        f"load average {' / '.join(loads)}; {(time.monotonic() - run_started) / 60:.0f} min",
    )
    result.metrics = _metrics(chosen, figures, ctx.memory)
    plot(result.metrics, chosen)
    return result


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def _print_size(size: int, phases: dict[str, Phase], extra: dict[str, Any]) -> None:
    print(f"--- {label(size)} stored (load {extra['load']}) ---")
    for op, service in _measured(phases):
        phase = phases[op]
        cpu = phase.cpu.per(_divisor(op, phases))
        ref = phase.ref_latencies_ms
        print(
            f"  {op:16} n {phase.operations:4}  p50 {median(phase.latencies_ms):9.1f} ms  "
            f"p99 {percentile(phase.latencies_ms, 99):9.1f} ms  {service} CPU {cpu:8.2f} ms/op"
            + (f"  reference p50 {median(ref):7.1f} ms" if ref else "")
        )
        for name, values in phase.scenarios.items():
            print(f"      {name:24} p50 {median(values):9.1f} ms")
    print(f"  idle ms/s {extra['idle']}; RSS MB {extra['rss_end']}", flush=True)


def operations() -> list[tuple[str, str]]:
    """The operations measured: every one, or those named by ``SCALE_OPS=create,detail``."""
    raw = os.environ.get("SCALE_OPS")
    if not raw:
        return OPERATIONS
    wanted = {part.strip() for part in raw.split(",") if part.strip()}
    unknown = wanted - {op for op, _ in OPERATIONS}
    if unknown:
        raise ValueError(f"SCALE_OPS: unknown operations {sorted(unknown)}")
    return [(op, service) for op, service in OPERATIONS if op in wanted]


def _measured(phases: dict[str, Phase]) -> list[tuple[str, str]]:
    return [(op, service) for op, service in OPERATIONS if op in phases]


def _divisor(op: str, phases: dict[str, Phase]) -> int:
    """What an operation's CPU is divided by: its repetitions (the list's pages: one meter
    over page 1s and 2s, per page read)."""
    if op in ("list_page", "list_next"):
        return phases["list_page"].operations + phases["list_next"].operations
    return phases[op].operations


def _metrics(
    chosen: list[int],
    figures: dict[int, tuple[dict[str, Phase], dict[str, Any]]],
    memory: Memory,
) -> dict[str, Metric]:
    metrics: dict[str, Metric] = {}
    measured = _measured(figures[chosen[0]][0])
    for op, service in measured:
        for size in chosen:
            phases, extra = figures[size]
            phase, tag = phases[op], label(size)
            count = _divisor(op, phases)
            metrics[f"{op}_p50_ms_{tag}"] = Metric(median(phase.latencies_ms), "ms")
            metrics[f"{op}_p99_ms_{tag}"] = Metric(percentile(phase.latencies_ms, 99), "ms")
            metrics[f"cpu_ms_per_{op}_{tag}"] = Metric(phase.cpu.per(count), "ms")
            metrics[f"cpu_ms_per_{op}_less_idle_{tag}"] = Metric(
                phase.cpu.per_less_idle(count, extra["idle"][service]), "ms"
            )
            if phase.server is not None:
                metrics[f"server_cpu_ms_per_{op}_{tag}"] = Metric(phase.server.per(count), "ms")
            for name, values in phase.scenarios.items():
                metrics[f"{op}_{name}_p50_ms_{tag}"] = Metric(median(values), "ms")
            for name, rows in phase.rows.items():
                metrics[f"{op}_{name}_rows_{tag}"] = Metric(rows, "rows")
            if phase.ref_latencies_ms:
                metrics[f"{op}_ref_p50_ms_{tag}"] = Metric(median(phase.ref_latencies_ms), "ms")
                for name, values in phase.ref_scenarios.items():
                    metrics[f"{op}_{name}_ref_p50_ms_{tag}"] = Metric(median(values), "ms")
    low, high = chosen[0], chosen[-1]

    def growth(name: str, target: float | None = None) -> Metric:
        p50 = [metrics[f"{name}_p50_ms_{label(size)}"].value for size in (low, high)]
        return Metric(p50[1] / p50[0], "x", target=target)

    def paired(name: str, size: int, target: float | None = None) -> Metric:
        tag = label(size)
        ratio = metrics[f"{name}_p50_ms_{tag}"].value / metrics[f"{name}_ref_p50_ms_{tag}"].value
        return Metric(ratio, "x", target=target)

    for op, _ in measured:
        metrics[f"growth_{op}"] = growth(op, GROWTH_TARGETS.get(op))
        for name in figures[low][0][op].scenarios if op in ("search", "list_page") else ():
            metrics[f"growth_{op}_{name}"] = growth(f"{op}_{name}")
        if figures[high][0][op].ref_latencies_ms:
            # against the reference in the same second; at the smallest size both hold as many
            # callbacks, so that ratio is the pairing's own spread
            metrics[f"growth_{op}_paired"] = paired(op, high, GROWTH_TARGETS.get(op))
            metrics[f"paired_{op}_at_{label(low)}"] = paired(op, low)
            for name in figures[high][0][op].ref_scenarios:
                metrics[f"growth_{op}_{name}_paired"] = paired(f"{op}_{name}", high)
    if "search" in figures[low][0]:
        searches = figures[low][0]["search"], figures[high][0]["search"]
        same = [name for name, rows in searches[0].rows.items() if searches[1].rows[name] == rows]
        if same:
            pooled = [median([v for n in same for v in s.scenarios[n]]) for s in searches]
            metrics["growth_search_same_answer"] = Metric(pooled[1] / pooled[0], "x")
        # the same answers read by the raw client with the least work: how much of the growth
        # is the answers' own (more rows at 300k) on this server
        for size in chosen:
            floor = figures[size][0]["search"].floor
            for name, values in floor.items():
                metrics[f"search_floor_{name}_p50_ms_{label(size)}"] = Metric(median(values), "ms")
            pooled_floor = median([v for values in floor.values() for v in values])
            metrics[f"search_floor_p50_ms_{label(size)}"] = Metric(pooled_floor, "ms")
            ref_floor = figures[size][0]["search"].ref_floor
            if ref_floor:
                pooled_ref = median([v for values in ref_floor.values() for v in values])
                metrics[f"search_floor_ref_p50_ms_{label(size)}"] = Metric(pooled_ref, "ms")
        metrics["growth_search_floor"] = growth("search_floor")
        if figures[high][0]["search"].ref_floor:
            metrics["growth_search_floor_paired"] = paired("search_floor", high)
    metrics["rss_mb_max"] = Metric(max(memory.peak.values()), "MB", target=RSS_TARGET_MB)
    for size in chosen:
        _, extra = figures[size]
        tag = label(size)
        for name, rss in extra["rss_end"].items():
            if rss is not None:
                metrics[f"rss_mb_{_key(name)}_{tag}"] = Metric(rss, "MB")
        if extra.get("scheduler_rss") is not None:
            metrics[f"rss_mb_scheduler_after_dispatches_{tag}"] = Metric(
                extra["scheduler_rss"], "MB"
            )
        for name, rate in extra["idle"].items():
            metrics[f"idle_cpu_ms_per_s_{_key(name)}_{tag}"] = Metric(rate, "ms/s")
        metrics[f"seed_inserts_per_s_{tag}"] = Metric(extra["seed_per_s"], "1/s", better="higher")
    for name, rss in figures[high][1]["rss_end"].items():
        if rss is not None:
            metrics[f"rss_mb_{_key(name)}"] = Metric(rss, "MB", target=None)
    before = figures[low][1].get("scheduler_rss")
    after = figures[high][1].get("scheduler_rss")
    if before is not None and after is not None:
        # the scheduler's memory after as many dispatches, largest size less smallest
        metrics["scheduler_rss_growth_mb"] = Metric(after - before, "MB", target=16)
    for name, peak in sorted(memory.peak.items()):
        metrics[f"rss_mb_peak_{_key(name)}"] = Metric(peak, "MB")
    return metrics


# --- the plot ------------------------------------------------------------------------------------


def plot(metrics: dict[str, Metric], chosen: Iterable[int], to: Path = PLOT) -> Path:
    """p50 latency per operation against stored callbacks (log-log): docs/performance/scale.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = list(chosen)
    figure, axes = plt.subplots(figsize=(10, 5.5), dpi=110)
    for op, service in OPERATIONS:
        if f"growth_{op}" not in metrics:
            continue
        values = [metrics[f"{op}_p50_ms_{label(size)}"].value for size in xs]
        growth = metrics[f"growth_{op}"].value
        paired = metrics.get(f"growth_{op}_paired")
        also = f" (paired x{paired.value:.2f})" if paired is not None else ""
        axes.plot(xs, values, marker="o", label=f"{op} ({service}), x{growth:.2f}{also}")
    floor = metrics.get("growth_search_floor")
    if floor is not None:
        # the search's answers read by the raw client with the least work: what they cost alone
        values = [metrics[f"search_floor_p50_ms_{label(size)}"].value for size in xs]
        axes.plot(
            xs, values, linestyle=":", marker="o", label=f"search floor (raw), x{floor.value:.2f}"
        )
    # the scenarios of a pooled operation that grew past the target, dashed
    for op, scenarios in (("list_page", LISTS), ("search", SEARCHES)):
        for scenario in scenarios:
            metric = metrics.get(f"growth_{op}_{scenario}")
            if metric is None or metric.value <= GROWTH_TARGETS[op]:
                continue
            values = [metrics[f"{op}_{scenario}_p50_ms_{label(size)}"].value for size in xs]
            axes.plot(
                xs,
                values,
                linestyle="--",
                linewidth=1,
                marker=".",
                label=f"{op}: {scenario}, x{metric.value:.1f}",
            )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks(xs, [label(size) for size in xs])
    axes.minorticks_off()
    axes.set_xlabel("stored callbacks")
    axes.set_ylabel("p50 latency (ms)")
    axes.set_title(
        "Latency with stored callbacks (legend: growth, p50 largest / smallest;\n"
        "paired: against the smallest size in the same second)"
    )
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.tight_layout()
    to.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(to)
    plt.close(figure)
    return to


def _plot_from_results() -> None:
    body = json.loads((Path(__file__).parent / "results" / "scale.json").read_text())
    metrics = {name: Metric(**value) for name, value in body["metrics"].items()}
    found = sorted(
        {
            int(float(name.rsplit("_", 1)[1].removesuffix("k")) * 1000)
            if name.endswith("k")
            else int(name.rsplit("_", 1)[1])
            for name in metrics
            if name.startswith("detail_p50_ms_")
        }
    )
    print(plot(metrics, found))


if __name__ == "__main__":
    if sys.argv[1:] == ["plot"]:
        _plot_from_results()
    else:
        sys.exit("usage: python -m bench.scale plot (the benchmark: make bench NAME=scale)")
