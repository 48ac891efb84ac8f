"""Applies batches of lifecycle events to the Cancellation Summary Report.

For one batch: parse each message (a malformed or unknown one goes to the dead-letter topic with
the reason), set aside the events that make no report entry (other kinds, no actor, already
expired), write the rest with one bulk of conditional upserts
(:func:`callback_exporter.report.record_cancellations`), publish the dead letters, and only then
let the consumer commit the batch's offsets. If anything fails in between, the batch is
delivered again and applied again: the writes are idempotent and order-insensitive, so the report
is the same as if it had gone through once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import ConsumerRecord
from callback_shared.kafka import dead_letter, park
from callback_shared.models import DeadLetter, LifecycleEvent, utcnow
from callback_shared.mongo import Document
from faststream.kafka import KafkaBroker
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError
from pymongo.asynchronous.collection import AsyncCollection

from callback_exporter.report import ignore_reason, record_cancellations, report_status
from callback_exporter.settings import ExporterSettings

log = structlog.get_logger("exporter")

APPLIED = Counter(
    "callback_exporter_events_applied_total",
    "Cancellation lifecycle events applied to the report",
    ["status"],
)
IGNORED = Counter(
    "callback_exporter_events_ignored_total",
    "Lifecycle events that make no report entry (other kinds, no actor, expired)",
    ["reason"],
)
REPORT_LAG = Gauge(
    "callback_exporter_report_lag_seconds",
    "Now minus occurred_at of the newest event of the last batch applied to the report",
)
BATCH_SECONDS = Histogram("callback_exporter_batch_seconds", "Time to apply one batch")


class Exporter:
    def __init__(
        self,
        report: AsyncCollection[Document],
        broker: KafkaBroker,
        settings: ExporterSettings,
    ) -> None:
        self.report = report
        self.broker = broker
        self.settings = settings
        self.retention = settings.report_retention

    async def handle_batch(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        started = time.perf_counter()
        events: list[LifecycleEvent] = []
        dead: list[DeadLetter] = []
        for record in records:
            try:
                events.append(LifecycleEvent.model_validate_json(record.value or b""))
            except ValidationError as exc:
                dead.append(dead_letter(record, f"malformed lifecycle event: {exc}"))
        now = utcnow()
        reportable: list[LifecycleEvent] = []
        for event in events:
            reason = ignore_reason(event, self.retention, now)
            if reason is None:
                reportable.append(event)
            else:
                IGNORED.labels(reason.value).inc()
        await record_cancellations(self.report, reportable, self.retention, now=now)
        for event in reportable:
            APPLIED.labels(report_status(event).value).inc()
        if reportable:
            newest = max(event.occurred_at for event in reportable)
            REPORT_LAG.set(max(0.0, (utcnow() - newest).total_seconds()))
        await self._publish(dead)
        BATCH_SECONDS.observe(time.perf_counter() - started)

    async def _publish(self, dead: list[DeadLetter]) -> None:
        await park(self.broker, self.settings.topic_dead_letter, dead)
