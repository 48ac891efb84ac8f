"""The AsyncAPI 3.0 document of the platform's Kafka topics, built from the code.

Channels are the topics of :class:`~callback_shared.settings.PlatformSettings` (their default
names; every name is configuration), message payloads are the JSON schemas of the event models
of :mod:`callback_shared.models`, and operations say which service sends and which receives each
topic. ``make docs`` writes it to ``docs/asyncapi.json`` (``tests/deploy/reference.py``).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any, Literal

from callback_exporter.settings import ExporterSettings
from callback_shared.kafka import JSON_HEADERS
from callback_shared.models import (
    DeadLetter,
    DueCallback,
    LifecycleEvent,
    RoutingCommand,
    RoutingEvent,
)
from callback_shared.settings import PlatformSettings
from callback_state_tracker.settings import StateTrackerSettings
from pydantic import BaseModel

ASYNCAPI_VERSION = "3.0.0"
#: https://github.com/asyncapi/bindings/tree/master/kafka
KAFKA_BINDING_VERSION = "0.5.0"
SCHEMA_REF = "#/components/schemas/{model}"
DOCUMENT_ID = "urn:callback-platform:events"

CALLBACK_ID_KEY = (
    "The callback id (a UUID) as UTF-8 text: one callback's events share a partition and stay "
    "in order."
)
ORIGINAL_KEY = (
    "The key of the parked message (on the platform's topics its callback id), as UTF-8 text; "
    "absent when that message had none."
)


@dataclass(frozen=True)
class Topic:
    """One channel: the topic setting naming it and the model of its messages."""

    channel: str
    setting: str
    model: type[BaseModel]
    key: str
    key_format: str | None


TOPICS = [
    Topic("dueCallbacks", "topic_due_callbacks", DueCallback, CALLBACK_ID_KEY, "uuid"),
    Topic("routingEvents", "topic_routing_events", RoutingEvent, CALLBACK_ID_KEY, "uuid"),
    Topic("routingCommands", "topic_routing_commands", RoutingCommand, CALLBACK_ID_KEY, "uuid"),
    Topic("lifecycleEvents", "topic_lifecycle_events", LifecycleEvent, CALLBACK_ID_KEY, "uuid"),
    Topic("deadLetters", "topic_dead_letter", DeadLetter, ORIGINAL_KEY, None),
]


@dataclass(frozen=True)
class Flow:
    """One operation: a service sending to or receiving from a channel."""

    service: str
    action: Literal["send", "receive"]
    channel: str
    summary: str
    #: the settings field holding the consumer group, for receive operations that have one
    group: tuple[type[PlatformSettings], str] | None = None

    @property
    def operation_id(self) -> str:
        return f"{self.service}.{self.action}.{self.channel}"


# Who sends and who receives each topic, as the services use their topic settings
# (services/*/src: ``settings.topic_*``).
FLOWS = [
    Flow(
        "scheduler",
        "send",
        "dueCallbacks",
        "The leading scheduler emits each callback when it is due (again, with the same "
        "event_id, if routing has not taken it after SCHEDULER_REDISPATCH_AFTER_SECONDS).",
    ),
    Flow(
        "routing",
        "receive",
        "dueCallbacks",
        "Routing (ORS/URS; routing-sim here) takes due callbacks to queue and dial them.",
    ),
    Flow(
        "routing",
        "send",
        "routingEvents",
        "Routing reports each step of an attempt: queued, position, routing, processing, "
        "completed, abandoned, dial failed; HELD at least every few seconds while an attempt is "
        "queued or routing (silence past the service's routing_silence_seconds makes the "
        "platform reclaim the attempt); and answers each CANCEL command with CANCELLED (nothing "
        "dialled, agent released; it never routes that callback again, whatever the attempt) or "
        "CANCEL_REFUSED (already connected to an agent).",
    ),
    Flow(
        "admin-api",
        "send",
        "routingCommands",
        "A cancel of a callback routing may hold (due, QUEUED or ROUTING) is a CANCEL command, "
        "through the callback's outbox; the record shows it pending until routing answers.",
    ),
    Flow(
        "scheduler",
        "send",
        "routingCommands",
        "The leading scheduler sends WITHDRAW for an attempt it reclaimed as lost (routing went "
        "silent), and sends an unanswered CANCEL again.",
    ),
    Flow(
        "state-tracker",
        "send",
        "routingCommands",
        "The state-tracker sends WITHDRAW when routing takes (QUEUED) an attempt the platform "
        "has closed (a cancelled callback, a reclaimed attempt).",
    ),
    Flow(
        "routing",
        "receive",
        "routingCommands",
        "Routing carries out the platform's commands: CANCEL (answered on the routing events "
        "topic, even for a callback it never received: a due callback arriving after its "
        "cancel is never routed) and WITHDRAW (drop that attempt, dial nothing, no answer). "
        "Routing never holds two attempts of one callback: a newer attempt replaces an older "
        "one not yet connected.",
    ),
    Flow(
        "state-tracker",
        "receive",
        "routingEvents",
        "The state-tracker applies routing events to the callback records, in batches.",
        (StateTrackerSettings, "state_tracker_group_id"),
    ),
    Flow(
        "state-tracker",
        "send",
        "lifecycleEvents",
        "The state-tracker announces every state change a routing event made (STATE_CHANGED), "
        "and each cancel routing's answer settled (CANCELLED or CANCELLATION_REFUSED, with the "
        "request's actor and batch_id).",
    ),
    Flow(
        "admin-api",
        "send",
        "lifecycleEvents",
        "Admin commands announce their change through an outbox (the callback's document, or a "
        "bulk cancel job's): CREATED, RECREATED, RESCHEDULED, every CANCELLED, CANCEL_REQUESTED "
        "(asked of routing) and CANCELLATION_REFUSED, with the actor and, for a bulk cancel, "
        "the batch_id.",
    ),
    Flow(
        "admin-api",
        "receive",
        "lifecycleEvents",
        "Each admin-api replica reads the whole topic from its end, with no consumer group (every "
        "replica sees every event), only while a client is connected, and streams the events of "
        "each client's granted services to it as Server-Sent Events "
        "(GET /api/v1/callbacks/events).",
    ),
    Flow(
        "exporter",
        "receive",
        "lifecycleEvents",
        "The exporter builds the Cancellation Summary Report from the cancellations, the cancels "
        "asked of routing and the refused cancellations.",
        (ExporterSettings, "exporter_group_id"),
    ),
    *(
        Flow(
            consumer,
            "send",
            "deadLetters",
            f"The {consumer} parks a message it cannot use, with the reason.",
        )
        for consumer in ("routing-sim", "state-tracker", "exporter")
    ),
]


# info.version is the platform release: the Helm chart's appVersion, the images' default tag
# (deploy/helm/callback-platform/Chart.yaml), which tests/deploy/reference.py passes in when it
# writes docs/asyncapi.json. This package cannot read the chart (it is installed as a wheel in
# the images), so without one it falls back to its own version, bumped in step today (0.1.0).
def platform_version() -> str:
    """The version of the installed ``callback-shared`` distribution."""
    return importlib.metadata.version("callback-shared")


def _hoist(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    if schemas.setdefault(name, schema) != schema:
        raise ValueError(f"two different JSON schemas are named {name!r}")


def _schemas() -> dict[str, Any]:
    """Every message payload schema and the schemas they refer to, by name."""
    schemas: dict[str, Any] = {}
    for topic in TOPICS:
        schema = topic.model.model_json_schema(ref_template=SCHEMA_REF)
        for name, definition in schema.pop("$defs", {}).items():
            _hoist(schemas, name, definition)
        _hoist(schemas, topic.model.__name__, schema)
    return schemas


def _message(topic: Topic) -> dict[str, Any]:
    name = topic.model.__name__
    key: dict[str, Any] = {"type": "string", "description": topic.key}
    if topic.key_format:
        key["format"] = topic.key_format
    return {
        "name": name,
        "title": name,
        "summary": " ".join((topic.model.__doc__ or name).split()),
        "contentType": JSON_HEADERS["content-type"],
        "headers": {
            "type": "object",
            "properties": {
                header: {"type": "string", "const": value} for header, value in JSON_HEADERS.items()
            },
        },
        "payload": {"$ref": SCHEMA_REF.format(model=name)},
        "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _channel(topic: Topic) -> dict[str, Any]:
    field = PlatformSettings.model_fields[topic.setting]
    address = field.get_default()
    name = topic.model.__name__
    return {
        "address": address,
        "title": address,
        "description": f"{field.description} The topic name is configuration: "
        f"{topic.setting.upper()} (default `{address}`).",
        "messages": {name: {"$ref": f"#/components/messages/{name}"}},
    }


def _operation(flow: Flow, topic: Topic) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": flow.action,
        "channel": {"$ref": f"#/channels/{flow.channel}"},
        "title": f"{flow.service} {flow.action}s {topic.model.__name__}",
        "summary": flow.summary,
        "messages": [{"$ref": f"#/channels/{flow.channel}/messages/{topic.model.__name__}"}],
    }
    if flow.group is not None:
        settings, field_name = flow.group
        group = settings.model_fields[field_name]
        operation["bindings"] = {
            "kafka": {
                "groupId": {
                    "type": "string",
                    "default": group.get_default(),
                    "description": f"{field_name.upper()}: {group.description}",
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        }
    return operation


def asyncapi_document(version: str | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of every topic: ``version`` is ``info.version`` (the platform
    release; the installed ``callback-shared`` version when not given)."""
    topics = {topic.channel: topic for topic in TOPICS}
    bootstrap = PlatformSettings.model_fields["kafka_bootstrap_servers"]
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": DOCUMENT_ID,
        "info": {
            "title": "Callback platform events",
            "version": version or platform_version(),
            "description": "The Kafka topics of the callback platform. Every message is JSON "
            "validated by the shared pydantic models (callback_shared.models); every event "
            "carries event_id, schema_version and occurred_at and is keyed by its callback id, "
            "so one callback's events stay in order. Topic names are configuration. Consumers "
            "de-duplicate by event_id: an event may be delivered twice, never lost.",
        },
        "defaultContentType": JSON_HEADERS["content-type"],
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The Kafka cluster (KAFKA_BOOTSTRAP_SERVERS).",
                "variables": {"bootstrap": {"description": bootstrap.description}},
            }
        },
        "channels": {topic.channel: _channel(topic) for topic in TOPICS},
        "operations": {flow.operation_id: _operation(flow, topics[flow.channel]) for flow in FLOWS},
        "components": {
            "messages": {topic.model.__name__: _message(topic) for topic in TOPICS},
            "schemas": _schemas(),
        },
    }
