"""Entry point of the state-tracker service."""

from callback_shared.mongo import CALLBACKS, SERVICES
from callback_shared.runtime import ServiceRuntime, run_service
from callback_shared.settings import load_settings

from callback_state_tracker.settings import StateTrackerSettings
from callback_state_tracker.tracker import StateTracker

SERVICE = "state-tracker"


def build(runtime: ServiceRuntime) -> None:
    settings = runtime.settings
    assert isinstance(settings, StateTrackerSettings)
    tracker = StateTracker(runtime.db[CALLBACKS], runtime.db[SERVICES], runtime.broker, settings)
    runtime.consume_batches(
        settings.topic_routing_events,
        settings.state_tracker_group_id,
        settings.state_tracker_batch_size,
        tracker.handle_batch,
    )


def main() -> None:
    run_service(SERVICE, load_settings(StateTrackerSettings), build)
