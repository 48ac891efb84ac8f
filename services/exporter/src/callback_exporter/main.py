"""Entry point of the exporter service."""

from callback_shared.runtime import ServiceRuntime, run_service
from callback_shared.settings import ExporterSettings, load_settings

SERVICE = "exporter"


def build(runtime: ServiceRuntime) -> None:
    """Wire the service's subscribers and background loops onto the runtime."""


def main() -> None:
    run_service(SERVICE, load_settings(ExporterSettings), build)
