"""Bulk cancel: preview and confirm, over chosen ids or over the open callbacks of a range.

A selection is either ``ids`` (at most :data:`~callback_admin_api.views.MAX_BULK_IDS`) or
``all_in_range``: the list's filters (:func:`~callback_admin_api.queries.list_criteria`),
narrowed to the open states (a completed callback of the range is no candidate). A range is read
in the list's order (desired time, id) in batches of :data:`BATCH_SIZE` with the list's cursor,
so no answer holds the whole range in memory; answers list at most
:data:`~callback_admin_api.rules.MAX_BULK_ITEMS` records, the counts cover every one.

Each batch is cancelled by the single cancel's :class:`~callback_admin_api.commands.Cancellation`
of every callback, stamped with the batch id. The outright ones (not yet due) are applied with
one ``update_many`` per chunk of ids (their condition and update are the same for all), only
where the callback is still not yet due; their CANCELLED events go first into the job document's
outbox (``announcing``), are published once the batch is read back, and removed. Every other
callback goes through :func:`~callback_admin_api.commands.apply_cancellation`, as a single
cancel does: one routing may hold (due, QUEUED, ROUTING) is asked of routing (``REQUESTED``:
the record shows the cancel pending until routing answers), one not cancellable at that moment
(it reached PROCESSING since the preview, say) is left as it is and announced as a refused
cancellation. Then the whole batch's slot places and callback outboxes go to
:func:`~callback_admin_api.commands.announce_cancellations`.
An id that does not exist and one of a service not granted to the caller get the same answer
(``NOT_FOUND``, the id only), as a single cancel answers both with the same 404.

Every bulk cancel has a document in ``bulk_cancel_jobs`` (``_id`` = batch id). A range
selecting more than :data:`JOB_THRESHOLD` open callbacks is cancelled by a background job
(202): its progress is stored after every batch and only its actor may read it. If Kafka does
not take a batch's events the job stops (``failed``); the jobs' outbox relay
(:func:`job_outbox_relay`, the shared :class:`~callback_shared.outbox.OutboxRelay`) publishes
what a batch left in its job's outbox after ``RELAY_AFTER`` (only the events of callbacks the
batch did cancel), and :func:`reap_loop` marks ``failed`` a job whose process stopped (no
progress for :data:`STALE_JOB_AFTER`). What a job cancelled stays cancelled and announced;
submitting the same range again cancels what is left.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import structlog
from callback_shared.models import RETENTION, ServiceConfig
from callback_shared.mongo import Document
from callback_shared.outbox import OutboxRelay, with_outbox
from callback_shared.record import F, OutboxF
from callback_shared.runtime import keep_running
from callback_shared.states import CANCELLABLE_STATES, OPEN_STATES, CallbackState
from faststream.kafka import KafkaBroker

from callback_admin_api.auth import Principal
from callback_admin_api.collections import ANNOUNCING, ANNOUNCING_SINCE
from callback_admin_api.commands import (
    Cancellation,
    CancelOutcome,
    CancelResult,
    announce_cancellations,
    apply_cancellation,
)
from callback_admin_api.context import AdminApi
from callback_admin_api.listing import ListCriteria, PageCursor, query_plan
from callback_admin_api.problems import InvalidField, NotFound
from callback_admin_api.queries import list_criteria, retained
from callback_admin_api.repository import Repository
from callback_admin_api.rules import MAX_BULK_ITEMS
from callback_admin_api.views import (
    REFUSAL_REASONS,
    BulkCancelPreview,
    BulkCancelRequest,
    BulkCancelResult,
    BulkItem,
    BulkOutcome,
    BulkReason,
    Derived,
    JobState,
    RangeFilters,
    derived,
)

#: Callbacks read (and cancelled) per batch.
BATCH_SIZE = 500
#: A range with more open callbacks than this is cancelled by a background job (202).
JOB_THRESHOLD = 1000
#: Callbacks cancelled concurrently within a batch.
CONCURRENCY = 50
#: A running job without progress for this long has lost its process (a batch takes seconds).
STALE_JOB_AFTER = timedelta(minutes=10)
#: Jobs whose outboxes the relay takes over at a time (each may hold a batch of events).
JOBS_RELAYED_AT_ONCE = 20

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
    try:
        criteria, _, _ = list_criteria(principal, filters, now, location="body")
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
                (callback_id, doc if doc and principal.grants(doc[F.SERVICE_NAME]) else None)
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
        after = PageCursor(last[F.DESIRED_TIME], last["_id"], window.total_seconds())


@dataclass(frozen=True)
class Shown:
    """How a bulk answer shows its records: with every view's derived fields, which need the
    services' settings and the time of the answer (``configs`` None: a job's, which lists
    none)."""

    configs: Mapping[str, ServiceConfig] | None
    now: datetime

    @classmethod
    async def of(cls, api: AdminApi, docs: Iterable[Document | None]) -> Shown:
        names = {doc[F.SERVICE_NAME] for doc in docs if doc is not None}
        return cls(await api.repository.service_configs(names), api.clock())

    def item(
        self,
        callback_id: UUID,
        seen: Document | None,
        outcome: BulkOutcome,
        reason: BulkReason | None,
        after: Document | None = None,
    ) -> BulkItem:
        """``seen``: the record as the selection read it (its state is the item's); ``after``:
        as this answer leaves it, when it changed (the derived fields are of that)."""
        if seen is None:
            return BulkItem(id=callback_id, outcome=outcome, reason=reason)
        now_doc = after or seen
        view = None
        if self.configs is not None:
            name = now_doc[F.SERVICE_NAME]
            config = self.configs.get(name) or ServiceConfig(name=name)
            view = Derived.model_validate(derived(now_doc, config, self.now))
        return BulkItem(
            id=callback_id,
            outcome=outcome,
            reason=reason,
            state=seen[F.STATE],
            service_name=seen[F.SERVICE_NAME],
            customer_number=seen[F.CUSTOMER_NUMBER],
            desired_time=seen[F.DESIRED_TIME],
            derived=view,
        )


def _reason(state: CallbackState | str | None) -> BulkReason:
    return REFUSAL_REASONS[CallbackState(state)] if state else BulkReason.NOT_FOUND


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
        listing = len(items) < MAX_BULK_ITEMS or len(excluded) < MAX_BULK_ITEMS
        shown = await Shown.of(api, (doc for _, doc in batch)) if listing else None
        for callback_id, doc in batch:
            total += 1
            if doc is not None and doc[F.STATE] in CANCELLABLE_STATES:
                if shown and len(items) < MAX_BULK_ITEMS:
                    items.append(shown.item(callback_id, doc, BulkOutcome.WOULD_CANCEL, None))
                continue
            reason = _reason(doc[F.STATE] if doc else None)
            reasons[reason] += 1
            if shown and len(excluded) < MAX_BULK_ITEMS:
                excluded.append(shown.item(callback_id, doc, BulkOutcome.EXCLUDED, reason))
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
            "requested": self.outcomes[BulkOutcome.REQUESTED],
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
    background = (
        isinstance(chosen, ListCriteria)
        and not chosen.matches_nothing
        and await api.repository.count_matching(chosen, JOB_THRESHOLD + 1) > JOB_THRESHOLD
    )
    # every bulk cancel has its job document: progress, and the outbox of its events
    await api.repository.insert_job(job)
    if background and isinstance(chosen, ListCriteria):
        api.spawn(run_job(api, principal, chosen, batch_id), f"bulk-cancel-{batch_id}")
        return job_view(job), True
    progress = Progress()
    async for batch in batches(api, principal, chosen):
        # (a batch Kafka did not take is published by the relay: the answer stands)
        await cancel_batch(api, principal, batch, batch_id, progress)
    await _finish(api, batch_id, progress, JobState.DONE, None)
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
) -> bool:
    """Cancel the batch, give back their slot places and announce them; whether every event
    reached Kafka (else they wait in the job's outbox for the jobs' outbox relay).

    Fast path, for the outright cancellations (seen not yet due): their CANCELLED events first
    go to the job document's outbox (one write), then one ``update_many`` per chunk of ids
    applies them (still not yet due: the same update for all, stamped with the batch id), one
    read-back tells which this batch cancelled, their events are published and the job's
    outbox settled. Every other callback (routing may hold it, its state changed meanwhile, or
    it was not cancellable) goes through
    :func:`~callback_admin_api.commands.apply_cancellation`, a few at a time. Then
    :func:`~callback_admin_api.commands.announce_cancellations` for the whole batch.
    """
    repo = api.repository
    now = api.clock()
    if progress.keep_items:
        shown = await Shown.of(api, (doc for _, doc in batch))
    else:
        shown = Shown(None, now)
    outright = {
        callback_id: cancellation
        for callback_id, doc in batch
        if doc is not None
        and (cancellation := Cancellation(doc, principal, now, batch_id)).outcome
        is CancelOutcome.CANCELLED
    }
    entries = {callback_id: c.outbox(api) for callback_id, c in outright.items()}
    announcing = [entry for events in entries.values() for entry in events]
    after: dict[UUID, Document] = {}
    if outright:
        await repo.update_job(
            batch_id, with_outbox({}, announcing, field=ANNOUNCING, since=ANNOUNCING_SINCE)
        )
        # an outright cancellation's condition and update are the same for every one of them
        first = next(iter(outright.values()))
        await repo.update_where(list(outright), first.condition, first.update)
        after = await repo.find_ids(outright)
    results: list[CancelResult] = []
    ours: list[Document] = []
    rest: list[tuple[UUID, Document | None]] = []
    for callback_id, read in batch:
        done = after.get(callback_id)
        if done is not None and done.get(F.CANCELLED_IN_BATCH) == batch_id:
            seen = outright[callback_id]
            results.append(CancelResult(CancelOutcome.CANCELLED, done, seen.state, written=True))
            progress.add(shown.item(callback_id, seen.seen, BulkOutcome.CANCELLED, None, done))
            ours.extend(entries[callback_id])
        else:
            rest.append((callback_id, done if callback_id in outright else read))
    for start in range(0, len(rest), CONCURRENCY):
        chunk = rest[start : start + CONCURRENCY]
        answered = await asyncio.gather(
            *(_cancel(api, principal, shown, cid, doc, batch_id) for cid, doc in chunk)
        )
        for item, result in answered:
            progress.add(item)
            if result is not None:
                results.append(result)
    await announce_cancellations(api, results)
    if not announcing:
        return True
    try:
        await asyncio.wait_for(
            api.job_relay.publish(ours), timeout=api.settings.admin_publish_timeout_seconds
        )
    except Exception:
        log.warning("bulk cancel events left for the relay", batch_id=str(batch_id), exc_info=True)
        return False
    # the events of callbacks this batch did not cancel (their state changed) go unpublished
    await api.job_relay.settle([{"_id": batch_id, ANNOUNCING: announcing}])
    return True


async def _cancel(
    api: AdminApi,
    principal: Principal,
    shown: Shown,
    callback_id: UUID,
    doc: Document | None,
    batch_id: UUID,
) -> tuple[BulkItem, CancelResult | None]:
    if doc is None:
        return shown.item(callback_id, None, BulkOutcome.SKIPPED, BulkReason.NOT_FOUND), None
    done = await apply_cancellation(api, principal, doc, batch_id)
    if done.outcome is CancelOutcome.CANCELLED:
        item = shown.item(callback_id, doc, BulkOutcome.CANCELLED, None, done.doc)
    elif done.outcome is CancelOutcome.REQUESTED:
        item = shown.item(callback_id, doc, BulkOutcome.REQUESTED, None, done.doc)
    elif done.outcome is CancelOutcome.REFUSED:
        item = shown.item(callback_id, done.doc or doc, BulkOutcome.REFUSED, _reason(done.state))
    elif done.outcome is CancelOutcome.CHANGING:
        item = shown.item(callback_id, doc, BulkOutcome.SKIPPED, BulkReason.CHANGING)
    else:
        item = shown.item(callback_id, None, BulkOutcome.SKIPPED, BulkReason.NOT_FOUND)
    return item, done


async def run_job(
    api: AdminApi, principal: Principal, criteria: ListCriteria, batch_id: UUID
) -> None:
    """The background job of a large range: progress stored after every batch."""
    repo = api.repository
    progress = Progress(keep_items=False)
    try:
        async for batch in batches(api, principal, criteria):
            announced = await cancel_batch(api, principal, batch, batch_id, progress)
            if not announced:
                # Kafka is down: stop here rather than pile up events; the relay publishes
                # what this batch cancelled, the range can be submitted again later
                raise RuntimeError("lifecycle events could not be published (Kafka)")
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
        requested=job.get("requested", 0),
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


# --- the jobs' outbox relay, and stopped jobs ----------------------------------------------------


def job_outbox_relay(repository: Repository, broker: KafkaBroker) -> OutboxRelay:
    """The shared outbox relay over the jobs' outboxes (``announcing``): of the events a batch
    left there (crash, Kafka down), it publishes those of the callbacks the batch did cancel
    (their ``cancelled_in_batch`` is the job); the others never happened."""

    async def cancelled_by_their_job(jobs: list[Document]) -> list[Document]:
        keys = {UUID(entry[OutboxF.KEY]) for job in jobs for entry in job[ANNOUNCING]}
        cancelled = await repository.find_ids(keys, projection={F.CANCELLED_IN_BATCH: 1})
        return [
            {
                **job,
                ANNOUNCING: [
                    entry
                    for entry in job[ANNOUNCING]
                    if cancelled.get(UUID(entry[OutboxF.KEY]), {}).get(F.CANCELLED_IN_BATCH)
                    == job["_id"]
                ],
            }
            for job in jobs
        ]

    return OutboxRelay(
        repository.jobs,
        broker,
        field=ANNOUNCING,
        since=ANNOUNCING_SINCE,
        happened=cancelled_by_their_job,
    )


async def reap_loop(api: AdminApi, interval: float = 1.0) -> None:
    """Mark failed the jobs whose process stopped (no progress for :data:`STALE_JOB_AFTER`);
    never gives up."""

    async def reap() -> None:
        now = api.clock()
        if reaped := await api.repository.reap_jobs(now - STALE_JOB_AFTER, now):
            log.warning("bulk cancel jobs interrupted by a stopped process", jobs=reaped)

    await keep_running(reap, interval, "reaping bulk cancel jobs failed; will retry")
