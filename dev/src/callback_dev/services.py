"""Each service's settings class, by service name (its directory under ``services/``).

The development tooling reads them: ``callback-infra`` (each service's port, the variables it
hands to the processes it starts) and the generated docs (docs/configuration.md).
"""

from __future__ import annotations

from callback_admin_api.settings import AdminApiSettings
from callback_exporter.settings import ExporterSettings
from callback_routing_sim.settings import RoutingSimSettings
from callback_scheduler.settings import SchedulerSettings
from callback_shared.settings import PlatformSettings
from callback_state_tracker.settings import StateTrackerSettings

SETTINGS_CLASSES: dict[str, type[PlatformSettings]] = {
    "admin-api": AdminApiSettings,
    "exporter": ExporterSettings,
    "routing-sim": RoutingSimSettings,
    "scheduler": SchedulerSettings,
    "state-tracker": StateTrackerSettings,
}
