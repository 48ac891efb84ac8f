"""Entry point of the routing-sim service: due callbacks and routing commands in, routing events
out.

The edge only: two FastStream subscribers feeding
:class:`~callback_routing_sim.simulation.Simulation` and a publisher writing its events to Kafka.

- ``topic_due_callbacks`` (:class:`DueCallback`): a due callback's offset is committed once its
  QUEUED event is on Kafka (or at once when it is ignored: a duplicate, a cancelled callback, a
  withdrawn or superseded attempt).
- ``topic_routing_commands`` (:class:`RoutingCommand`, keyed by callback id): CANCEL a callback
  (routing never routes it again and answers CANCELLED, or CANCEL_REFUSED once an agent was
  reached; the offset is committed once the answer is on Kafka), WITHDRAW an attempt the platform
  closed as lost (dropped if still held and not on a call; no answer). The two topics are not
  ordered together: a cancel read before the callback's due callback still wins. The contract is
  the one a real ORS/URS adapter implements; the simulation module describes it in full.

Both subscribers share the consumer group ``ROUTING_SIM_GROUP_ID``; a message that cannot be read
is parked on the dead-letter topic and skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import ConsumerRecord
from callback_shared.kafka import dead_letter, event_messages, park, publish_all, raw_body
from callback_shared.models import DueCallback, RoutingCommand, RoutingEvent
from callback_shared.runtime import ServiceRuntime, run_service
from callback_shared.settings import load_settings
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel, ValidationError

from callback_routing_sim.profiles import load_profiles
from callback_routing_sim.settings import RoutingSimSettings
from callback_routing_sim.simulation import Publish, Simulation

SERVICE = "routing-sim"


def kafka_publisher(broker: KafkaBroker, topic: str) -> Publish:
    """Send a batch in order without waiting between messages, then wait for every ack."""

    async def publish(events: Sequence[RoutingEvent]) -> None:
        await publish_all(broker, event_messages(topic, events))

    return publish


def build(runtime: ServiceRuntime) -> None:
    """Wire the service's subscribers and background loops onto the runtime."""
    settings = runtime.settings
    if not isinstance(settings, RoutingSimSettings):
        raise TypeError(f"{SERVICE} needs RoutingSimSettings, not {type(settings).__name__}")
    simulation = Simulation(
        load_profiles(settings),
        settings.routing_sim_seed,
        kafka_publisher(runtime.broker, settings.topic_routing_events),
    )

    @runtime.broker.subscriber(
        settings.topic_due_callbacks,
        group_id=settings.routing_sim_group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=raw_body,
        title="routing-sim/due-callbacks",
        description="Due callbacks to route (DueCallback JSON).",
    )
    async def on_due_callback(body: bytes, message: KafkaMessage) -> None:
        try:
            due = DueCallback.model_validate_json(body)
        except ValidationError as exc:
            await park_malformed(message, DueCallback, exc)
            return
        await simulation.accept(due)

    @runtime.broker.subscriber(
        settings.topic_routing_commands,
        group_id=settings.routing_sim_group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=raw_body,
        title="routing-sim/routing-commands",
        description="Commands to routing (RoutingCommand JSON): CANCEL a callback (answered "
        "CANCELLED or CANCEL_REFUSED), WITHDRAW a lost attempt.",
    )
    async def on_routing_command(body: bytes, message: KafkaMessage) -> None:
        try:
            command = RoutingCommand.model_validate_json(body)
        except ValidationError as exc:
            await park_malformed(message, RoutingCommand, exc)
            return
        await simulation.handle_command(command)

    async def park_malformed(
        message: KafkaMessage, model: type[BaseModel], exc: ValidationError
    ) -> None:
        record = message.raw_message
        assert isinstance(record, ConsumerRecord)
        reason = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()
        )
        dead = dead_letter(record, f"not a {model.__name__}: {reason}")
        await park(runtime.broker, settings.topic_dead_letter, [dead])

    async def start_simulation(runtime: ServiceRuntime) -> None:
        runtime.spawn(simulation.run(), name="routing-sim-outbox")

    runtime.on_ready(start_simulation)


def main() -> None:
    run_service(SERVICE, load_settings(RoutingSimSettings), build)
