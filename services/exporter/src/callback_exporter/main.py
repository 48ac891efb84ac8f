"""Entry point of the exporter service: lifecycle events -> the Cancellation Summary Report.

One consumer group (``EXPORTER_GROUP_ID``) reads the lifecycle topic from its start in batches;
a batch's offsets are committed only after it was applied, so a crash (even ``kill -9``)
delivers it again, harmlessly. A new group id replays the whole topic and rebuilds the same
report.
"""

from callback_shared.mongo import CANCELLATION_REPORT, CANCELLATION_REPORT_INDEXES
from callback_shared.runtime import ServiceRuntime, run_service
from callback_shared.settings import load_settings

from callback_exporter.exporter import Exporter
from callback_exporter.settings import ExporterSettings

SERVICE = "exporter"


def build(runtime: ServiceRuntime) -> None:
    """Wire the lifecycle-event consumer onto the runtime."""
    settings = runtime.settings
    assert isinstance(settings, ExporterSettings)
    runtime.create_indexes({CANCELLATION_REPORT: CANCELLATION_REPORT_INDEXES})
    exporter = Exporter(runtime.db[CANCELLATION_REPORT], runtime.broker, settings)
    runtime.consume_batches(
        settings.topic_lifecycle_events,
        settings.exporter_group_id,
        settings.exporter_batch_size,
        exporter.handle_batch,
    )


def main() -> None:
    run_service(SERVICE, load_settings(ExporterSettings), build)
