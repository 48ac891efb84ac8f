"""Entry point of the scheduler service."""

from callback_shared.runtime import ServiceRuntime, run_service
from callback_shared.settings import load_settings

from callback_scheduler.dispatcher import Dispatcher
from callback_scheduler.reclaim import Reclaimer
from callback_scheduler.settings import SchedulerSettings

SERVICE = "scheduler"


def build(runtime: ServiceRuntime) -> None:
    settings = runtime.settings
    assert isinstance(settings, SchedulerSettings)
    reclaimer = Reclaimer(runtime.db, runtime.broker, settings)
    dispatcher = Dispatcher(runtime.db, runtime.broker, settings, reclaimer=reclaimer)

    @runtime.on_ready
    async def start_dispatching(runtime: ServiceRuntime) -> None:
        runtime.log.info("dispatcher starting", replica=dispatcher.replica)
        runtime.spawn(dispatcher.run(), "dispatcher")

    @runtime.on_stop
    async def stop_dispatching(runtime: ServiceRuntime) -> None:
        dispatcher.stop()
        await runtime.join("dispatcher")


def main() -> None:
    run_service(SERVICE, load_settings(SchedulerSettings), build)
