"""Emits each callback to the due-callbacks topic when it is due, safely from N replicas.

Design: **one leader, no write per callback.** A callback waiting to be emitted has
``dispatch_at`` (indexed); it keeps it until the state-tracker applies routing's first event of
that attempt, which unsets it in the same update that moves the callback out of SCHEDULED.
A cancel unsets it too, a reschedule moves it.

- **Leader lease.** Replicas compete for one lease document (``scheduler_leases``): whoever holds
  it unexpired leads, renews it every third of ``scheduler_lease_seconds`` and stores its
  watermark there; the others stand by and try again at the same pace. A leader that cannot
  renew in time stops emitting before its lease can pass to another replica. A stopped leader
  hands the lease over at once; a dead one's lease passes within ``scheduler_lease_seconds``
  plus a third.
- **Scan.** The leader reads the callbacks with ``dispatch_at`` in ``(watermark, now]`` — a
  bounded range on one index, streamed in batches — publishes them keyed by callback id
  (acks=all; handed to the producer a batch per partition) and moves the watermark to
  ``now``. Reading at the due instant is what makes a cancel or reschedule made before it
  take effect. It remembers what it emitted (callback, attempt, due time), so nothing is
  emitted twice while it leads.
- **Late writes.** A callback written with a due time already behind the watermark (an
  immediate callback whose insert took a while) is found by a look, every second, over the
  last ``LATE_WRITE_LOOKBACK`` before the watermark.
- **Redispatch.** What is still waiting ``scheduler_redispatch_after_seconds`` after it was
  emitted (routing lost it) is emitted again; so is what the previous leader left behind its
  stored watermark once the new leader has led that long. The only duplicates are those a
  leader emitted after its last stored watermark before it died (at most a third of a lease),
  or redispatches: they carry the same ``event_id``
  (:func:`~callback_shared.documents.due_callback_event`) and attempt, which routing and the
  state-tracker recognise. Harmless.
- **Reclaim.** The leader also looks for what routing lost (:mod:`.reclaim`): attempts it went
  silent on, cancels it did not answer, calls that stall.

Why one leader that reads instead of a conditional claim (a write) per callback, with the
measurements: docs/design.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import structlog
from callback_shared.documents import due_callback_event
from callback_shared.kafka import send_keyed
from callback_shared.models import utcnow
from callback_shared.mongo import CALLBACKS, Document
from callback_shared.record import F
from faststream.kafka import KafkaBroker
from prometheus_client import Counter, Gauge, Histogram
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from callback_scheduler.reclaim import Reclaimer
from callback_scheduler.settings import SchedulerSettings

log = structlog.get_logger("scheduler")

LATENESS = Histogram(
    "callback_dispatch_lateness_seconds",
    "Emit time minus the time the callback was due (desired time, or retry time)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
DISPATCHED = Counter("callback_dispatched_total", "Due callbacks emitted", ["redispatch"])
LEADER = Gauge("callback_scheduler_leader", "1 while this replica holds the scheduler lease")

#: The scheduler's own collection: the leader lease (one document: holder, expiry, watermark of
#: what it emitted).
SCHEDULER_LEASES = "scheduler_leases"
LEASE_ID = "scheduler"
#: How far behind the watermark the late-write look reaches (insert latency, clock skew).
LATE_WRITE_LOOKBACK = timedelta(seconds=2)
LATE_WRITE_EVERY = 1.0
#: Fields a due-callback event is built from.
DUE_FIELDS = {
    name: 1
    for name in (
        F.SERVICE_NAME, F.CUSTOMER_NUMBER, F.TYPE, F.DESIRED_TIME, F.PRIORITY, F.ATTEMPT,
        F.DISPATCH_AT,
    )
}  # fmt: skip
#: Only what tells whether a waiting callback was emitted.
KEY_FIELDS = {F.ATTEMPT: 1, F.DISPATCH_AT: 1}
ID_CHUNK = 50  # long $in lists are slow on the test server

Key = tuple[Any, int, datetime]


def replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def read_ahead(cursor: Any, size: int) -> AsyncIterator[list[Document]]:
    """The cursor's documents in lists of up to ``size``, asking the server for the next list
    before handing out the current one: the server reads while the caller publishes."""
    upcoming = asyncio.ensure_future(cursor.to_list(size))
    while batch := await upcoming:
        upcoming = asyncio.ensure_future(cursor.to_list(size))
        await asyncio.sleep(0)  # let the request go out
        yield batch


def key_of(doc: Document) -> Key:
    return doc["_id"], doc[F.ATTEMPT], doc[F.DISPATCH_AT]


class Dispatcher:
    def __init__(
        self,
        db: AsyncDatabase[Document],
        broker: KafkaBroker,
        settings: SchedulerSettings,
        replica: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        reclaimer: Reclaimer | None = None,
    ) -> None:
        self.callbacks = db[CALLBACKS]
        self.reclaimer = reclaimer
        self.leases = db[SCHEDULER_LEASES]
        self.broker = broker
        self.settings = settings
        self.replica = replica or replica_id()
        self.clock = clock
        self.redispatch_after = timedelta(seconds=settings.scheduler_redispatch_after_seconds)
        self.lease_for = timedelta(seconds=settings.scheduler_lease_seconds)
        self._stopping = asyncio.Event()
        self._follow()

    # --- the lease ---------------------------------------------------------------------------

    def _follow(self) -> None:
        """Forget everything a leader knows."""
        self.leading_until: datetime | None = None
        self.leader_since: datetime | None = None
        self.inherited_watermark: datetime | None = None
        self.watermark: datetime | None = None
        #: the earliest dispatch time the last :meth:`dispatch_due` saw ahead of now
        self.next_due_at: datetime | None = None
        self.emitted: dict[Key, datetime] = {}
        LEADER.set(0)

    @property
    def leading(self) -> bool:
        """Whether this replica may emit: it holds a lease that cannot have passed to another
        replica yet (a margin of a tenth of the lease for clock drift and the write's delay)."""
        return self.leading_until is not None and self.clock() < self.leading_until

    async def hold_lease(self) -> bool:
        """Take the lease if it is free or expired, or renew it (storing the watermark)."""
        asked = self.clock()
        renewal: Document = {"holder": self.replica, "expires_at": asked + self.lease_for}
        if self.leading and self.watermark is not None:
            renewal["emitted_through"] = self.watermark
        try:
            before = await self.leases.find_one_and_update(
                {
                    "_id": LEASE_ID,
                    "$or": [{"holder": self.replica}, {"expires_at": {"$lte": asked}}],
                },
                {"$set": renewal},
                upsert=True,
                return_document=ReturnDocument.BEFORE,
            )
        except DuplicateKeyError:  # another replica holds it
            if self.leading_until is not None:
                log.warning("scheduler lease lost to another replica", replica=self.replica)
                self._follow()
            return False
        if self.leader_since is None or not self.leading:
            # taking over (or our own lease ran out meanwhile: start again from the stored mark)
            self._follow()
            self.leader_since = asked
            self.inherited_watermark = (before or {}).get("emitted_through")
            self.watermark = self.inherited_watermark
            log.info(
                "scheduler lease taken",
                replica=self.replica,
                previous=(before or {}).get("holder"),
                watermark=self.watermark.isoformat() if self.watermark else None,
            )
            LEADER.set(1)
        self.leading_until = asked + self.lease_for * 0.9
        return True

    async def release_lease(self) -> None:
        """Hand the lease over at once, with the watermark: a standby replica goes on from it."""
        if self.leading_until is None:
            return
        update: Document = {"expires_at": self.clock()}
        if self.watermark is not None:
            update["emitted_through"] = self.watermark
        await self.leases.update_one({"_id": LEASE_ID, "holder": self.replica}, {"$set": update})
        self._follow()

    # --- emitting ----------------------------------------------------------------------------

    async def dispatch_due(self, ahead: timedelta = timedelta(0)) -> int:
        """Emit what became due since the watermark; returns how many. The same read looks
        ``ahead`` past now: the earliest dispatch time it sees there is kept in
        :attr:`next_due_at` (so an idle round is one round trip)."""
        self.next_due_at = None
        if not self.leading:
            return 0
        now = self.clock()
        upto = now + ahead
        window = {"$lte": upto} if self.watermark is None else {"$gt": self.watermark, "$lte": upto}
        cursor = self.callbacks.find(
            {F.DISPATCH_AT: window}, DUE_FIELDS, batch_size=self.settings.scheduler_batch
        )
        emitted = await self._emit(cursor, redispatch=False, due_by=now)
        if self.leading:  # else it stopped half-way: the next leader goes on from the lease
            self.watermark = now
        return emitted

    async def catch_late_writes(self) -> int:
        """Emit callbacks written with a due time just behind the watermark."""
        if not self.leading or self.watermark is None:
            return 0
        since = self.watermark - LATE_WRITE_LOOKBACK
        if self.inherited_watermark is not None:  # the previous leader's are not ours to redo
            since = max(since, self.inherited_watermark)
        window = {"$gt": since, "$lte": self.watermark}
        waiting = await self.callbacks.find({F.DISPATCH_AT: window}, KEY_FIELDS).to_list()
        late = [doc["_id"] for doc in waiting if key_of(doc) not in self.emitted]
        return await self._emit_ids(late, redispatch=False)

    async def redispatch_stalled(self) -> int:
        """Emit again what was emitted long ago and is still waiting (routing never took it),
        and what the previous leader left, once this replica has led that long."""
        if not self.leading or self.watermark is None:
            return 0
        now = self.clock()
        expired = now - self.redispatch_after
        self.emitted = {key: at for key, at in self.emitted.items() if at > expired}
        if self.leader_since is None or self.leader_since > expired:
            return 0  # what is unknown may have been emitted by the previous leader lately
        upto = self.watermark - LATE_WRITE_LOOKBACK
        waiting = await self.callbacks.find({F.DISPATCH_AT: {"$lte": upto}}, KEY_FIELDS).to_list()
        stalled = [doc["_id"] for doc in waiting if key_of(doc) not in self.emitted]
        if stalled:
            log.warning("emitting again callbacks routing has not taken", count=len(stalled))
        return await self._emit_ids(stalled, redispatch=True)

    async def _emit_ids(self, ids: list[Any], *, redispatch: bool) -> int:
        emitted = 0
        for start in range(0, len(ids), ID_CHUNK):
            cursor = self.callbacks.find(
                {"_id": {"$in": ids[start : start + ID_CHUNK]}, F.DISPATCH_AT: {"$exists": True}},
                DUE_FIELDS,
            )
            emitted += await self._emit(cursor, redispatch=redispatch)
        return emitted

    async def _emit(self, docs: Any, *, redispatch: bool, due_by: datetime | None = None) -> int:
        """Publish every document of ``docs`` (a cursor) not yet emitted (and due by
        ``due_by``, if given: the earliest later one is kept in :attr:`next_due_at`), in
        batches per partition, without waiting for each acknowledgement; remember those the
        broker acknowledged. Raises if any failed (they stay due: the next round tries them
        again)."""
        sent: list[tuple[list[Document], asyncio.Future[Any]]] = []
        topic = self.settings.topic_due_callbacks
        async for batch in read_ahead(docs, self.settings.scheduler_batch):
            if not self.leading:
                break
            if due_by is not None:
                later = [d[F.DISPATCH_AT] for d in batch if d[F.DISPATCH_AT] > due_by]
                if later:
                    soonest = min(later)
                    if self.next_due_at is None or soonest < self.next_due_at:
                        self.next_due_at = soonest
                    batch = [d for d in batch if d[F.DISPATCH_AT] <= due_by]
            todo = [d for d in batch if redispatch or key_of(d) not in self.emitted]
            messages = []
            for doc in todo:
                event = due_callback_event(doc)
                messages.append((event.key, event.model_dump_json().encode()))
            if not messages:
                continue
            for positions, acked in await send_keyed(self.broker, topic, messages):
                sent.append(([todo[p] for p in positions], acked))
        outcomes = await asyncio.gather(*(acked for _, acked in sent), return_exceptions=True)
        now = self.clock()
        done = [
            doc
            for (held, _), outcome in zip(sent, outcomes, strict=True)
            if not isinstance(outcome, BaseException)
            for doc in held
        ]
        self._record(done, now, redispatch=redispatch)
        failed = sum(len(held) for held, _ in sent) - len(done)
        if failed:
            raise RuntimeError(f"{failed} due callbacks were not acknowledged by Kafka")
        return len(done)

    def _record(self, docs: Iterable[Document], now: datetime, *, redispatch: bool) -> None:
        """Remember and measure what was emitted (one log line per round: the callback's own
        timeline shows when routing took it)."""
        count = 0
        for doc in docs:
            count += 1
            self.emitted[key_of(doc)] = now
            if not redispatch:
                LATENESS.observe(max(0.0, (now - doc[F.DISPATCH_AT]).total_seconds()))
        if count:
            DISPATCHED.labels(str(redispatch).lower()).inc(count)
            log.info("callbacks dispatched", count=count, redispatch=redispatch)

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Lead or stand by until stopped. Errors (MongoDB or Kafka down) are logged and
        retried; what was not acknowledged stays due."""
        poll = self.settings.scheduler_poll_interval_seconds
        loop = asyncio.get_running_loop()
        next_lease = next_late = next_redispatch = next_reclaim = loop.time()
        while not self._stopping.is_set():
            wake = poll
            try:
                if loop.time() >= next_lease:
                    await self.hold_lease()
                    next_lease = loop.time() + self.lease_for.total_seconds() / 3
                if not self.leading:
                    wake = max(0.0, next_lease - loop.time())
                else:
                    await self.dispatch_due(ahead=timedelta(seconds=poll))
                    if loop.time() >= next_late:
                        await self.catch_late_writes()
                        next_late = loop.time() + LATE_WRITE_EVERY
                    if loop.time() >= next_redispatch:
                        await self.redispatch_stalled()
                        next_redispatch = loop.time() + self.redispatch_after.total_seconds() / 3
                    if self.reclaimer is not None and loop.time() >= next_reclaim:
                        next_reclaim = (
                            loop.time() + self.settings.scheduler_reclaim_interval_seconds
                        )
                        await self._look_for_lost(self.reclaimer)
                    due = self.next_due_at
                    if due is not None:
                        wake = min(poll, (due - self.clock()).total_seconds())
            except Exception:
                log.exception("dispatch round failed; will retry")
                wake = min(1.0, poll * 20)
            if wake > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), wake)
        with contextlib.suppress(Exception):
            await self.release_lease()

    async def _look_for_lost(self, reclaimer: Reclaimer) -> None:
        """One look at what routing lost; its failure never delays dispatching."""
        try:
            await reclaimer.look()
        except Exception:
            log.exception("look for attempts routing lost failed; will retry")

    def stop(self) -> None:
        """Let the round in progress finish and hand the lease over (the caller awaits
        :meth:`run`'s task)."""
        self._stopping.set()
