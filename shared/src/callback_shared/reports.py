"""The Cancellation Summary Report's entries: the contract between the exporter, which writes
them, and admin-api, which reads them.

Every cancellation, every refused cancellation and every cancel asked of routing (still waiting
for its answer) is a lifecycle event
(:attr:`~callback_shared.models.LifecycleEventKind.CANCELLED`,
:attr:`~callback_shared.models.LifecycleEventKind.CANCELLATION_REFUSED`,
:attr:`~callback_shared.models.LifecycleEventKind.CANCEL_REQUESTED`) carrying the actor, the
batch (``None`` for a single cancel), the previous state and the reason. The exporter keeps one
**entry** per (actor, batch, callback) in the :data:`~callback_shared.mongo.CANCELLATION_REPORT`
collection (indexes: :data:`~callback_shared.mongo.CANCELLATION_REPORT_INDEXES`)::

    _id              a UUIDv5 of (actor, batch_id, callback_id), the same on every replay
    actor            the user who cancelled (or was refused)
    batch_id         UUID of the bulk cancel, or null for a single cancel
    callback_id      UUID
    status           a ReportStatus: REQUESTED (asked of routing, no answer yet) | CANCELLED
                     | REFUSED
    occurred_at      when it happened (the event's occurred_at, BSON date: milliseconds)
    service_name, customer_number, desired_time, previous_state, reason: as in the event
    event_id         the event the entry now shows (string)
    version          "<occurred_at, microseconds, UTC>Z|<event_id>": the newest event wins
    expire_at        occurred_at + retention (TTL index, expireAfterSeconds=0;
                     :class:`~callback_shared.settings.CancellationReportSettings`)

How the exporter writes them: ``callback_exporter.report``; how admin-api reads and renders them
(JSON, CSV): ``callback_admin_api.report``.
"""

from __future__ import annotations

from enum import StrEnum


class ReportStatus(StrEnum):
    #: asked of routing, which may hold the callback: its answer settles it
    REQUESTED = "REQUESTED"
    CANCELLED = "CANCELLED"
    REFUSED = "REFUSED"
