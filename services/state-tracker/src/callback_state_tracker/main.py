"""Entry point of the state-tracker service."""

import asyncio
from typing import Any

from callback_shared.kafka import raw_body
from callback_shared.mongo import CALLBACKS, SERVICES
from callback_shared.runtime import ServiceRuntime, run_service
from callback_shared.settings import StateTrackerSettings, load_settings
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage

from callback_state_tracker.tracker import StateTracker

SERVICE = "state-tracker"
RETRY_PAUSE_SECONDS = 1.0


def build(runtime: ServiceRuntime) -> None:
    settings = runtime.settings
    assert isinstance(settings, StateTrackerSettings)
    tracker = StateTracker(runtime.db[CALLBACKS], runtime.db[SERVICES], runtime.broker, settings)

    @runtime.broker.subscriber(
        settings.topic_routing_events,
        group_id=settings.state_tracker_group_id,
        auto_offset_reset="earliest",
        batch=True,
        max_records=settings.state_tracker_batch_size,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=raw_body,
    )
    async def apply_routing_events(body: Any, message: KafkaMessage) -> None:
        """Any MongoDB or Kafka error raises: the batch is not committed and comes again
        (after a pause, so an outage is not hammered)."""
        try:
            await tracker.handle_batch(message.raw_message)
        except Exception:
            runtime.log.exception("batch not applied; it will be delivered again")
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
            raise


def main() -> None:
    run_service(SERVICE, load_settings(StateTrackerSettings), build)
