"""Entry point of the state-tracker service."""

from callback_shared.runtime import ServiceRuntime, run_service
from callback_shared.settings import StateTrackerSettings, load_settings

SERVICE = "state-tracker"


def build(runtime: ServiceRuntime) -> None:
    """Wire the service's subscribers and background loops onto the runtime."""


def main() -> None:
    run_service(SERVICE, load_settings(StateTrackerSettings), build)
