"""Entry point of the routing-sim service."""

from callback_shared.runtime import ServiceRuntime, run_service
from callback_shared.settings import RoutingSimSettings, load_settings

SERVICE = "routing-sim"


def build(runtime: ServiceRuntime) -> None:
    """Wire the service's subscribers and background loops onto the runtime."""


def main() -> None:
    run_service(SERVICE, load_settings(RoutingSimSettings), build)
