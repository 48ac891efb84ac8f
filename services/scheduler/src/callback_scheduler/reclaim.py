"""What routing lost: attempts it went silent on, cancels it did not answer, calls that stall.

Routing shows it still holds an attempt: every routing event of the attempt (QUEUED, position
updates, HELD heartbeats, ROUTING, PROCESSING) stamps the record's ``routing_seen_at`` (the
state-tracker). The scheduler's leader looks, every ``scheduler_reclaim_interval_seconds``:

- **Lost attempts.** A QUEUED or ROUTING callback silent for longer than its service's
  ``routing_silence_seconds`` is reclaimed, by one conditional update on what was seen (state,
  attempt, ``routing_seen_at``, so a sign of life that lands first wins): the attempt is
  closed as lost (a timeline entry saying why) and the next one starts at once (SCHEDULED,
  ``dispatch_at`` now: the dispatcher emits it), or it ends COMPLETED(FAILED) when the
  service's dial attempts are exhausted, or COMPLETED(CANCELLED_BY_ADMIN) when a cancel was
  waiting for routing's answer. Routing is told to WITHDRAW the lost attempt (in the same
  update's outbox, with the lifecycle event), and routing never holds two attempts of one
  callback (a newer attempt replaces an older one; the contract): never dialled twice at once.
- **Unanswered cancels.** A cancel pending for longer than ``scheduler_cancel_resend_seconds``
  is sent to routing again (routing may have taken the command and died before answering).
- **Stalled calls.** A PROCESSING callback whose end routing has not reported within its
  service's ``processing_stall_seconds`` is flagged: shown overdue with that message by every
  view, logged once, counted by ``callback_processing_stalled``. It is not changed: the call
  may still be going on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid5

import structlog
from callback_shared.documents import (
    EVENT_NAMESPACE,
    cancel_pending,
    lifecycle_event,
    routing_command,
    timeline_entry,
)
from callback_shared.kafka import event_messages, publish_all
from callback_shared.models import (
    CancelRequestStatus,
    LifecycleEventKind,
    RoutingCommandKind,
    ServiceConfig,
    utcnow,
)
from callback_shared.mongo import CALLBACKS, SERVICES, Document
from callback_shared.outbox import OutboxRelay, outbox_entry, with_outbox
from callback_shared.record import CancelRequestF, F, path
from callback_shared.states import CallbackResult, CallbackState, check_transition
from faststream.kafka import KafkaBroker
from prometheus_client import Counter, Gauge
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from callback_scheduler.settings import SchedulerSettings

S, R = CallbackState, CallbackResult

log = structlog.get_logger("scheduler")

RECLAIMED = Counter(
    "callback_attempts_reclaimed_total",
    "Attempts routing went silent on, closed as lost",
    ["outcome"],
)
CANCELS_RESENT = Counter(
    "callback_cancels_resent_total", "Cancels sent to routing again for want of an answer"
)
STALLED = Gauge(
    "callback_processing_stalled",
    "PROCESSING callbacks whose end routing has not reported within the stall bound",
)

#: How long a service's settings are used before they are read again.
CONFIG_TTL = 30.0
#: Most callbacks one look handles of each kind (the next look goes on).
LOOK_LIMIT = 500
SOURCE = "scheduler"
#: What a reclaim needs of a callback.
FIELDS = {
    name: 1
    for name in (
        F.STATE, F.ATTEMPT, F.SERVICE_NAME, F.CUSTOMER_NUMBER, F.DESIRED_TIME, F.TYPE,
        F.ROUTING_SEEN_AT, F.CANCEL_REQUEST,
    )
}  # fmt: skip


class ServiceConfigs:
    """Every service's settings, read from ``services`` and kept for :data:`CONFIG_TTL`."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.services = db[SERVICES]
        self._configs: dict[str, ServiceConfig] = {}
        self._read_at = -float("inf")

    async def all(self) -> dict[str, ServiceConfig]:
        if time.monotonic() - self._read_at > CONFIG_TTL:
            docs = await self.services.find().to_list()
            self._configs = {doc["_id"]: ServiceConfig.from_document(doc) for doc in docs}
            self._read_at = time.monotonic()
        return self._configs

    async def of(self, service_name: str) -> ServiceConfig:
        return (await self.all()).get(service_name) or ServiceConfig(name=service_name)

    async def shortest(self, bound: Callable[[ServiceConfig], float]) -> timedelta:
        """The shortest ``bound`` of any service (the defaults' included)."""
        configs = [ServiceConfig(name="default"), *(await self.all()).values()]
        return timedelta(seconds=min(bound(config) for config in configs))


class Reclaimer:
    def __init__(
        self,
        db: AsyncDatabase[Document],
        broker: KafkaBroker,
        settings: SchedulerSettings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.callbacks = db[CALLBACKS]
        self.configs = ServiceConfigs(db)
        self.broker = broker
        self.settings = settings
        self.relay = OutboxRelay(self.callbacks, broker)
        self.clock = clock
        self._stalled_seen: set[Any] = set()

    async def look(self) -> dict[str, int]:
        """One look at everything routing may have lost; counts of what was done."""
        return {
            "reclaimed": await self.reclaim_lost(),
            "cancels_resent": await self.resend_cancels(),
            "stalled": await self.flag_stalled(),
        }

    async def reclaim_lost(self) -> int:
        now = self.clock()
        shortest = await self.configs.shortest(lambda c: c.routing_silence_seconds)
        silent = await self.callbacks.find(
            {F.ROUTING_SEEN_AT: {"$lte": now - shortest}, F.STATE: {"$in": [S.QUEUED, S.ROUTING]}},
            FIELDS,
            limit=LOOK_LIMIT,
        ).to_list()
        reclaimed = []
        for doc in silent:
            config = await self.configs.of(doc[F.SERVICE_NAME])
            bound = timedelta(seconds=config.routing_silence_seconds)
            if now - doc[F.ROUTING_SEEN_AT] <= bound:
                continue
            if (updated := await self._reclaim(doc, config, now)) is not None:
                reclaimed.append(updated)
        await self.relay.flush(reclaimed)
        return len(reclaimed)

    async def _reclaim(
        self, doc: Document, config: ServiceConfig, now: datetime
    ) -> Document | None:
        """Close the attempt as lost and start the next one, or end the callback (see the
        module docstring); None when the callback changed meanwhile (routing spoke first)."""
        state, attempt = CallbackState(doc[F.STATE]), doc[F.ATTEMPT]
        silent_for = (now - doc[F.ROUTING_SEEN_AT]).total_seconds()
        lost = f"attempt {attempt} lost: no sign of life from routing for {silent_for:.0f} s"
        update: Document = {
            "$set": {F.UPDATED_AT: now},
            "$unset": dict.fromkeys(
                (F.ROUTING_SEEN_AT, F.AGENT, F.POSITION_IN_QUEUE, F.ESTIMATED_WAIT_SECONDS), ""
            ),
        }
        kind, caused_by = LifecycleEventKind.STATE_CHANGED, f"reclaim:{doc['_id']}:{attempt}"
        actor = batch_id = None
        if cancel_pending(doc):
            target, result, note = S.COMPLETED, R.CANCELLED_BY_ADMIN, f"{lost}; cancelled"
            request = doc[F.CANCEL_REQUEST]
            kind, actor = LifecycleEventKind.CANCELLED, request.get(CancelRequestF.ACTOR)
            batch_id = request.get(CancelRequestF.BATCH_ID)
            update["$set"].update(
                {
                    path(
                        F.CANCEL_REQUEST, CancelRequestF.STATUS
                    ): CancelRequestStatus.CANCELLED.value,
                    path(F.CANCEL_REQUEST, CancelRequestF.ANSWERED_AT): now,
                    path(
                        F.CANCEL_REQUEST, CancelRequestF.REASON
                    ): "routing lost the attempt: nothing to dial",
                }
            )
            update["$unset"][F.CANCEL_PENDING_SINCE] = ""
        elif attempt >= config.dial_retry.max_attempts:
            target, result, note = S.COMPLETED, R.FAILED, f"{lost}; attempts exhausted"
        else:
            target, result, note = S.SCHEDULED, None, f"{lost}; attempt {attempt + 1} starts now"
            update["$set"].update(
                {F.ATTEMPT: attempt + 1, F.ROUTING_SEQUENCE: -1, F.DISPATCH_AT: now}
            )
        check_transition(state, target, result)
        update["$set"].update({F.STATE: target.value, F.RESULT: result.value if result else None})
        if target is S.COMPLETED:
            update["$set"][F.COMPLETED_AT] = now
        update["$push"] = {
            F.TIMELINE: timeline_entry(now, target, SOURCE, result=result, note=note)
        }
        after = {**doc, F.STATE: target, F.RESULT: result}
        announced = lifecycle_event(
            after,
            kind,
            occurred_at=now,
            previous_state=state,
            actor=actor,
            batch_id=batch_id,
            reason=note,
            caused_by=uuid5(EVENT_NAMESPACE, caused_by),
        )
        withdraw = routing_command(doc, RoutingCommandKind.WITHDRAW, reason=lost)
        entries = [
            outbox_entry(self.settings.topic_routing_commands, withdraw),
            outbox_entry(self.settings.topic_lifecycle_events, announced),
        ]
        updated: Document | None = await self.callbacks.find_one_and_update(
            {
                "_id": doc["_id"],
                F.STATE: state.value,
                F.ATTEMPT: attempt,
                F.ROUTING_SEEN_AT: doc[F.ROUTING_SEEN_AT],
            },
            with_outbox(update, entries),
            return_document=ReturnDocument.AFTER,
        )
        if updated is not None:
            RECLAIMED.labels(target.value if result is None else result.value).inc()
            log.warning(
                "attempt reclaimed from routing",
                callback_id=str(doc["_id"]),
                attempt=attempt,
                silent_seconds=round(silent_for, 1),
                now_state=target.value,
                result=result.value if result else None,
            )
        return updated

    async def resend_cancels(self) -> int:
        """Send again the cancels routing has not answered for a while."""
        now = self.clock()
        due = now - timedelta(seconds=self.settings.scheduler_cancel_resend_seconds)
        waiting = await self.callbacks.find(
            {F.CANCEL_PENDING_SINCE: {"$lte": due}},
            {F.SERVICE_NAME: 1, F.ATTEMPT: 1, F.CANCEL_PENDING_SINCE: 1},
            limit=LOOK_LIMIT,
        ).to_list()
        if not waiting:
            return 0
        commands = [
            routing_command(doc, RoutingCommandKind.CANCEL, reason="cancelled by an administrator")
            for doc in waiting
        ]
        await publish_all(
            self.broker, event_messages(self.settings.topic_routing_commands, commands)
        )
        for doc in waiting:
            await self.callbacks.update_one(
                {"_id": doc["_id"], F.CANCEL_PENDING_SINCE: doc[F.CANCEL_PENDING_SINCE]},
                {"$set": {F.CANCEL_PENDING_SINCE: now}},
            )
        CANCELS_RESENT.inc(len(waiting))
        log.warning("cancels sent to routing again: no answer yet", count=len(waiting))
        return len(waiting)

    async def flag_stalled(self) -> int:
        """Count (and log once each) the calls whose end routing has not reported in time."""
        now = self.clock()
        shortest = await self.configs.shortest(lambda c: c.processing_stall_seconds)
        long_calls = await self.callbacks.find(
            {F.ROUTING_SEEN_AT: {"$lte": now - shortest}, F.STATE: S.PROCESSING},
            {F.SERVICE_NAME: 1, F.ROUTING_SEEN_AT: 1},
        ).to_list()
        stalled = set()
        for doc in long_calls:
            config = await self.configs.of(doc[F.SERVICE_NAME])
            if now - doc[F.ROUTING_SEEN_AT] > timedelta(seconds=config.processing_stall_seconds):
                stalled.add(doc["_id"])
                if doc["_id"] not in self._stalled_seen:
                    log.warning(
                        "call stalled: routing has not reported its end",
                        callback_id=str(doc["_id"]),
                        since=doc[F.ROUTING_SEEN_AT].isoformat(),
                    )
        self._stalled_seen = stalled
        STALLED.set(len(stalled))
        return len(stalled)
