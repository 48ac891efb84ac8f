"""Entry point of the admin-api service."""

from callback_shared.runtime import ServiceRuntime, run_service
from callback_shared.settings import AdminApiSettings, load_settings

SERVICE = "admin-api"


def build(runtime: ServiceRuntime) -> None:
    """Wire the service's subscribers and background loops onto the runtime."""


def main() -> None:
    run_service(SERVICE, load_settings(AdminApiSettings), build)
