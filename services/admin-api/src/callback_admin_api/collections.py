"""admin-api's own MongoDB collections and their indexes, created when admin-api starts.

The shared ones it also uses (``callbacks``, ``services``, the ``cancellation_report`` it reads)
are named in :mod:`callback_shared.mongo`.
"""

from __future__ import annotations

from callback_shared.mongo import (
    CANCELLATION_REPORT,
    CANCELLATION_REPORT_INDEXES,
    CollectionIndexes,
)
from pymongo import ASCENDING, IndexModel

#: Scheduling slots of each service: ``_id`` = ``<service>|<slot start, UTC ISO>``, ``taken`` and
#: the ids of the callbacks holding a place (``holders``), so a place is taken atomically.
SLOTS = "slots"
#: Accepted create requests per service, customer number and local day (request throttling).
REQUEST_COUNTERS = "request_counters"
#: Bulk cancel jobs (``_id`` = batch id): progress of a large cancel.
BULK_CANCEL_JOBS = "bulk_cancel_jobs"
#: The create guards' counts of open callbacks, one document per service and one per service and
#: customer number (``_id`` = :func:`~callback_admin_api.repository.open_count_id`): ``open``,
#: never below the open callbacks it counts, the creates ``admitting`` (recent, not yet stored
#: perhaps) and a version ``v`` for the recount (see ``Repository.admit_open``).
OPEN_COUNTS = "open_counts"

#: Indexes of the ``slots`` collection: availability of a service's day; slots expire with the
#: callbacks they held.
SLOT_INDEXES: list[IndexModel] = [
    IndexModel([("service_name", ASCENDING), ("start", ASCENDING)], name="by_service_start"),
    IndexModel([("expire_at", ASCENDING)], name="slot_retention_ttl", expireAfterSeconds=0),
]

#: Indexes of the ``request_counters`` collection: a counter lives until its day is over.
REQUEST_COUNTER_INDEXES: list[IndexModel] = [
    IndexModel([("expire_at", ASCENDING)], name="counter_retention_ttl", expireAfterSeconds=0),
]


#: Indexes of the ``open_counts`` collection: a count lives as long as the callbacks it counted.
#: ``service`` finds a service's counts when its settings change.
OPEN_COUNT_INDEXES: list[IndexModel] = [
    IndexModel([("expire_at", ASCENDING)], name="open_count_retention_ttl", expireAfterSeconds=0),
    IndexModel([("service", ASCENDING)], name="open_count_by_service"),
]


#: A bulk cancel job's outbox: the CANCELLED events of the batch in progress, written before
#: the batch's cancellations and removed once published (``bulk.cancel_batch``).
ANNOUNCING = "announcing"
ANNOUNCING_SINCE = "announcing_since"

#: Indexes of the ``bulk_cancel_jobs`` collection: a job is kept 14 days after it started; the
#: relay finds the jobs with events waiting, and the running jobs without progress, without
#: reading every job (a job's outbox can hold hundreds of events).
BULK_CANCEL_JOB_INDEXES: list[IndexModel] = [
    IndexModel([("expire_at", ASCENDING)], name="bulk_job_retention_ttl", expireAfterSeconds=0),
    IndexModel([(ANNOUNCING_SINCE, ASCENDING)], name="bulk_job_announcing", sparse=True),
    IndexModel([("state", ASCENDING), ("updated_at", ASCENDING)], name="bulk_job_progress"),
]

#: What admin-api creates at start besides the callbacks collection's indexes: its own
#: collections', and the report's (its query runs on ``report_by_actor_occurred_at``).
ADMIN_INDEXES: CollectionIndexes = {
    SLOTS: SLOT_INDEXES,
    REQUEST_COUNTERS: REQUEST_COUNTER_INDEXES,
    OPEN_COUNTS: OPEN_COUNT_INDEXES,
    BULK_CANCEL_JOBS: BULK_CANCEL_JOB_INDEXES,
    CANCELLATION_REPORT: CANCELLATION_REPORT_INDEXES,
}
