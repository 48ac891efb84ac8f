"""Live updates (``GET /api/v1/callbacks/events``): Server-Sent Events of the lifecycle topic on
the real Kafka, served by uvicorn (a stream needs a real HTTP server), filtered by the caller's
services, resumable with ``Last-Event-ID``; and the fan-out's handling of a slow client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from uuid import UUID, uuid4

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from callback_admin_api.auth import Principal, Role
from callback_admin_api.live import (
    Change,
    LifecycleFeed,
    decode_position,
    encode_position,
    stream,
)
from callback_admin_api.settings import AdminApiSettings
from callback_dev.infra import free_port
from callback_shared.kafka import kafka_client_options
from callback_shared.models import LifecycleEvent, LifecycleEventKind
from callback_shared.runtime import ServiceRuntime
from callback_shared.states import CallbackState
from prometheus_client import REGISTRY

from tests.admin_api.support import NUMBER, SECRET, Tokens, immediate
from tests.support import start_service

EVENTS = "/api/v1/callbacks/events"
WAIT = 20  # seconds: generous on a busy 2-core machine; a correct stream answers in well under 1


@dataclass
class Message:
    event: str
    data: str = ""
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class Listener:
    """One SSE connection read in the background; messages in order, comments included."""

    response: httpx.Response
    messages: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        fields: dict[str, str] = {}
        async for line in self.response.aiter_lines():
            if line == "":
                if "event" in fields or "data" in fields:
                    event = fields.get("event", "message")
                    await self.messages.put(
                        Message(event, fields.get("data", ""), fields.get("id"))
                    )
                fields = {}
            elif line.startswith(":"):
                await self.messages.put(Message("comment", line[1:].strip()))
            else:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        self.ended.set()

    async def next(self, *, comments: bool = False) -> Message:
        while True:
            message = await asyncio.wait_for(self.messages.get(), WAIT)
            if comments or message.event != "comment":
                return message

    async def until_ready(self) -> list[Message]:
        """The messages before ``ready`` (a catch-up), and ``ready`` last."""
        seen = [await self.next()]
        while seen[-1].event != "ready":
            seen.append(await self.next())
        return seen


@asynccontextmanager
async def listen(
    url: str, headers: dict[str, str], last_event_id: str | None = None
) -> AsyncIterator[Listener]:
    if last_event_id is not None:
        headers = {**headers, "Last-Event-ID": last_event_id}
    timeout = httpx.Timeout(10, read=None)
    async with (
        httpx.AsyncClient(base_url=url, timeout=timeout) as http,
        http.stream("GET", EVENTS, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        listener = Listener(response)
        reader = asyncio.create_task(listener.read())
        try:
            yield listener
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


@pytest.fixture(scope="module")
async def live_url(runtime: ServiceRuntime) -> AsyncIterator[str]:
    """The session's admin API (its lifespan already runs) behind a real HTTP server."""
    port = free_port()
    config = uvicorn.Config(
        runtime.app, host="127.0.0.1", port=port, lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(600):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "the test HTTP server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture(scope="module")
async def producer(admin_settings: AdminApiSettings) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(
        bootstrap_servers=admin_settings.kafka_bootstrap_servers,
        **kafka_client_options(admin_settings),
    )
    await producer.start()
    yield producer
    await producer.stop()


def lifecycle(service: str, state: CallbackState = CallbackState.SCHEDULED) -> LifecycleEvent:
    return LifecycleEvent(
        callback_id=uuid4(),
        kind=LifecycleEventKind.CREATED,
        service_name=service,
        customer_number=NUMBER,
        desired_time=datetime.now(UTC),
        state=state,
    )


async def publish(
    producer: AIOKafkaProducer, settings: AdminApiSettings, event: LifecycleEvent, partition: int
) -> None:
    await producer.send_and_wait(
        settings.topic_lifecycle_events,
        event.model_dump_json().encode(),
        key=event.key,
        partition=partition,
    )


async def test_a_client_gets_the_events_of_its_services_and_no_other(
    live_url: str,
    producer: AIOKafkaProducer,
    admin_settings: AdminApiSettings,
    tokens: Tokens,
    service: str,
) -> None:
    other = f"{service}-other"
    async with (
        listen(live_url, tokens.monitor(service)) as mine,
        listen(live_url, tokens.supervisor(service, other)) as both,
    ):
        ready = await mine.next()
        assert ready.event == "ready" and ready.json() == {}
        assert ready.id is not None and decode_position(ready.id)
        assert (await both.next()).event == "ready"

        hidden, shown = lifecycle(other), lifecycle(service, CallbackState.QUEUED)
        # one partition: the hidden event is read before the shown one
        await publish(producer, admin_settings, hidden, partition=0)
        await publish(producer, admin_settings, shown, partition=0)

        first, second = await both.next(), await both.next()
        assert [first.json()["callback_id"], second.json()["callback_id"]] == [
            str(hidden.callback_id),
            str(shown.callback_id),
        ]
        received = await mine.next()
        assert received.event == "callback"
        data = received.json()
        assert data["callback_id"] == str(shown.callback_id), "the other service's event leaked"
        assert data["event_id"] == str(shown.event_id)
        assert (data["service_name"], data["state"], data["kind"]) == (service, "QUEUED", "CREATED")
        assert data["callback"] is None  # no such record in the database
        assert received.id is not None and ready.id is not None
        assert decode_position(received.id)[0] > decode_position(ready.id)[0]
        assert received.id == second.id


async def test_an_event_carries_the_record_as_every_view_shows_it(
    live_url: str, client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    headers = tokens.supervisor(service)
    async with listen(live_url, headers) as live:
        assert (await live.next()).event == "ready"
        created = await client.post("/api/v1/callbacks", json=immediate(service), headers=headers)
        assert created.status_code == 201, created.text
        message = await live.next()
        data = message.json()
        assert (data["kind"], data["callback_id"]) == ("CREATED", created.json()["id"])
        detail = await client.get(f"/api/v1/callbacks/{data['callback_id']}", headers=headers)
        view = data["callback"]
        assert view is not None
        for name in ("state", "customer_number", "overdue", "can_cancel", "can_reschedule"):
            assert view[name] == detail.json()[name], name
        assert "timeline" not in view or view["timeline"] is None


async def test_resuming_with_last_event_id_gets_the_missed_events_once(
    live_url: str,
    producer: AIOKafkaProducer,
    admin_settings: AdminApiSettings,
    tokens: Tokens,
    service: str,
) -> None:
    headers = tokens.monitor(service)
    other = f"{service}-other"
    first = lifecycle(service)
    async with listen(live_url, headers) as live:
        ready = await live.next()
        await publish(producer, admin_settings, first, partition=1)
        seen = await live.next()
        assert seen.json()["callback_id"] == str(first.callback_id)
    # disconnected: these are missed, on every partition, with another service's among them;
    # a witness sees them all, so the live stream has passed them when the client comes back
    # (an event still unread by the stream comes after ``ready`` instead, also exactly once)
    missed = [lifecycle(service) for _ in range(6)]
    async with listen(live_url, tokens.supervisor(service, other)) as witness:
        assert (await witness.next()).event == "ready"
        for n, event in enumerate(missed):
            await publish(producer, admin_settings, event, partition=n % 3)
            await publish(producer, admin_settings, lifecycle(other), partition=n % 3)
        for _ in range(2 * len(missed)):
            assert (await witness.next()).event == "callback"

    async with listen(live_url, headers, last_event_id=seen.id) as live:
        caught_up = await live.until_ready()
        replayed = [message.json()["callback_id"] for message in caught_up[:-1]]
        assert sorted(replayed) == sorted(str(event.callback_id) for event in missed)
        for message in caught_up:  # every id resumes from that message on
            assert message.id is not None and decode_position(message.id)
        after = lifecycle(service)
        await publish(producer, admin_settings, after, partition=2)
        assert (await live.next()).json()["callback_id"] == str(after.callback_id)
        resumed_at = caught_up[-1].id

    # from the first connection's ready (before any event): everything since, in order per
    # partition, and nothing twice
    async with listen(live_url, headers, last_event_id=ready.id) as live:
        caught_up = await live.until_ready()
        replayed = [UUID(message.json()["callback_id"]) for message in caught_up[:-1]]
        expected = [first, *missed, after]
        assert sorted(map(str, replayed)) == sorted(str(e.callback_id) for e in expected)
        for partition in range(3):
            ids = [event.callback_id for event in missed[partition::3]]
            assert [i for i in replayed if i in ids] == ids
        # the stream's position after the catch-up is at least where the previous one ended
        assert caught_up[-1].id is not None and resumed_at is not None
        now, before = decode_position(caught_up[-1].id), decode_position(resumed_at)
        assert all(a >= b for a, b in zip(now, before, strict=True))


async def test_monitors_may_listen_and_a_bad_token_or_id_is_refused(
    live_url: str, tokens: Tokens, service: str
) -> None:
    async with listen(live_url, tokens.monitor(service)) as live:
        assert (await live.next()).event == "ready"
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as http:
        bad = {"Authorization": "Bearer not-a-token"}
        for headers in (bad, {}, Tokens(secret="another secret, also 32 bytes long!!").monitor()):
            refused = await http.get(EVENTS, headers=headers)
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"
        wrong_id = await http.get(
            EVENTS, headers={**tokens.monitor(service), "Last-Event-ID": "x;1"}
        )
        assert wrong_id.status_code == 422
        assert "Last-Event-ID" in wrong_id.text


async def test_a_slow_client_is_told_to_reload_and_the_others_go_on(
    admin_settings: AdminApiSettings,
) -> None:
    settings = admin_settings.model_copy(update={"admin_live_queue_size": 2})
    clock = lambda: datetime.now(UTC)  # noqa: E731
    feed = LifecycleFeed(settings, repository=None, clock=clock, spawn=None)  # type: ignore[arg-type]
    feed._running, feed.position = True, (0, 0)
    reader = Principal("mona", frozenset({Role.MONITOR}), frozenset({"billing"}))
    slow, fast = (
        stream(feed, reader, None, settings, None),
        stream(feed, reader, None, settings, None),
    )
    dropped_before = _sample("callback_live_reloads_total", reason="fell_behind")
    open_before = _sample("callback_live_streams")
    assert (await anext(slow)).startswith(b"id: 0.0\nevent: ready")
    assert (await anext(fast)).startswith(b"id: 0.0\nevent: ready")
    assert _sample("callback_live_streams") == open_before + 2
    received = []
    for offset in range(4):
        feed._fan_out(Change(1, offset, (0, offset + 1), "billing", f'{{"n": {offset}}}'))
        received.append(await anext(fast))  # the fast one reads each at once
    assert [message.split(b"\n")[0] for message in received] == [
        f"id: 0.{offset + 1:x}".encode() for offset in range(4)
    ]
    # the slow one had 2 waiting when the third came: it was dropped, then told to reload
    # from where the stream stood, and its stream ends
    rest = [message async for message in slow]
    assert len(rest) == 1 and rest[0].startswith(b"id: 0.3\nevent: reload\ndata: {")
    assert len(feed.subscribers) == 1
    assert _sample("callback_live_reloads_total", reason="fell_behind") == dropped_before + 1
    assert _sample("callback_live_streams") == open_before + 1
    await cast(AsyncGenerator[bytes, None], fast).aclose()
    assert _sample("callback_live_streams") == open_before


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
    assert encode_position((0, 3)) == "0.3"


@pytest.mark.e2e
@pytest.mark.timeout(180)
async def test_heartbeats_and_the_stream_ends_when_the_service_stops(
    env: dict[str, str], tmp_path: Path
) -> None:
    process = start_service(
        "admin-api",
        env,
        tmp_path,
        JWT_SECRET=SECRET,
        ADMIN_LIVE_HEARTBEAT_SECONDS="0.5",
        SHUTDOWN_GRACE_SECONDS="120",  # the stream must not be what ends it
    )
    try:
        await asyncio.to_thread(process.wait_ready)
        async with listen(process.url, Tokens().monitor()) as live:
            assert (await live.next()).event == "ready"
            assert (await live.next(comments=True)).event == "comment"
            stopping = asyncio.create_task(asyncio.to_thread(process.terminate, 60))
            await asyncio.wait_for(live.ended.wait(), WAIT)
            assert await stopping == 0, process.output()
    finally:
        if process.proc.poll() is None:
            process.kill()
