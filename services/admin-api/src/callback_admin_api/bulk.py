"""Bulk cancel: preview and confirm, over chosen ids or over the open callbacks of a range.

A selection is either ``ids`` (at most :data:`~callback_admin_api.views.MAX_BULK_IDS`) or
``all_in_range``: the list's filters (:func:`~callback_admin_api.queries.list_criteria`),
narrowed to the open states (a completed callback of the range is no candidate). A range is read
in the list's order (desired time, id) in batches of :data:`BATCH_SIZE` with the list's cursor,
so no answer holds the whole range in memory; answers list at most
:data:`~callback_admin_api.views.MAX_BULK_ITEMS` records, the counts cover every one.

Each callback is cancelled by :func:`~callback_admin_api.commands.cancel_one`, the single
cancel's conditional update, with the batch id: one not cancellable at that moment (it reached
PROCESSING since the preview, say) is left as it is and announced as a refused cancellation.
An id that does not exist and one of a service not granted to the caller get the same answer
(``NOT_FOUND``, the id only), as a single cancel answers both with the same 404.

A range selecting more than :data:`JOB_THRESHOLD` open callbacks is cancelled by a background
job (202): its progress is stored in ``bulk_cancel_jobs`` after every batch and only its actor
may read it. A job interrupted by a crash or a shutdown stops where it was: what it cancelled
stays cancelled and announced (through the outbox), its document stays ``running`` with its last
``updated_at`` (``failed`` if the shutdown could say so); submitting the same range again
cancels what is left.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from uuid import UUID, uuid4

import structlog
from callback_shared.models import RETENTION
from callback_shared.mongo import Document
from callback_shared.outbox import OUTBOX
from callback_shared.states import CANCELLABLE_STATES, OPEN_STATES, CallbackState

from callback_admin_api.auth import Principal
from callback_admin_api.commands import CancelOutcome, cancel_one, cancellation, publish
from callback_admin_api.context import AdminApi
from callback_admin_api.listing import ListCriteria, PageCursor, query_plan
from callback_admin_api.problems import InvalidField, NotFound
from callback_admin_api.queries import ListRequest, list_criteria, retained
from callback_admin_api.views import (
    MAX_BULK_ITEMS,
    BulkCancelPreview,
    BulkCancelRequest,
    BulkCancelResult,
    BulkItem,
    BulkOutcome,
    BulkReason,
    JobState,
    RangeFilters,
)

#: Callbacks read (and cancelled) per batch.
BATCH_SIZE = 500
#: A range with more open callbacks than this is cancelled by a background job (202).
JOB_THRESHOLD = 1000
#: Callbacks cancelled concurrently within a batch.
CONCURRENCY = 50

log = structlog.get_logger("admin-api")

#: What a bulk cancel works on: chosen ids, or the criteria of a range.
Selection = tuple[UUID, ...] | ListCriteria


def selection(api: AdminApi, principal: Principal, request: BulkCancelRequest) -> Selection:
    if request.ids is not None:
        return tuple(dict.fromkeys(request.ids))  # each id once, in the order given
    assert request.all_in_range is not None
    return range_criteria(principal, request.all_in_range, api.clock())


def range_criteria(principal: Principal, filters: RangeFilters, now: datetime) -> ListCriteria:
    """The list's criteria of the filters (validated as the list validates them), narrowed to
    the open states and the retained records."""
    request = ListRequest(
        range=filters.range,
        start=filters.from_,
        end=filters.to,
        time_zone=filters.tz,
        states=tuple(filters.state or ()),
        services=tuple(filters.service or ()),
        field=filters.field,
        q=filters.q,
    )
    try:
        criteria, _, _ = list_criteria(principal, request, now, location="body")
    except InvalidField as exc:
        error = (exc.errors or [])[0]
        raise InvalidField(f"all_in_range.{error.field}", error.message) from None
    states = OPEN_STATES if criteria.states is None else criteria.states & OPEN_STATES
    return retained(replace(criteria, states=frozenset(states)), now)


async def batches(
    api: AdminApi, principal: Principal, chosen: Selection
) -> AsyncIterator[list[tuple[UUID, Document | None]]]:
    """The selection in batches: each id with its document, ``None`` when it does not exist or
    is in a service not granted to the caller."""
    repo = api.repository
    if not isinstance(chosen, ListCriteria):
        for start in range(0, len(chosen), BATCH_SIZE):
            ids = chosen[start : start + BATCH_SIZE]
            found = await repo.find_ids(ids)
            yield [
                (callback_id, doc if doc and principal.grants(doc["service_name"]) else None)
                for callback_id in ids
                for doc in [found.get(callback_id)]
            ]
        return
    if chosen.matches_nothing or chosen.start >= chosen.end:
        return
    plan = query_plan(chosen)
    after: PageCursor | None = None
    while True:
        docs, window = await repo.page(chosen, plan, after, BATCH_SIZE)
        if docs:
            yield [(doc["_id"], doc) for doc in docs]
        if len(docs) < BATCH_SIZE:
            return
        last = docs[-1]
        after = PageCursor(last["desired_time"], last["_id"], window.total_seconds())


def _item(
    callback_id: UUID, doc: Document | None, outcome: BulkOutcome, reason: BulkReason | None
) -> BulkItem:
    if doc is None:
        return BulkItem(id=callback_id, outcome=outcome, reason=reason)
    return BulkItem(
        id=callback_id,
        outcome=outcome,
        reason=reason,
        state=doc["state"],
        service_name=doc["service_name"],
        customer_number=doc["customer_number"],
        desired_time=doc["desired_time"],
    )


def _reason(state: CallbackState | str | None) -> BulkReason:
    return BulkReason(str(state)) if state else BulkReason.NOT_FOUND


# --- preview ------------------------------------------------------------------------------------


async def preview(
    api: AdminApi, principal: Principal, request: BulkCancelRequest
) -> BulkCancelPreview:
    chosen = selection(api, principal, request)
    total = 0
    reasons: Counter[BulkReason] = Counter()
    items: list[BulkItem] = []
    excluded: list[BulkItem] = []
    async for batch in batches(api, principal, chosen):
        for callback_id, doc in batch:
            total += 1
            if doc is not None and doc["state"] in CANCELLABLE_STATES:
                if len(items) < MAX_BULK_ITEMS:
                    items.append(_item(callback_id, doc, BulkOutcome.WOULD_CANCEL, None))
                continue
            reason = _reason(doc["state"] if doc else None)
            reasons[reason] += 1
            if len(excluded) < MAX_BULK_ITEMS:
                excluded.append(_item(callback_id, doc, BulkOutcome.EXCLUDED, reason))
    excluded_count = sum(reasons.values())
    return BulkCancelPreview(
        total=total,
        would_cancel=total - excluded_count,
        excluded=excluded_count,
        excluded_by_reason=dict(reasons),
        items=items,
        excluded_items=excluded,
        truncated=len(items) + len(excluded) < total,
    )


# --- confirm ------------------------------------------------------------------------------------


@dataclass
class Progress:
    """Counts of a bulk cancel so far, and its first records (when kept)."""

    keep_items: bool = True
    outcomes: Counter[BulkOutcome] = field(default_factory=Counter)
    refused_by_reason: Counter[BulkReason] = field(default_factory=Counter)
    items: list[BulkItem] = field(default_factory=list)

    @property
    def total_seen(self) -> int:
        return sum(self.outcomes.values())

    def add(self, item: BulkItem) -> None:
        self.outcomes[item.outcome] += 1
        if item.outcome is BulkOutcome.REFUSED and item.reason is not None:
            self.refused_by_reason[item.reason] += 1
        if self.keep_items and len(self.items) < MAX_BULK_ITEMS:
            self.items.append(item)

    def counts(self) -> Document:
        return {
            "total_seen": self.total_seen,
            "cancelled": self.outcomes[BulkOutcome.CANCELLED],
            "refused": self.outcomes[BulkOutcome.REFUSED],
            "skipped": self.outcomes[BulkOutcome.SKIPPED],
            "refused_by_reason": {str(k): v for k, v in self.refused_by_reason.items()},
        }


async def bulk_cancel(
    api: AdminApi, principal: Principal, request: BulkCancelRequest
) -> tuple[BulkCancelResult, bool]:
    """Cancel the selection; the outcome, and whether it goes on as a background job."""
    chosen = selection(api, principal, request)
    batch_id, started = uuid4(), api.clock()
    job = {
        "_id": batch_id,
        "actor": principal.username,
        "state": JobState.RUNNING.value,
        "started_at": started,
        "updated_at": started,
        "finished_at": None,
        "error": None,
        "expire_at": started + RETENTION,
        **Progress().counts(),
    }
    if (
        isinstance(chosen, ListCriteria)
        and not chosen.matches_nothing
        and await api.repository.count_matching(chosen, JOB_THRESHOLD + 1) > JOB_THRESHOLD
    ):
        await api.repository.insert_job(job)
        api.spawn(run_job(api, principal, chosen, batch_id), f"bulk-cancel-{batch_id}")
        return job_view(job), True
    progress = Progress()
    async for batch in batches(api, principal, chosen):
        await cancel_batch(api, principal, batch, batch_id, progress)
    finished = api.clock()
    done = {**job, **progress.counts(), "state": JobState.DONE.value, "finished_at": finished}
    result = job_view(done).model_copy(
        update={
            "items": progress.items,
            "truncated": len(progress.items) < progress.total_seen,
            "updated_at": finished,
        }
    )
    return result, False


async def cancel_batch(
    api: AdminApi,
    principal: Principal,
    batch: Sequence[tuple[UUID, Document | None]],
    batch_id: UUID,
    progress: Progress,
) -> None:
    """Cancel the batch, then give back their slot places and publish their events, for the
    whole batch at once. Fast path: one unordered bulk write of every conditional cancellation
    (:func:`~callback_admin_api.commands.cancellation`) of the callbacks seen cancellable, and
    one read-back; a callback it did not cancel (its state changed meanwhile, or it was not
    cancellable) goes through :func:`~callback_admin_api.commands.cancel_one`, a few at a time.
    """
    announced: list[Document] = []
    places: list[tuple[str, datetime, UUID]] = []
    now = api.clock()
    seen = {
        cid: doc for cid, doc in batch if doc is not None and doc["state"] in CANCELLABLE_STATES
    }
    changes = {cid: cancellation(api, principal, doc, now, batch_id) for cid, doc in seen.items()}
    await api.repository.apply_all(list(changes.values()))
    after = await api.repository.find_ids(changes, projection=None)
    rest: list[tuple[UUID, Document | None]] = []
    for callback_id, doc in batch:
        done = after.get(callback_id)
        if (
            callback_id in changes
            and done is not None
            and _cancelled_by(done, changes[callback_id])
        ):
            progress.add(_item(callback_id, seen[callback_id], BulkOutcome.CANCELLED, None))
            announced.append(done)
            places.append((done["service_name"], done["desired_time"], callback_id))
        else:
            rest.append((callback_id, done if callback_id in changes else doc))
    for start in range(0, len(rest), CONCURRENCY):
        chunk = rest[start : start + CONCURRENCY]
        results = await asyncio.gather(
            *(_cancel(api, principal, callback_id, doc, batch_id) for callback_id, doc in chunk)
        )
        for item, doc in results:
            progress.add(item)
            if doc is not None:
                announced.append(doc)
            if item.outcome is BulkOutcome.CANCELLED and doc is not None:
                places.append((doc["service_name"], doc["desired_time"], doc["_id"]))
    await api.repository.release_slots(places)
    await publish(api, *announced)


def _cancelled_by(doc: Document, change: tuple[Document, Document]) -> bool:
    """Whether the read-back ``doc`` carries the event of this cancellation in its outbox."""
    (entry,) = change[1]["$push"][OUTBOX]["$each"]
    return any(pending["event_id"] == entry["event_id"] for pending in doc.get(OUTBOX, []))


async def _cancel(
    api: AdminApi, principal: Principal, callback_id: UUID, doc: Document | None, batch_id: UUID
) -> tuple[BulkItem, Document | None]:
    if doc is None:
        return _item(callback_id, None, BulkOutcome.SKIPPED, BulkReason.NOT_FOUND), None
    done = await cancel_one(api, principal, doc, batch_id=batch_id, deferred=True)
    if done.outcome is CancelOutcome.CANCELLED:
        return _item(callback_id, doc, BulkOutcome.CANCELLED, None), done.doc
    if done.outcome is CancelOutcome.REFUSED:
        seen = done.doc or doc
        return _item(callback_id, seen, BulkOutcome.REFUSED, _reason(done.state)), done.doc
    if done.outcome is CancelOutcome.CHANGING:
        return _item(callback_id, doc, BulkOutcome.SKIPPED, BulkReason.CHANGING), None
    return _item(callback_id, None, BulkOutcome.SKIPPED, BulkReason.NOT_FOUND), None


async def run_job(
    api: AdminApi, principal: Principal, criteria: ListCriteria, batch_id: UUID
) -> None:
    """The background job of a large range: progress stored after every batch."""
    repo = api.repository
    progress = Progress(keep_items=False)
    try:
        async for batch in batches(api, principal, criteria):
            await cancel_batch(api, principal, batch, batch_id, progress)
            await repo.update_job(
                batch_id, {"$set": {**progress.counts(), "updated_at": api.clock()}}
            )
    except asyncio.CancelledError:
        await _finish(api, batch_id, progress, JobState.FAILED, "interrupted by a shutdown")
        raise
    except Exception as exc:
        log.exception("bulk cancel job failed", batch_id=str(batch_id))
        await _finish(api, batch_id, progress, JobState.FAILED, repr(exc))
        return
    await _finish(api, batch_id, progress, JobState.DONE, None)
    log.info("bulk cancel job done", batch_id=str(batch_id), **progress.counts())


async def _finish(
    api: AdminApi, batch_id: UUID, progress: Progress, state: JobState, error: str | None
) -> None:
    now = api.clock()
    try:
        await api.repository.update_job(
            batch_id,
            {
                "$set": {
                    **progress.counts(),
                    "state": state.value,
                    "error": error,
                    "updated_at": now,
                    "finished_at": now,
                }
            },
        )
    except Exception:
        log.warning("bulk cancel job state not stored", batch_id=str(batch_id), exc_info=True)


def job_view(job: Document) -> BulkCancelResult:
    return BulkCancelResult(
        batch_id=job["_id"],
        actor=job["actor"],
        state=JobState(job["state"]),
        total_seen=job["total_seen"],
        cancelled=job["cancelled"],
        refused=job["refused"],
        skipped=job["skipped"],
        refused_by_reason=job.get("refused_by_reason") or {},
        started_at=job["started_at"],
        finished_at=job.get("finished_at"),
        updated_at=job.get("updated_at"),
        error=job.get("error"),
    )


async def get_job(api: AdminApi, principal: Principal, batch_id: UUID) -> BulkCancelResult:
    """A bulk cancel job, to its actor only (anyone else: the same 404 as a missing one)."""
    job = await api.repository.job(batch_id, principal.username)
    if job is None:
        raise NotFound("no such bulk cancel of yours")
    return job_view(job)
