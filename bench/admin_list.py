"""admin-api: list-page latency on a large collection, beside the raw driver; create throughput.

Seeds ``RECORDS`` callbacks over four weeks (20 services, every state), then times list pages
through the API (in-process ASGI: auth, validation, views and JSON included, no socket) for a
mix of filters: presets with and without service/state filters, a restricted grant, the search
box, and following pages by cursor. Beside each API page, in the same run and on the same
server, the raw PyMongo driver replays exactly the queries the API sent for that page (captured
once per scenario), so ``p99_ratio_vs_raw`` is the API's own overhead. For information it also
times the naive single query (the whole range in one ``find``), which the API's windowed reads
avoid. Then it makes creates with every request guard on (number validation, duplicate check,
daily throttle, open-callbacks cap, office hours, slot capacity), capturing their MongoDB
commands. Last, the API runs as its own process for its CPU time per page and per create and its
creates per second, taking turns with the raw drivers replaying the same work (see ``_cpu``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.partitioner import DefaultPartitioner
from asgi_lifespan import LifespanManager
from bson import SON
from callback_admin_api.context import AdminApi
from callback_admin_api.main import build
from callback_admin_api.settings import AdminApiSettings
from callback_admin_api.tokens import mint_token
from callback_dev.infra import Infrastructure
from callback_shared.models import (
    DuplicateCheck,
    RequestGuards,
    ServiceConfig,
    utcnow,
)
from callback_shared.mongo import (
    CALLBACKS,
    SHARED_INDEXES,
    Document,
    ensure_indexes,
    make_mongo_client,
)
from callback_shared.runtime import ServiceRuntime
from pymongo import monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bench.common import (
    consume,
    isolated_settings,
    raw_producer,
    seeded_record,
    start_service,
    stop_service,
)
from bench.harness import (
    CpuMeter,
    Metric,
    Result,
    cpu_metrics,
    median,
    percentile,
)

RECORDS = 200_000
SERVICES = [f"service-{n:02d}" for n in range(20)]
ROUNDS = 25
CREATES = 1_000
CREATE_CONCURRENCY = 8
CPU_ROUNDS = 10
CPU_SERVICE = "bench-create-cpu"
#: the CPU phase's turns of the API and the raw drivers (see ``_cpu``)
SLICES = 10
_T = TypeVar("_T")
SECRET = secrets.token_urlsafe(48)
#: seeded desired times: evenly this far back and ahead of the seeding
RETAINED = timedelta(days=14)


async def _seed(collection: AsyncCollection[Document], now: Any) -> float:
    rng = random.Random(7)
    started = time.perf_counter()
    batch = 5_000
    for _ in range(RECORDS // batch):
        await collection.insert_many(
            [seeded_record(rng, now, SERVICES, RETAINED, RETAINED) for _ in range(batch)],
            ordered=False,
        )
    return time.perf_counter() - started


class _RecordingCursor:
    def __init__(self, cursor: Any, call: dict[str, Any]) -> None:
        self._cursor, self._call = cursor, call

    def sort(self, spec: Any) -> _RecordingCursor:
        self._call["sort"] = spec
        self._cursor = self._cursor.sort(spec)
        return self

    def limit(self, limit: int) -> _RecordingCursor:
        self._call["limit"] = limit
        self._cursor = self._cursor.limit(limit)
        return self

    async def to_list(self) -> list[Document]:
        result: list[Document] = await self._cursor.to_list()
        return result


class _RecordingCollection:
    """Stands in for the repository's collection while one page is captured."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection
        self.calls: list[dict[str, Any]] = []

    def find(self, filter_: Document, projection: Any = None) -> _RecordingCursor:
        call: dict[str, Any] = {"filter": filter_, "projection": projection}
        self.calls.append(call)
        return _RecordingCursor(self.collection.find(filter_, projection), call)


async def _raw(collection: AsyncCollection[Document], calls: list[dict[str, Any]]) -> int:
    """The driver alone, sending the same queries in the same order."""
    found = 0
    for call in calls:
        cursor = collection.find(call["filter"], call["projection"])
        if "sort" in call:
            cursor = cursor.sort(call["sort"])
        docs = await cursor.limit(call.get("limit", 0)).to_list()
        found += len(docs)
    return found


async def _timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    await action()
    return (time.perf_counter() - started) * 1000


async def run(infra: Infrastructure) -> Result:
    settings = isolated_settings(AdminApiSettings, infra, topic_partitions=3, jwt_secret=SECRET)
    commands = _CommandRecorder()
    monitoring.register(commands)  # the clients made from here on: the API's
    runtime = ServiceRuntime("admin-api", settings)
    build(runtime)
    collection = runtime.db[CALLBACKS]
    now = utcnow()
    await ensure_indexes(runtime.db, SHARED_INDEXES)
    print(f"seeding {RECORDS} callbacks...", flush=True)
    seed_seconds = await _seed(collection, now)
    print(f"seeded in {seed_seconds:.0f}s; starting the API", flush=True)
    everyone = {"Authorization": f"Bearer {mint_token(SECRET, 'bench', ['callback_supervisor'])}"}
    three = {
        "Authorization": "Bearer "
        + mint_token(SECRET, "bench", ["callback_supervisor"], SERVICES[:3])
    }
    try:
        async with LifespanManager(runtime.app, startup_timeout=300, shutdown_timeout=60):
            await asyncio.wait_for(runtime.connected.wait(), 300)
            api: AdminApi = runtime.app.state.admin_api
            transport = httpx.ASGITransport(app=runtime.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                lists = await _list_latencies(client, api, collection, everyone, three)
                with commands.recording():
                    await _capture_creates(client, api, everyone)
                await api.repository.save_service(_create_service(CPU_SERVICE))
            server = infra.mongo.pid if infra.mongo is not None else None
            cpu = await _cpu(settings, lists[3], commands.captured, everyone, server)
    finally:
        cleaner = make_mongo_client(settings)
        await cleaner.drop_database(settings.mongodb_database)
        await cleaner.close()
    api_ms, raw_ms, naive_ms, _ = lists
    result = Result(
        name="admin_list",
        backend=f"{infra.source}: SecantusDB/MongoDB at {infra.mongodb_url}, Kafka 4.x; "
        f"{RECORDS} callbacks; API in-process (ASGI), for CPU time its own process (HTTP)",
    )
    result.metrics = {
        "list_p50_ms": Metric(median(api_ms), "ms"),
        "list_p99_ms": Metric(percentile(api_ms, 99), "ms"),
        "raw_p50_ms": Metric(median(raw_ms), "ms"),
        "raw_p99_ms": Metric(percentile(raw_ms, 99), "ms"),
        "p99_ratio_vs_raw": Metric(percentile(api_ms, 99) / percentile(raw_ms, 99), "x", 1.5),
        "p50_ratio_vs_raw": Metric(median(api_ms) / median(raw_ms), "x", 1.5),
        "naive_single_query_p50_ms": Metric(median(naive_ms), "ms"),
        "seed_inserts_per_s": Metric(RECORDS / seed_seconds, "1/s", better="higher"),
        **cpu,
    }
    return result


async def _list_latencies(
    client: httpx.AsyncClient,
    api: AdminApi,
    collection: AsyncCollection[Document],
    everyone: dict[str, str],
    three: dict[str, str],
) -> tuple[list[float], list[float], list[float], list[_Page]]:
    scenarios: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("last 14 days, every service", {"range": "last_14_days"}, everyone),
        ("last 14 days, one service", {"range": "last_14_days", "service": SERVICES[3]}, everyone),
        (
            "next 7 days, 2 services x 2 states",
            {
                "range": "next_7_days",
                "service": SERVICES[4:6],
                "state": ["SCHEDULED", "QUEUED"],
            },
            everyone,
        ),
        ("last 30 days, COMPLETED", {"range": "last_30_days", "state": "COMPLETED"}, everyone),
        ("today, grant of 3 services", {"range": "today"}, three),
        (
            "last 30 days, phone prefix",
            {"range": "last_30_days", "field": "phone_number", "q": "+141512"},
            everyone,
        ),
        (
            "last 14 days, service prefix",
            {"range": "last_14_days", "field": "service_name", "q": "service-1"},
            everyone,
        ),
    ]
    # following pages: the cursor of page 1 and of page 2 of the busiest list
    first = (await client.get("/api/v1/callbacks", params=scenarios[3][1], headers=everyone)).json()
    second = (
        await client.get(
            "/api/v1/callbacks",
            params={**scenarios[3][1], "cursor": first["next_cursor"]},
            headers=everyone,
        )
    ).json()
    for n, page in ((2, first), (3, second)):
        scenarios.append(
            (
                f"last 30 days, COMPLETED, page {n}",
                {**scenarios[3][1], "cursor": page["next_cursor"]},
                everyone,
            )
        )
    api_ms: list[float] = []
    raw_ms: list[float] = []
    naive_ms: list[float] = []
    real = api.repository.callbacks
    pages: list[_Page] = []
    for name, params, headers in scenarios:
        recorder = _RecordingCollection(real)
        api.repository.callbacks = recorder  # type: ignore[assignment]
        try:
            response = await client.get("/api/v1/callbacks", params=params, headers=headers)
        finally:
            api.repository.callbacks = real
        assert response.status_code == 200, response.text
        items = len(response.json()["items"])
        calls = recorder.calls
        pages.append((params, headers, calls, items))
        assert await _raw(real, calls) >= items

        async def api_page(
            params: dict[str, Any] = params, headers: dict[str, str] = headers
        ) -> None:
            page = await client.get("/api/v1/callbacks", params=params, headers=headers)
            assert page.status_code == 200

        async def raw_page(calls: list[dict[str, Any]] = calls) -> None:
            await _raw(real, calls)

        scenario_api, scenario_raw = [], []
        for _ in range(ROUNDS):
            # alternate so that both see the same server state and caches
            scenario_api.append(await _timed(api_page))
            scenario_raw.append(await _timed(raw_page))
        api_ms += scenario_api
        raw_ms += scenario_raw
        print(
            f"{name:40} items {items:3}  queries {len(calls):2}  "
            f"api p50 {median(scenario_api):7.1f} ms  raw p50 {median(scenario_raw):7.1f} ms",
            flush=True,
        )
    # the naive alternative: one query over the whole 14-day range
    start = utcnow() - timedelta(days=14)
    for _ in range(3):

        async def naive() -> None:
            await (
                collection.find({"desired_time": {"$gte": start, "$lt": utcnow()}})
                .sort([("desired_time", 1), ("_id", 1)])
                .limit(251)
                .to_list()
            )

        naive_ms.append(await _timed(naive))
    return api_ms, raw_ms, naive_ms, pages


async def _capture_creates(
    client: httpx.AsyncClient, api: AdminApi, headers: dict[str, str]
) -> None:
    """Creates with every guard on, from concurrent clients, half scheduled into slots: in
    process, while their MongoDB commands are captured for the raw drivers' replay."""
    service = "bench-create"
    await api.repository.save_service(_create_service(service))
    started = time.perf_counter()
    await _creates(client, headers, service, "+1650253", range(CREATES))
    elapsed = time.perf_counter() - started
    print(f"{CREATES} creates in process (captured) in {elapsed:.1f}s", flush=True)


def _create_service(name: str) -> ServiceConfig:
    return ServiceConfig(
        name=name,
        slot_capacity=1_000,
        guards=RequestGuards(
            duplicate_check=DuplicateCheck.STRICT_1,
            max_requests_per_number_per_day=3,
            max_open_callbacks=1_000_000,
        ),
    )


async def _creates(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    service: str,
    prefix: str,
    numbers: range,
) -> None:
    """One create per number, from concurrent clients; the odd ones scheduled into one slot."""
    slot = (utcnow() + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    statuses: list[int] = []

    async def create(n: int) -> None:
        body: dict[str, Any] = {
            "service_name": service,
            "customer_number": f"{prefix}{n:04d}",
            "type": "IMMEDIATE",
        }
        if n % 2:
            body |= {"type": "SCHEDULED", "desired_time": slot.isoformat()}
        response = await client.post("/api/v1/callbacks", json=body, headers=headers)
        statuses.append(response.status_code)

    await _concurrently(numbers, create)
    assert statuses.count(201) == len(numbers), {s: statuses.count(s) for s in set(statuses)}


_Page = tuple[dict[str, Any], dict[str, str], list[dict[str, Any]], int]
#: what the driver adds to a command on its way (session, cluster time, routing)
_DRIVER_FIELDS = {"lsid", "$db", "$clusterTime", "$readPreference", "txnNumber", "autocommit"}
#: commands that are no request's own work (cursor bookkeeping, sessions, monitoring)
_NOT_REPLAYED = {"getMore", "killCursors", "endSessions", "hello", "isMaster", "ismaster", "ping"}


class _CommandRecorder(monitoring.CommandListener):
    """The MongoDB commands the API sends while recording (PyMongo command monitoring)."""

    def __init__(self) -> None:
        self.captured: list[tuple[str, SON[str, Any]]] = []
        self._on = False

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        self._on = True
        try:
            yield
        finally:
            self._on = False

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self._on and event.command_name not in _NOT_REPLAYED:
            command = SON((k, v) for k, v in event.command.items() if k not in _DRIVER_FIELDS)
            self.captured.append((event.command_name, copy.deepcopy(command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def _cpu(
    settings: AdminApiSettings,
    pages: list[_Page],
    create_commands: list[tuple[str, SON[str, Any]]],
    headers: dict[str, str],
    server_pid: int | None,
) -> dict[str, Metric]:
    """CPU time of the admin-api process (``callback-admin-api``, over HTTP) per list page of
    250 and per create, beside the raw drivers' CPU in this process for the same database work:
    the page's captured queries replayed through PyMongo; the creates' captured MongoDB
    commands (guards, insert, outbox) replayed by ``command`` from as many concurrent clients on
    a database of their own, while a plain producer sends the same lifecycle events the way the
    API does (see :func:`_replay`). And the creates per second of the API beside the raw drivers
    making only the creates' writes.

    The API and the raw drivers take turns in :data:`SLICES` short slices (and the API's idle
    cost is measured between them): this VM's speed drifts by 1.5x within minutes, and "ours"
    is a small difference of two large figures, which only holds when both saw the same
    machine."""
    full = [page for page in pages if page[3] == 250]
    topic = settings.topic_lifecycle_events
    # the capture's lifecycle events (the first on the topic), before the API makes more
    lifecycle = await consume(settings, topic, CREATES)
    mongo = make_mongo_client(settings)
    producer = raw_producer(settings)
    await producer.start()
    api, port = await start_service("callback-admin-api", settings)
    pages_meter, creates, idle = CpuMeter(api.pid), CpuMeter(api.pid), CpuMeter(api.pid)
    floor = CpuMeter(api.pid)
    # the local server's CPU (when it is a process here) while the API creates and while the
    # raw drivers write: what bounds both rates on this machine
    server, raw_server = CpuMeter(server_pid), CpuMeter(server_pid)
    raw_pages, raw_creates, raw_writes = CpuMeter(), CpuMeter(), CpuMeter()
    collection = mongo[settings.mongodb_database][CALLBACKS]
    replay_db = mongo[f"{settings.mongodb_database}_raw"]
    writes_db = mongo[f"{settings.mongodb_database}_raw_writes"]
    try:
        await ensure_indexes(replay_db)
        await ensure_indexes(writes_db)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            for params, page_headers, _, _ in full:  # warm-up, as in-process above
                assert (
                    await client.get("/api/v1/callbacks", params=params, headers=page_headers)
                ).status_code == 200
            for _ in range(CPU_ROUNDS):
                pages_meter.start()
                for params, page_headers, _, _ in full:
                    response = await client.get(
                        "/api/v1/callbacks", params=params, headers=page_headers
                    )
                    assert response.status_code == 200, response.text
                pages_meter.stop()
                raw_pages.start()
                for _, _, calls, _ in full:
                    await _raw(collection, calls)
                raw_pages.stop()
                await _idle(idle)
            for n in range(SLICES):
                numbers = range(n * CREATES // SLICES, (n + 1) * CREATES // SLICES)
                commands = create_commands[
                    n * len(create_commands) // SLICES : (n + 1) * len(create_commands) // SLICES
                ]
                events = lifecycle[numbers.start : numbers.stop]
                creates.start()
                server.start()
                await _creates(client, headers, CPU_SERVICE, "+1650254", numbers)
                server.stop()
                creates.stop()
                await _idle(idle)
                raw_creates.start()
                await _replay(replay_db, commands, producer, topic, events)
                raw_creates.stop()
                raw_writes.start()
                raw_server.start()
                writes = [named for named in commands if named[0] in _WRITES]
                await _replay(writes_db, writes, producer, topic, events)
                raw_server.stop()
                raw_writes.stop()
                floor.start()
                await _refused(client, headers, FLOOR_REQUESTS // SLICES)
                floor.stop()
    finally:
        await stop_service(api)
        await producer.stop()
        for db in (replay_db, writes_db):
            await mongo.drop_database(db.name)
        await mongo.close()
    idle_ms_per_s = idle.used * 1000 / idle.seconds
    print(
        f"CPU of the API: {pages_meter.per(len(full) * CPU_ROUNDS):.2f} ms per page, "
        f"{creates.per(CREATES):.2f} ms per create, "
        f"{floor.per_less_idle(FLOOR_REQUESTS, idle_ms_per_s):.2f} ms per refused request "
        f"less idle, idle {idle_ms_per_s:.1f} ms/s; "
        f"{len(full)} full pages x {CPU_ROUNDS}; {CREATES} creates in {SLICES} slices, "
        f"{len(create_commands)} MongoDB commands replayed; creates/s: API "
        f"{CREATES / creates.seconds:.1f}, raw writes {CREATES / raw_writes.seconds:.1f}",
        flush=True,
    )
    if server_pid is not None:
        print(
            f"server CPU per create {server.per(CREATES):.1f} ms, per raw create "
            f"{raw_server.per(CREATES):.1f} ms",
            flush=True,
        )
    creates_per_s, raw_creates_per_s = CREATES / creates.seconds, CREATES / raw_writes.seconds
    per_page = cpu_metrics(
        "page", pages_meter, len(full) * CPU_ROUNDS, idle_ms_per_s, raw_pages, target=15
    )
    per_create = cpu_metrics("create", creates, CREATES, idle_ms_per_s, raw_creates, target=2)
    request_floor = floor.per_less_idle(FLOOR_REQUESTS, idle_ms_per_s)
    return {
        **per_page,
        **per_create,
        "idle_cpu_ms_per_s": Metric(idle_ms_per_s, "ms/s"),
        "cpu_ms_per_request_floor": Metric(request_floor, "ms"),
        # ours in requests' floors: this VM's speed moves every figure by up to 3x between runs,
        # and both of these with it, so runs on a fast and a slow machine compare by these
        **{
            f"{name}_in_floors": Metric(metric.value / request_floor, "x")
            for name, metric in (per_page | per_create).items()
            if name.endswith("_ours") and request_floor > 0
        },
        "creates_per_s": Metric(creates_per_s, "1/s", better="higher"),
        "raw_creates_per_s": Metric(raw_creates_per_s, "1/s", better="higher"),
        "create_ratio_vs_raw": Metric(creates_per_s / raw_creates_per_s, "x", 0.5, better="higher"),
        **(
            {
                "server_cpu_ms_per_create": Metric(server.per(CREATES), "ms"),
                "server_cpu_ms_per_raw_create": Metric(raw_server.per(CREATES), "ms"),
                "server_cores_busy_in_creates": Metric(server.used / server.seconds, "cores"),
            }
            if server_pid is not None
            else {}
        ),
    }


#: Requests measuring the floor of any request: an authenticated one refused by validation.
FLOOR_REQUESTS = 1_000


async def _refused(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> None:
    """``count`` authenticated requests that touch no database or broker (a malformed callback
    id, refused with a 422 problem), from as many concurrent clients as the creates: what
    HTTP, routing, the token and an answer cost the API by themselves."""

    async def refused(_: int) -> None:
        response = await client.get("/api/v1/callbacks/not-an-id", headers=headers)
        assert response.status_code == 422, response.text

    await _concurrently(range(count), refused)


#: A key's partition, as the API's producer picks it (``callback_shared.kafka.send_keyed``).
_PARTITIONER = DefaultPartitioner()
#: The MongoDB commands that write: what a create must do at the least.
_WRITES = {"insert", "update", "findAndModify", "delete"}
#: The API's idle cost is measured this long between the slices, once what the last request
#: left running (its events' publication) has had this long to end.
IDLE_SLICE_SECONDS, SETTLE_SECONDS = 2.0, 0.5


async def _concurrently(items: Iterable[_T], action: Callable[[_T], Awaitable[None]]) -> None:
    """``action`` on every item, from as many concurrent clients as the creates have."""
    todo = iter(items)

    async def client() -> None:
        for item in todo:
            await action(item)

    await asyncio.gather(*(client() for _ in range(CREATE_CONCURRENCY)))


async def _idle(meter: CpuMeter) -> None:
    await asyncio.sleep(SETTLE_SECONDS)
    meter.start()
    await asyncio.sleep(IDLE_SLICE_SECONDS)
    meter.stop()


async def _replay(
    db: AsyncDatabase[Document],
    commands: list[tuple[str, SON[str, Any]]],
    producer: AIOKafkaProducer,
    topic: str,
    events: list[ConsumerRecord[bytes, bytes]],
) -> None:
    """The raw drivers: ``commands`` sent by ``command`` from as many concurrent clients as the
    API's creates have, while the producer sends ``events`` to ``topic`` as the API does: each
    its own record batch, to its key's partition, with its headers, from as many concurrent
    clients, each awaiting its acknowledgement. (Sent in one burst, aiokafka packed a slice's
    100 events into a few requests, and the raw side paid less Kafka work than the API's.)
    Replayed out of their creates' order, an upsert may meet another's key: the server refused
    it, which is as much work for the driver, and it is counted, not raised."""
    refused = 0
    partitions = sorted(await producer.partitions_for(topic))

    async def run(named: tuple[str, SON[str, Any]]) -> None:
        nonlocal refused
        try:
            await db.command(named[1], codec_options=db.codec_options)
        except DuplicateKeyError:
            refused += 1

    async def send(event: ConsumerRecord[bytes, bytes]) -> None:
        batch = producer.create_batch()
        batch.append(key=event.key, value=event.value, timestamp=None, headers=list(event.headers))
        partition = _PARTITIONER(event.key, partitions, partitions)
        await (await producer.send_batch(batch, topic, partition=partition))

    await asyncio.gather(_concurrently(commands, run), _concurrently(events, send))
    if refused:
        print(f"raw replay: {refused} of {len(commands)} commands met a duplicate key", flush=True)
