"""Every MongoDB query of the admin API.

Collections: ``callbacks`` (the records), ``services`` (settings, ``_id`` = name), ``slots``
(places taken per service and slot start), ``request_counters`` (accepted requests per
service, customer number and local day) and ``open_counts`` (open callbacks per service, and per
service and customer number). There are no multi-document transactions: places and counters are
taken with one conditional update each (``taken < capacity``), created race-safely through their
unique ``_id``, and given back if a later step of the command fails.

A list page is read in windows of desired time (see :meth:`Repository.page`): on a large
collection each query then touches about one page of index entries instead of the whole range.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from callback_shared.models import RETENTION, ServiceConfig, utcnow
from callback_shared.mongo import CALLBACKS, SERVICES, Document
from callback_shared.record import F
from callback_shared.states import OPEN_STATES
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from callback_admin_api.collections import (
    ANNOUNCING,
    BULK_CANCEL_JOBS,
    OPEN_COUNTS,
    REQUEST_COUNTERS,
    SLOTS,
)
from callback_admin_api.listing import ListCriteria, PageCursor, QueryPlan, list_filter

READ_CHUNK = 50
#: What a list, a search, live updates or a bulk cancel read of a record: all but the long
#: internal arrays (the timeline is shown by the detail view only).
LIST_PROJECTION = {F.TIMELINE: 0, F.OUTBOX: 0, F.APPLIED_EVENTS: 0}
PAGE_SORT = [(F.DESIRED_TIME, ASCENDING), ("_id", ASCENDING)]
#: First window of desired time read for a page, unless the cursor carries a better one.
INITIAL_WINDOW = timedelta(hours=1)
MIN_WINDOW = timedelta(seconds=1)
#: How much wider a window is than the empty one before it. The window after an empty stretch
#: is read blind: it is ``EMPTY_GROWTH - 1`` times the stretch crossed, plus the stretch's first
#: window (at 2, as wide as the stretch), and a server that applies the limit late reads every
#: callback it holds (docs/design.md, "Windows of desired time").
EMPTY_GROWTH = 1.5


def page_order(doc: Document) -> tuple[datetime, bytes]:
    """The list's order in Python: desired time, then id (a UUID's bytes order as in BSON)."""
    return doc[F.DESIRED_TIME], doc["_id"].bytes


def next_window(
    window: timedelta, found: int, still_needed: int, occupied: timedelta | None = None
) -> timedelta:
    """The window after one that held too few (``found``): sized by the density seen for what
    is ``still_needed``, with a quarter to spare, within 0.1x..16x; after an empty one,
    :data:`EMPTY_GROWTH` times as wide.

    ``occupied`` is the stretch from the window's first callback to its end. The density is
    taken over that stretch (and the gap expected before a first of ``found``), not over the
    whole window: the window that first reaches stored callbacks (a range that starts before
    the oldest kept, which expire 14 days after their desired time) is mostly empty, and its
    whole width would make the next window read several pages' worth."""
    if found == 0:
        # gently: an empty stretch (a night, a closed day) may end in a busy one
        return window * EMPTY_GROWTH
    seen = window
    if occupied is not None:
        # ``found`` callbacks over a stretch leave on average 1/(found + 1) of it before the first
        seen = min(window, max(window / 16, occupied * (found + 1) / found))
    return seen * min(16.0, max(0.1, 1.25 * still_needed / found))


def window_filter(plan: QueryPlan, stream: Document, desired_time: Any) -> Document:
    """The query of one stream over one window. The leading clause is the one an index should
    drive (servers that pick an index by the first usable clause then pick that one)."""
    if plan.driver == "time":
        return {F.DESIRED_TIME: desired_time, **stream}
    return {**stream, F.DESIRED_TIME: desired_time}


def slot_id(service_name: str, start: datetime) -> str:
    return f"{service_name}|{start.astimezone(UTC).isoformat()}"


def counter_id(service_name: str, customer_number: str, day: date) -> str:
    return f"{service_name}|{customer_number}|{day.isoformat()}"


#: How long a create admitted by an open count may take to store its record: until then a
#: recount still counts it; one that died in between frees its place after this.
ADMISSION_GRACE = timedelta(minutes=2)
#: The latest admissions an open count remembers (far more than creates in flight at once).
ADMISSIONS_KEPT = 64
#: An open count to recount before its next use (a guard was switched on: creates made while it
#: was off were not counted).
UNKNOWN = 2**62
#: Admission attempts: a refusal is final only after a recount.
ADMIT_ATTEMPTS = 3


@dataclass(frozen=True)
class Filling:
    """What fills an open count at its limit: how many, and the ids of those it read (stored
    open callbacks, then creates not stored yet)."""

    total: int
    callback_ids: list[UUID]


@dataclass(frozen=True)
class OpenCount:
    """A create guard's count of open callbacks: of a service, or of one customer number in it."""

    service_name: str
    customer_number: str | None
    limit: int

    @property
    def key(self) -> str:
        if self.customer_number is None:
            return f"service|{self.service_name}"
        return f"number|{self.service_name}|{self.customer_number}"

    @property
    def open_filter(self) -> Document:
        """The open callbacks it counts (read through the indexes ``open_by_service_number`` and
        ``by_service_state_desired_time``)."""
        filter_: Document = {F.SERVICE_NAME: self.service_name}
        if self.customer_number is not None:
            filter_[F.CUSTOMER_NUMBER] = self.customer_number
        return {**filter_, F.STATE: {"$in": sorted(OPEN_STATES)}}


#: Services whose parsed settings are kept (:meth:`Repository._config`); far more than any
#: contact centre has.
PARSED_SERVICES_KEPT = 10_000


class Repository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.callbacks = db[CALLBACKS]
        self.services = db[SERVICES]
        self.slots = db[SLOTS]
        self.counters = db[REQUEST_COUNTERS]
        self.jobs = db[BULK_CANCEL_JOBS]
        self.open_counts = db[OPEN_COUNTS]
        #: the database itself, for the shared report queries
        self.db = db
        #: each service's settings as last read, and parsed (see :meth:`_config`)
        self._configs: dict[str, tuple[Document, ServiceConfig]] = {}

    # --- services -------------------------------------------------------------------------------

    async def service_config(self, name: str) -> tuple[ServiceConfig, bool]:
        """The service's settings, and whether they are stored (else the defaults)."""
        doc = await self.services.find_one({"_id": name})
        if doc is None:
            return ServiceConfig(name=name), False
        return self._config(doc), True

    async def service_configs(self, names: Iterable[str]) -> dict[str, ServiceConfig]:
        wanted = sorted(set(names))
        configs = {name: ServiceConfig(name=name) for name in wanted}
        if wanted:
            async for doc in self.services.find({"_id": {"$in": wanted}}):
                configs[doc["_id"]] = self._config(doc)
        return configs

    async def stored_services(self, names: Iterable[str] | None) -> list[ServiceConfig]:
        """Stored settings: of ``names``, or of every service when ``names`` is None."""
        filter_: Document = {} if names is None else {"_id": {"$in": sorted(set(names))}}
        return [self._config(doc) async for doc in self.services.find(filter_).sort("_id", 1)]

    def _config(self, doc: Document) -> ServiceConfig:
        """The settings a stored document holds. Every command reads its service's settings
        from MongoDB (a change made through any replica applies to the next command); a document
        read unchanged since the last time is not validated again (settings are immutable)."""
        name = doc["_id"]
        known = self._configs.get(name)
        if known is not None and known[0] == doc:
            return known[1]
        config = ServiceConfig.from_document(doc)
        if len(self._configs) >= PARSED_SERVICES_KEPT:
            self._configs.clear()
        self._configs[name] = (doc, config)
        return config

    async def save_service(self, config: ServiceConfig) -> None:
        body = config.model_dump(mode="json", exclude={"name"})
        await self.services.replace_one({"_id": config.name}, body, upsert=True)
        await self._recount_before_use(config.name)

    async def delete_service(self, name: str) -> bool:
        result = await self.services.delete_one({"_id": name})
        await self._recount_before_use(name)
        return result.deleted_count == 1

    # --- callbacks ------------------------------------------------------------------------------

    async def get(self, callback_id: UUID) -> Document | None:
        return await self.callbacks.find_one({"_id": callback_id})

    async def get_many(self, callback_ids: Iterable[UUID]) -> list[Document]:
        """The callbacks of these ids that exist, without their timeline (live updates)."""
        wanted = list(set(callback_ids))
        cursor = self.callbacks.find({"_id": {"$in": wanted}}, LIST_PROJECTION)
        return await cursor.to_list()

    async def insert(self, doc: Document) -> None:
        await self.callbacks.insert_one(doc)

    async def update(self, filter_: Document, update: Document) -> Document | None:
        """Apply ``update`` to the one document matching ``filter_``; the document after it."""
        return await self.callbacks.find_one_and_update(
            filter_, update, return_document=ReturnDocument.AFTER
        )

    async def page(
        self,
        criteria: ListCriteria,
        plan: QueryPlan,
        after: PageCursor | None,
        limit: int,
    ) -> tuple[list[Document], timedelta]:
        """Up to ``limit`` callbacks in list order after ``after``, and the window the next page
        should start with.

        Windows of desired time are read one after the other, each growing by the density seen,
        until the page is full or the range ends; each window is one query per stream of the
        plan, merged in order. The stretch of the range more than :data:`RETENTION` ago, when
        wider than the window, is one window: it holds only callbacks past their expiry that
        the TTL monitor has yet to delete (``last_30_days`` starts 16 days into it), and
        crossing it in growing windows sent the first window to reach kept callbacks hundreds
        of hours wide.
        """
        found: list[Document] = []
        expired_before = utcnow() - RETENTION
        span = criteria.end - criteria.start
        window = span
        if plan.windowed:
            carried = timedelta(seconds=after.window_seconds) if after else INITIAL_WINDOW
            window = max(MIN_WINDOW, min(carried, span))
        lower, inclusive = criteria.start, True
        if after is not None and criteria.start <= after.desired_time < criteria.end:
            found = await self._ties(plan, after, limit)
            lower, inclusive = after.desired_time, False
        elif after is not None and after.desired_time >= criteria.end:
            return [], window
        while len(found) < limit and lower < criteria.end:
            # one window to the retention edge, when it is further away than a window
            past_expiry = plan.windowed and lower + window < expired_before
            upper = min(expired_before if past_expiry else lower + window, criteria.end)
            time_clause = {"$gte" if inclusive else "$gt": lower, "$lt": upper}
            needed = limit - len(found)
            batch: list[Document] = []
            for stream in plan.streams:
                batch += await self._read(plan, stream, time_clause, needed)
            batch.sort(key=page_order)
            found += batch[:needed]
            if len(batch) >= needed:
                break
            if not past_expiry:
                occupied = upper - batch[0][F.DESIRED_TIME] if batch else None
                window = next_window(window, len(batch), needed - len(batch), occupied)
            lower, inclusive = upper, True
        took = found[-1][F.DESIRED_TIME] - found[0][F.DESIRED_TIME] if found else timedelta(0)
        if took > timedelta(0):
            # the next page likely needs about the stretch of desired time this one took
            window = max(MIN_WINDOW, took * 1.25)
        return found, window

    async def _read(
        self, plan: QueryPlan, stream: Document, desired_time: Any, limit: int
    ) -> list[Document]:
        filter_ = window_filter(plan, stream, desired_time)
        cursor = self.callbacks.find(filter_, LIST_PROJECTION).sort(PAGE_SORT).limit(limit)
        return await cursor.to_list()

    async def _ties(self, plan: QueryPlan, after: PageCursor, limit: int) -> list[Document]:
        """Callbacks at the cursor's very desired time that come after it (same slot)."""
        found: list[Document] = []
        for stream in plan.streams:
            if "_id" in stream:
                docs = await self._read(plan, stream, after.desired_time, 0)
                found += [doc for doc in docs if doc["_id"].bytes > after.callback_id.bytes]
            else:
                filter_ = {F.DESIRED_TIME: after.desired_time, **stream}
                filter_["_id"] = {"$gt": after.callback_id}
                cursor = self.callbacks.find(filter_, LIST_PROJECTION).sort(PAGE_SORT)
                found += await cursor.limit(limit).to_list()
        found.sort(key=page_order)
        return found[:limit]

    async def find_ids(
        self, callback_ids: Iterable[UUID], projection: Document | None = LIST_PROJECTION
    ) -> dict[UUID, Document]:
        """The callbacks of these ids that exist, by id; read in small ``$in`` chunks (the test
        server answers a long ``$in`` list slowly)."""
        ids = list(callback_ids)
        chunks = [ids[at : at + READ_CHUNK] for at in range(0, len(ids), READ_CHUNK)]
        found = await asyncio.gather(
            *(
                self.callbacks.find({"_id": {"$in": chunk}}, projection).to_list()
                for chunk in chunks
            )
        )
        return {doc["_id"]: doc for docs in found for doc in docs}

    async def update_where(self, ids: list[UUID], condition: Document, update: Document) -> None:
        """Apply the same ``update`` to the callbacks of these ids that still match
        ``condition``: one ``update_many`` per chunk of ids (measured here: 3.4 ms per
        callback, against 7 ms for as many conditional updates in one bulk write)."""
        for at in range(0, len(ids), READ_CHUNK):
            await self.callbacks.update_many(
                {"_id": {"$in": ids[at : at + READ_CHUNK]}, **condition}, update
            )

    async def count_matching(self, criteria: ListCriteria, up_to: int) -> int:
        """Callbacks the criteria select, counted up to ``up_to`` (bulk cancel's job threshold)."""
        cursor = self.callbacks.find(list_filter(criteria), {"_id": 1}).limit(up_to)
        return len(await cursor.to_list())

    async def search(self, filter_: Document, limit: int) -> list[Document]:
        """Callback Search: every retained record matching, latest desired time first."""
        cursor = self.callbacks.find(filter_, LIST_PROJECTION)
        return (
            await cursor.sort([(F.DESIRED_TIME, DESCENDING), ("_id", ASCENDING)])
            .limit(limit)
            .to_list()
        )

    # --- bulk cancel jobs -----------------------------------------------------------------------

    async def insert_job(self, job: Document) -> None:
        await self.jobs.insert_one(job)

    async def update_job(self, batch_id: UUID, update: Document) -> None:
        await self.jobs.update_one({"_id": batch_id}, update)

    async def reap_jobs(self, stale_before: datetime, now: datetime) -> int:
        """Mark failed the jobs still ``running`` without progress since ``stale_before``: the
        process running them is gone."""
        reaped = await self.jobs.update_many(
            {"state": "running", "updated_at": {"$lt": stale_before}},
            {
                "$set": {
                    "state": "failed",
                    "error": "interrupted: its process stopped; submit the range again",
                    "finished_at": now,
                    "updated_at": now,
                }
            },
        )
        return reaped.modified_count

    async def job(self, batch_id: UUID, actor: str) -> Document | None:
        return await self.jobs.find_one({"_id": batch_id, "actor": actor}, {ANNOUNCING: 0})

    # --- slots ----------------------------------------------------------------------------------

    async def take_slot(
        self, service_name: str, start: datetime, capacity: int, callback_id: UUID
    ) -> bool:
        """Take a place in the slot for ``callback_id``; False when the slot is full."""
        filter_ = {
            "_id": slot_id(service_name, start),
            "taken": {"$lt": capacity},
            "holders": {"$ne": callback_id},
        }
        update: Document = {"$inc": {"taken": 1}, "$push": {"holders": callback_id}}
        on_insert = {
            "$setOnInsert": {
                "service_name": service_name,
                "start": start,
                "expire_at": start + RETENTION,
            }
        }
        try:
            await self.slots.update_one(filter_, {**update, **on_insert}, upsert=True)
            return True
        except DuplicateKeyError:
            # The slot exists and is full, or a racing request just created it: once more,
            # without creating it.
            result = await self.slots.update_one(filter_, update)
            return result.modified_count == 1

    async def release_slot(self, service_name: str, start: datetime, callback_id: UUID) -> None:
        """Give back ``callback_id``'s place, if it holds one (idempotent)."""
        await self.slots.update_one(
            {"_id": slot_id(service_name, start), "holders": callback_id},
            {"$inc": {"taken": -1}, "$pull": {"holders": callback_id}},
        )

    async def slots_taken(
        self, service_name: str, start: datetime, end: datetime
    ) -> dict[datetime, int]:
        cursor = self.slots.find(
            {"service_name": service_name, "start": {"$gte": start, "$lt": end}},
            {"start": 1, "taken": 1},
        )
        return {doc["start"]: doc["taken"] async for doc in cursor}

    async def release_slots(self, places: list[tuple[str, datetime, UUID]]) -> None:
        """:meth:`release_slot` for many (service, slot start, callback) at once: one update per
        chunk of slots, each slot losing the places of every callback listed for it."""
        by_slot: dict[str, list[UUID]] = {}
        for service_name, start, callback_id in places:
            by_slot.setdefault(slot_id(service_name, start), []).append(callback_id)
        slots = list(by_slot)
        for at in range(0, len(slots), READ_CHUNK):
            chunk = slots[at : at + READ_CHUNK]
            leaving = [callback_id for slot in chunk for callback_id in by_slot[slot]]
            await self.slots.update_many(
                {"_id": {"$in": chunk}, "holders": {"$in": leaving}},
                [
                    {"$set": {"holders": {"$setDifference": ["$holders", leaving]}}},
                    {"$set": {"taken": {"$size": "$holders"}}},
                ],
            )

    # --- open counts (create guards) ------------------------------------------------------------

    async def admit_open(
        self, count: OpenCount, callback_id: UUID, now: datetime, keep_until: datetime
    ) -> Filling | None:
        """Count ``callback_id`` as open in ``count`` unless that reaches its limit: None when
        admitted, else what fills it.

        One conditional update (``open < limit``) admits, so racing creates cannot both pass.
        ``open`` never counts fewer than the open callbacks: callbacks that closed since are
        found by a recount of the records when the limit is reached (or the count is new), so a
        create does no work proportional to the stored callbacks, and no other writer keeps the
        count."""
        admission = {
            "$push": {
                "admitting": {
                    "$each": [{"id": callback_id, "at": now}],
                    "$slice": -ADMISSIONS_KEPT,
                }
            },
            "$max": {"expire_at": keep_until},
        }
        below_limit = {"_id": count.key, "open": {"$lt": count.limit}}
        below_limit_admission = {"$inc": {"open": 1, "v": 1}, **admission}
        filling = Filling(count.limit, [])
        for _ in range(ADMIT_ATTEMPTS):
            # a service's count is usually below its limit; a number's is usually new or full
            if count.customer_number is None:
                result = await self.open_counts.update_one(below_limit, below_limit_admission)
                if result.modified_count == 1:
                    return None
            doc = await self.open_counts.find_one({"_id": count.key})
            if doc is not None and doc["open"] < count.limit:
                result = await self.open_counts.update_one(below_limit, below_limit_admission)
                if result.modified_count == 1:
                    return None
                continue
            filling = await self._recount(count, doc, now)
            admit = filling.total < count.limit
            if doc is None:
                seed = {"open": filling.total, "v": 0, "admitting": [], "expire_at": keep_until}
                if admit:
                    seed |= {
                        "open": filling.total + 1,
                        "admitting": [{"id": callback_id, "at": now}],
                    }
                try:
                    await self.open_counts.insert_one(
                        {"_id": count.key, "service": count.service_name, **seed}
                    )
                except DuplicateKeyError:  # a racing create made it: once more
                    continue
            elif admit or filling.total != doc["open"]:
                # unless it changed meanwhile: the recounted figure, and the admission
                change: Document = {"$set": {"open": filling.total}, "$inc": {"v": 1}}
                if admit:
                    change = {"$set": {"open": filling.total + 1}, "$inc": {"v": 1}, **admission}
                result = await self.open_counts.update_one(
                    {"_id": count.key, "v": doc["v"]}, change
                )
                if admit and result.modified_count == 0:
                    continue
            if admit:
                return None
            return filling
        return filling

    async def give_back_open(self, count: OpenCount, callback_id: UUID) -> None:
        """Undo :meth:`admit_open` for a create that failed later (idempotent). An admission
        already forgotten stays counted until the next recount."""
        await self.open_counts.update_one(
            {"_id": count.key, "admitting.id": callback_id},
            {"$inc": {"open": -1, "v": 1}, "$pull": {"admitting": {"id": callback_id}}},
        )

    async def _recount(self, count: OpenCount, doc: Document | None, now: datetime) -> Filling:
        """The open callbacks stored (counted up to the limit; ids read for a customer number's
        count only) plus the creates the count admitted lately whose record is not stored yet."""
        recent = [
            entry["id"]
            for entry in (doc or {}).get("admitting", [])
            if entry["at"] > now - ADMISSION_GRACE
        ]
        creating = recent
        if recent:
            # read before the count: a record stored in between is counted twice, never missed
            stored = {
                d["_id"] async for d in self.callbacks.find({"_id": {"$in": recent}}, {"_id": 1})
            }
            creating = [callback_id for callback_id in recent if callback_id not in stored]
        if count.customer_number is None:
            found = await self.callbacks.count_documents(count.open_filter, limit=count.limit)
            return Filling(found + len(creating), [])
        cursor = self.callbacks.find(count.open_filter, {"_id": 1}).limit(count.limit)
        open_ids = [d["_id"] async for d in cursor]
        ids = open_ids + [callback_id for callback_id in creating if callback_id not in open_ids]
        return Filling(len(ids), ids)

    async def _recount_before_use(self, service_name: str) -> None:
        """A guard of the service may have been switched on: recount its counts before use."""
        await self.open_counts.update_many(
            {"service": service_name}, {"$set": {"open": UNKNOWN}, "$inc": {"v": 1}}
        )

    # --- request counters -----------------------------------------------------------------------

    async def count_request(
        self,
        service_name: str,
        customer_number: str,
        day: date,
        limit: int,
        expire_at: datetime,
    ) -> bool:
        """Count one accepted request of the number on ``day``; False when at ``limit``."""
        filter_ = {
            "_id": counter_id(service_name, customer_number, day),
            "count": {"$lt": limit},
        }
        try:
            await self.counters.update_one(
                filter_,
                {"$inc": {"count": 1}, "$setOnInsert": {"expire_at": expire_at}},
                upsert=True,
            )
            return True
        except DuplicateKeyError:
            result = await self.counters.update_one(filter_, {"$inc": {"count": 1}})
            return result.modified_count == 1

    async def uncount_request(self, service_name: str, customer_number: str, day: date) -> None:
        await self.counters.update_one(
            {"_id": counter_id(service_name, customer_number, day), "count": {"$gt": 0}},
            {"$inc": {"count": -1}},
        )
