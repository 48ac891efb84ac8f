"""Entry point of the scheduler service."""

from callback_shared.runtime import ServiceRuntime, run_service
from callback_shared.settings import SchedulerSettings, load_settings

SERVICE = "scheduler"


def build(runtime: ServiceRuntime) -> None:
    """Wire the service's subscribers and background loops onto the runtime."""


def main() -> None:
    run_service(SERVICE, load_settings(SchedulerSettings), build)
