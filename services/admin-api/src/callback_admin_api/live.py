"""Live updates: the lifecycle events of the caller's services as Server-Sent Events.

Each admin-api process runs one Kafka consumer of the lifecycle topic (every partition assigned
by hand, no consumer group, from the end), started when the first client connects, and hands
each event to the connected clients granted its service, from memory. Every client has a bounded
queue: one too slow to keep up is sent ``reload`` and disconnected, the others are not slowed.

An event's ``id`` is the stream's position: the next offset of every partition, in partition
order, hexadecimal, joined by dots. A client reconnecting with ``Last-Event-ID`` first gets what
it missed from a consumer of its own reading from that position up to where the live stream was
when it joined, then the live events after it: no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import jwt
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from callback_shared.kafka import kafka_client_options, make_admin_client
from callback_shared.models import LifecycleEvent, LifecycleEventKind, UtcDateTime
from callback_shared.record import F
from callback_shared.states import CallbackResult, CallbackState
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, Field, ValidationError

from callback_admin_api.auth import Principal
from callback_admin_api.deps import Api, Reader, bearer
from callback_admin_api.problems import (
    PROBLEM_JSON,
    InvalidField,
    ServiceUnavailable,
    problem_responses,
)
from callback_admin_api.repository import Repository
from callback_admin_api.settings import AdminApiSettings
from callback_admin_api.views import CallbackView, callback_view

log = structlog.get_logger(__name__)

#: The next offset of each partition of the lifecycle topic, in partition order.
Position = tuple[int, ...]

_POSITION = re.compile(r"[0-9a-f]{1,16}(?:\.[0-9a-f]{1,16}){0,1023}")
#: Longest wait for the views of a batch of events; without them an event carries no record.
VIEW_READ_TIMEOUT_SECONDS = 5.0
#: Longest a client's catch-up (Last-Event-ID) may take before it is told to reload instead.
RESUME_TIMEOUT_SECONDS = 30.0
MAX_RECORDS = 500

LIVE_STREAMS = Gauge("callback_live_streams", "Live-update streams open on this replica")
LIVE_RELOADS = Counter(
    "callback_live_reloads_total",
    "Live-update clients told to reload: fell behind, or their Last-Event-ID could not resume",
    ["reason"],
)


def encode_position(position: Position) -> str:
    return ".".join(format(offset, "x") for offset in position)


def decode_position(text: str) -> Position:
    """The position of an event id; ``ValueError`` if it is not one."""
    if not _POSITION.fullmatch(text):
        raise ValueError("not an event id of this stream")
    return tuple(int(part, 16) for part in text.split("."))


def furthest(a: Position, b: Position) -> Position:
    return tuple(max(x, y) for x, y in zip(a, b, strict=True))


# --- the messages --------------------------------------------------------------------------------


class LiveCallbackEvent(BaseModel):
    """The data of a ``callback`` event: a change of a callback of a service granted to you."""

    event_id: UUID = Field(description="The lifecycle event's id (the same on every replica).")
    kind: LifecycleEventKind
    occurred_at: UtcDateTime
    callback_id: UUID
    service_name: str
    state: CallbackState
    result: CallbackResult | None
    previous_state: CallbackState | None
    desired_time: UtcDateTime
    callback: CallbackView | None = Field(
        description="The record as it is when the event is sent, with every view's derived "
        "fields (no timeline); null if it could not be read (gone, or the database slow): "
        "read it with GET /api/v1/callbacks/{callback_id}."
    )


class LiveReload(BaseModel):
    """The data of a ``reload`` event: events were lost for this client; read the list again."""

    reason: str


def sse(event: str, data: str, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


HEARTBEAT = b": keep-alive\n\n"


@dataclass(frozen=True)
class Change:
    """A lifecycle event as the stream sends it: where it was read, and its data."""

    partition: int
    offset: int
    #: the stream's position after it
    position: Position
    service_name: str
    data: str


class Subscriber:
    """One connected client: its grants, its queue, and where its stream stands."""

    def __init__(
        self, principal: Principal, joined_at: Position, floor: Position, queue_size: int
    ) -> None:
        self.principal = principal
        #: where the live stream stood when it joined (a catch-up reads up to there)
        self.joined_at = joined_at
        #: records below are not sent again (it has them, or was told to skip them)
        self.floor = floor
        self.queue: asyncio.Queue[Change | None] = asyncio.Queue(queue_size)
        self.ended = False
        #: the stream's position when it was dropped for falling behind
        self.dropped_at: Position | None = None

    def wants(self, change: Change) -> bool:
        return change.offset >= self.floor[change.partition] and self.principal.grants(
            change.service_name
        )

    def offer(self, change: Change) -> bool:
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            return False
        return True

    def end(self) -> None:
        self.ended = True
        if self.queue.empty():
            self.queue.put_nowait(None)  # wakes the stream


class Gap(Exception):
    """Missed events can no longer be replayed (gone from the topic, too many, or too slow)."""


class LifecycleFeed:
    """The process's one consumer of the lifecycle topic and its subscribers."""

    def __init__(
        self,
        settings: AdminApiSettings,
        repository: Repository,
        clock: Callable[[], datetime],
        spawn: Callable[[Awaitable[Any], str], object],
    ) -> None:
        self.settings = settings
        self.topic = settings.topic_lifecycle_events
        self.repository = repository
        self.clock = clock
        self.spawn = spawn
        self.subscribers: set[Subscriber] = set()
        self.position: Position = ()
        self._running = False
        self._lock = asyncio.Lock()
        self._closed = False

    def _consumer(self, suffix: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            client_id=f"admin-api-live-{suffix}",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **kafka_client_options(self.settings),
        )

    async def _partitions(self) -> list[TopicPartition]:
        admin = make_admin_client(self.settings, "admin-api-live")
        await admin.start()
        try:
            (topic,) = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        partitions = sorted(partition["partition"] for partition in topic["partitions"])
        if not partitions or topic["error_code"] != 0:
            raise RuntimeError(f"topic {self.topic}: no partitions (error {topic['error_code']})")
        return [TopicPartition(self.topic, partition) for partition in partitions]

    # --- the live consumer ---------------------------------------------------------------------

    def subscribe(self, principal: Principal, after: Position | None) -> Subscriber:
        """A new subscriber of the live stream, from now on, and from ``after`` on where that
        is further (see :meth:`catch_up`). Ended at once if the consumer is not running."""
        floor = now = self.position
        if after is not None and len(after) == len(now):
            floor = furthest(after, now)
        subscriber = Subscriber(principal, now, floor, self.settings.admin_live_queue_size)
        if self._running and not self._closed:
            self.subscribers.add(subscriber)
        else:
            subscriber.end()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    async def start(self) -> None:
        """Start the consumer if it is not running (503 if Kafka cannot be read)."""
        async with self._lock:
            if self._closed:
                raise ServiceUnavailable("the service is stopping")
            if self._running:
                return
            consumer = self._consumer("feed")
            try:
                assigned = await self._partitions()
                await consumer.start()
                consumer.assign(assigned)
                await consumer.seek_to_end(*assigned)
                self.position = tuple([await consumer.position(tp) for tp in assigned])
            except Exception as exc:
                await consumer.stop()
                log.warning("live updates: the lifecycle topic cannot be read", error=repr(exc))
                raise ServiceUnavailable("live updates are not available now; retry") from None
            self._running = True
            self.spawn(self._run(consumer), "live-updates")
            log.info("live updates: reading the lifecycle topic", partitions=len(assigned))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
                records = [record for _, batch in sorted(batches.items()) for record in batch]
                if not records:
                    continue
                if self.subscribers:
                    # one who joins while the records' callbacks are read gets them too
                    for change in await self.changes(records, self.position, self._wanted):
                        self._fan_out(change)
                self.position = advanced(self.position, records)
        finally:
            # cancelled (stop) or crashed: clients reconnect and resume from their last id
            self._running = False
            for subscriber in list(self.subscribers):
                subscriber.end()
            self.subscribers.clear()
            await consumer.stop()

    def _fan_out(self, change: Change) -> None:
        for subscriber in list(self.subscribers):
            if subscriber.ended or not subscriber.wants(change):
                continue
            if not subscriber.offer(change):
                subscriber.dropped_at = change.position
                self.subscribers.discard(subscriber)
                log.info(
                    "live updates: a client fell behind; told to reload",
                    user=subscriber.principal.username,
                )

    def _wanted(self, service_name: str) -> bool:
        return any(s.principal.grants(service_name) for s in self.subscribers)

    async def close(self) -> None:
        """End every stream (the service stops); no new one starts."""
        self._closed = True
        for subscriber in list(self.subscribers):
            subscriber.end()
        self.subscribers.clear()

    # --- what is sent --------------------------------------------------------------------------

    async def changes(
        self,
        records: Sequence[ConsumerRecord[Any, Any]],
        start: Position,
        wanted: Callable[[str], bool],
    ) -> list[Change]:
        """The changes of consumed records (stream position ``start`` before the first), each
        with its callback as it is now if its service is ``wanted``."""
        events: list[tuple[ConsumerRecord[Any, Any], LifecycleEvent, Position]] = []
        position = start
        for record in records:
            position = advanced(position, (record,))
            try:
                event = LifecycleEvent.model_validate_json(record.value or b"")
            except ValidationError:
                log.warning(
                    "live updates: not a lifecycle event; skipped",
                    partition=record.partition,
                    offset=record.offset,
                )
                continue
            events.append((record, event, position))
        views = await self._views(
            event.callback_id for _, event, _ in events if wanted(event.service_name)
        )
        changes = []
        for record, event, position in events:
            data = LiveCallbackEvent(
                **event.model_dump(
                    include={
                        "event_id",
                        "kind",
                        "occurred_at",
                        "callback_id",
                        "service_name",
                        "state",
                        "result",
                        "previous_state",
                        "desired_time",
                    }
                ),
                callback=views.get(event.callback_id),
            )
            changes.append(
                Change(
                    record.partition,
                    record.offset,
                    position,
                    event.service_name,
                    data.model_dump_json(),
                )
            )
        return changes

    async def _views(self, callback_ids: Iterable[UUID]) -> dict[UUID, CallbackView]:
        callback_ids = list(callback_ids)
        if not callback_ids:
            return {}
        try:
            async with asyncio.timeout(VIEW_READ_TIMEOUT_SECONDS):
                docs = await self.repository.get_many(callback_ids)
                configs = await self.repository.service_configs(doc[F.SERVICE_NAME] for doc in docs)
        except Exception as exc:
            log.warning("live updates: callbacks not read; events sent without", error=repr(exc))
            return {}
        now = self.clock()
        return {doc["_id"]: callback_view(doc, configs[doc[F.SERVICE_NAME]], now) for doc in docs}

    # --- a client's catch-up -------------------------------------------------------------------

    async def catch_up(
        self, principal: Principal, after: Position, until: Position
    ) -> AsyncIterator[Change]:
        """The changes granted to ``principal`` from ``after`` up to ``until`` (where the live
        stream stood when the client joined), read by a consumer of its own. Raises
        :class:`Gap` before the first when they cannot all be had."""
        if len(after) != len(until):
            raise Gap("the topic's partitions changed")
        missed = sum(max(0, end - start) for start, end in zip(after, until, strict=True))
        if missed == 0:
            return
        if missed > self.settings.admin_live_resume_max_events:
            raise Gap(f"{missed} events were missed")
        consumer = self._consumer("resume")
        try:
            async with asyncio.timeout(RESUME_TIMEOUT_SECONDS):
                await consumer.start()
                todo = [
                    TopicPartition(self.topic, partition)
                    for partition, (start, end) in enumerate(zip(after, until, strict=True))
                    if start < end
                ]
                oldest = await consumer.beginning_offsets(todo)
                if any(oldest[tp] > after[tp.partition] for tp in todo):
                    raise Gap("missed events are no longer kept")
                consumer.assign(todo)
                for tp in todo:
                    consumer.seek(tp, after[tp.partition])
                position = after
                while todo:
                    batches = await consumer.getmany(*todo, timeout_ms=1000)
                    records = [
                        record
                        for _, batch in sorted(batches.items())
                        for record in batch
                        if record.offset < until[record.partition]
                    ]
                    for change in await self.changes(records, position, principal.grants):
                        if principal.grants(change.service_name):
                            yield change
                    position = advanced(position, records)
                    todo = [tp for tp in todo if await consumer.position(tp) < until[tp.partition]]
        except TimeoutError:
            raise Gap("catching up took too long") from None
        finally:
            await consumer.stop()


def advanced(position: Position, records: Iterable[ConsumerRecord[Any, Any]]) -> Position:
    """The position past ``records``."""
    offsets = list(position)
    for record in records:
        offsets[record.partition] = max(offsets[record.partition], record.offset + 1)
    return tuple(offsets)


# --- the HTTP edge -------------------------------------------------------------------------------


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


DESCRIPTION = """Server-Sent Events (`text/event-stream`): every change of a callback of the
services granted to you, as it happens (its lifecycle events), so a view updates in place
without reading the list again. Authenticate with the usual bearer token (any role); use
`fetch()` with a streaming body, since `EventSource` cannot send the header.

Messages:
- `event: ready`: the stream is live (sent once, after any catch-up); `data: {}`.
- `event: callback`: `data` is the JSON object described here (`LiveCallbackEvent`): the
  event's kind, callback id, service, state, result, and `callback`, the record as it is now
  with every view's derived fields (null if it could not be read: read it by id).
- `event: reload`: events were lost for you (you fell too far behind, or the ones you missed are
  no longer kept); read your list again, then go on (the stream stays open, except when you fell
  behind: then it ends; reconnect with this message's id).
- a comment line (`: keep-alive`) after `ADMIN_LIVE_HEARTBEAT_SECONDS` (15) without a message.

Every message but a comment has an `id:`, the stream's position. Reconnect with the header
`Last-Event-ID: <the last id you got>` to get what you missed first, without gap or
duplicate, as long as the topic still keeps it. The stream ends when the service stops and when
your token expires (reconnect: a 401 tells you to sign in again)."""


def document_stream(schema: dict[str, Any], path: str) -> None:
    """In the OpenAPI document: the stream's body is text (``schema``), a sequence of SSE
    messages (``itemSchema``, OpenAPI 3.2) whose ``data`` of a ``callback`` event is the model
    FastAPI put as the body's schema."""
    content = schema["paths"][path]["get"]["responses"]["200"]["content"]["text/event-stream"]
    data = {"$ref": content["schema"].pop("$ref")}
    content["itemSchema"] = {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "id": {"type": "string", "description": "The stream's position: Last-Event-ID."},
            "event": {"type": "string", "enum": ["ready", "callback", "reload"]},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": data,
                "description": "JSON: {} (ready), LiveCallbackEvent (callback), "
                '{"reason": "..."} (reload).',
            },
        },
    }


def _expiry(credentials: HTTPAuthorizationCredentials | None, leeway: float) -> float | None:
    """When the (verified) token stops being accepted, on the monotonic clock."""
    if credentials is None:
        return None
    try:
        exp = jwt.decode(credentials.credentials, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    if not isinstance(exp, int | float):
        return None
    return time.monotonic() + (exp + leeway - time.time())


router = APIRouter(prefix="/callbacks", tags=["callbacks"])


@router.get(
    "/events",
    summary="Live updates: changes of your services' callbacks as Server-Sent Events",
    description=DESCRIPTION,
    response_class=EventStream,
    response_model=None,
    responses={
        200: {"model": LiveCallbackEvent, "description": "The stream (text/event-stream)."},
        **problem_responses(401, 403, 422),
        503: {
            "description": "Starting, stopping, or Kafka unreachable: retry later",
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
    },
)
async def callback_events(
    request: Request,
    api: Api,
    principal: Reader,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=20_000,
            description="The id of the last message received: resume after it.",
        ),
    ] = None,
) -> EventStream:
    after = None
    if last_event_id:
        try:
            after = decode_position(last_event_id.strip())
        except ValueError:
            raise InvalidField(
                "Last-Event-ID", "not an id this stream sent", location="header"
            ) from None
    feed: LifecycleFeed = request.app.state.live_feed
    await feed.start()
    deadline = _expiry(credentials, api.settings.jwt_leeway_seconds)
    messages = stream(feed, principal, after, api.settings, deadline)
    return EventStream(messages, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def stream(
    feed: LifecycleFeed,
    principal: Principal,
    after: Position | None,
    settings: AdminApiSettings,
    deadline: float | None,
) -> AsyncIterator[bytes]:
    """The messages of one client (see :data:`DESCRIPTION`)."""
    subscriber = feed.subscribe(principal, after)
    LIVE_STREAMS.inc()
    try:
        if after is not None:
            try:
                async for missed in feed.catch_up(principal, after, subscriber.joined_at):
                    yield sse("callback", missed.data, encode_position(missed.position))
            except Gap as gap:
                LIVE_RELOADS.labels("cannot_resume").inc()
                reload = LiveReload(reason=f"cannot resume: {gap}")
                yield sse("reload", reload.model_dump_json(), encode_position(subscriber.floor))
        yield sse("ready", "{}", encode_position(subscriber.floor))
        heartbeat = settings.admin_live_heartbeat_seconds
        while True:
            wait = heartbeat
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return  # the token expired: the client's reconnect is refused
            try:
                change = await asyncio.wait_for(subscriber.queue.get(), wait)
            except TimeoutError:
                if deadline is None or time.monotonic() < deadline:
                    yield HEARTBEAT
                continue
            if subscriber.dropped_at is not None:
                LIVE_RELOADS.labels("fell_behind").inc()
                reload = LiveReload(reason="you fell too far behind")
                position = furthest(subscriber.floor, subscriber.dropped_at)
                yield sse("reload", reload.model_dump_json(), encode_position(position))
                return
            if subscriber.ended or change is None:
                return
            yield sse(
                "callback",
                change.data,
                encode_position(furthest(subscriber.floor, change.position)),
            )
    finally:
        LIVE_STREAMS.dec()
        feed.unsubscribe(subscriber)
