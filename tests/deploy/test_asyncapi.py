"""docs/asyncapi.json, the AsyncAPI 3.0 document of the Kafka topics: current, structurally sound,
and its message schemas accept the events the services really publish (no infrastructure)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from callback_dev.asyncapi import asyncapi_document
from callback_shared.models import (
    CallbackType,
    DeadLetter,
    DueCallback,
    Event,
    LifecycleEvent,
    LifecycleEventKind,
    RoutingCommand,
    RoutingCommandKind,
    RoutingEvent,
    RoutingEventKind,
)
from callback_shared.settings import PlatformSettings
from callback_shared.states import CallbackState
from jsonschema import Draft7Validator, FormatChecker, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tests.deploy import reference
from tests.deploy.conftest import REPO

PUBLISHED = REPO / "docs" / "asyncapi.json"
#: the generated document, as the code says it (the reference checks the text of the file)
DOCUMENT = reference.asyncapi()
URI = "urn:callback-platform:asyncapi"
#: AsyncAPI 3.0: keys of components and operations
COMPONENT_KEY = re.compile(r"^[a-zA-Z0-9.\-_]+$")

CALLBACK = uuid4()
NOW = datetime(2025, 3, 4, 10, 30, tzinfo=UTC)

#: one real event per channel, as the services build them
EVENTS: dict[str, Event | DeadLetter] = {
    "dueCallbacks": DueCallback(
        callback_id=CALLBACK,
        service_name="billing",
        customer_number="+14155550100",
        type=CallbackType.SCHEDULED,
        desired_time=NOW,
        priority=5,
        attempt=1,
    ),
    "routingEvents": RoutingEvent(
        callback_id=CALLBACK,
        kind=RoutingEventKind.QUEUED,
        service_name="billing",
        attempt=1,
        sequence=0,
        position_in_queue=3,
        estimated_wait_seconds=42.5,
        diagnostic_data={"queue": "vq_billing"},
    ),
    "routingCommands": RoutingCommand(
        callback_id=CALLBACK,
        kind=RoutingCommandKind.CANCEL,
        service_name="billing",
        attempt=1,
        reason="cancelled by an administrator",
    ),
    "lifecycleEvents": LifecycleEvent(
        callback_id=CALLBACK,
        kind=LifecycleEventKind.CANCELLATION_REFUSED,
        service_name="billing",
        customer_number="+14155550100",
        desired_time=NOW,
        state=CallbackState.PROCESSING,
        previous_state=CallbackState.PROCESSING,
        actor="supervisor1",
        batch_id=uuid4(),
        reason="PROCESSING",
    ),
    "deadLetters": DeadLetter(
        source_topic="callbacks.routing-events",
        partition=2,
        offset=1234,
        key=str(CALLBACK),
        payload='{"kind": "TELEPORTED"}',
        reason="malformed routing event",
    ),
}

TOPIC_SETTINGS = {
    "dueCallbacks": "topic_due_callbacks",
    "routingEvents": "topic_routing_events",
    "routingCommands": "topic_routing_commands",
    "lifecycleEvents": "topic_lifecycle_events",
    "deadLetters": "topic_dead_letter",
}


def resolve(ref: str) -> Any:
    """A local ``#/...`` reference of the document, or KeyError."""
    assert ref.startswith("#/"), ref
    node: Any = DOCUMENT
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def payload_validator(channel: str) -> Draft7Validator:
    """The validator of the channel's message payload, ``$ref``s resolved in the document (the
    AsyncAPI default schema format is a superset of JSON Schema draft 7)."""
    (message_ref,) = (m["$ref"] for m in DOCUMENT["channels"][channel]["messages"].values())
    payload_ref = resolve(message_ref)["payload"]["$ref"]
    registry: Registry[Any] = Registry().with_resource(
        URI, Resource.from_contents(DOCUMENT, default_specification=DRAFT7)
    )
    schema = {"$ref": URI + payload_ref}
    Draft7Validator.check_schema(resolve(payload_ref))
    # every format jsonschema can check offline (uuid; date-time would need rfc3339-validator)
    return Draft7Validator(schema, registry=registry, format_checker=FormatChecker())


# --- current ----------------------------------------------------------------------------------


def test_the_published_document_is_current() -> None:
    assert PUBLISHED.exists(), "docs/asyncapi.json is missing: run `make docs`"
    assert json.loads(PUBLISHED.read_text(encoding="utf-8")) == DOCUMENT, (
        "docs/asyncapi.json is stale: run `make docs`"
    )


def test_the_document_is_derived_from_the_code_not_the_file() -> None:
    assert asyncapi_document(version=DOCUMENT["info"]["version"]) == DOCUMENT
    assert DOCUMENT["info"]["version"] == reference.release_version()


# --- the messages are the events --------------------------------------------------------------


@pytest.mark.parametrize("channel", list(EVENTS))
def test_the_message_schema_accepts_a_real_event(channel: str) -> None:
    event = EVENTS[channel].model_dump(mode="json")
    payload_validator(channel).validate(event)


@pytest.mark.parametrize("channel", list(EVENTS))
def test_the_message_schema_is_not_vacuous(channel: str) -> None:
    validator = payload_validator(channel)
    event = EVENTS[channel].model_dump(mode="json")
    for broken in ({**event, "event_id": "not a uuid"}, {**event, "occurred_at": 1741084200}):
        with pytest.raises(ValidationError):
            validator.validate(broken)
    if channel != "deadLetters":
        for broken in ({**event, "schema_version": 2}, {**event, "unknown": 1}):
            with pytest.raises(ValidationError):
                validator.validate(broken)
        with pytest.raises(ValidationError):
            validator.validate({k: v for k, v in event.items() if k != "callback_id"})


@pytest.mark.parametrize("channel", list(EVENTS))
def test_the_channel_carries_its_model(channel: str) -> None:
    (message,) = DOCUMENT["channels"][channel]["messages"].values()
    assert resolve(message["$ref"])["name"] == type(EVENTS[channel]).__name__


def test_every_event_schema_has_the_common_fields() -> None:
    for channel, event in EVENTS.items():
        if channel == "deadLetters":
            continue
        (message,) = DOCUMENT["channels"][channel]["messages"].values()
        payload = resolve(resolve(message["$ref"])["payload"]["$ref"])
        assert {"event_id", "schema_version", "occurred_at", "callback_id"} <= set(
            payload["properties"]
        ), type(event).__name__


def test_messages_are_json_keyed_by_callback_id() -> None:
    for name, message in DOCUMENT["components"]["messages"].items():
        assert message["contentType"] == "application/json", name
        key = message["bindings"]["kafka"]["key"]
        assert key["type"] == "string", name
        if name == "DeadLetter":
            assert "key of the parked message" in key["description"]
        else:
            assert key["format"] == "uuid" and "callback id" in key["description"], name
            key_of_event = next(e for e in EVENTS.values() if type(e).__name__ == name).key
            assert key_of_event == str(CALLBACK).encode()


# --- the topics -------------------------------------------------------------------------------


def test_channels_are_the_topic_settings_with_their_default_names() -> None:
    topics = {
        name: field.default
        for name, field in PlatformSettings.model_fields.items()
        if name.startswith("topic_") and isinstance(field.default, str)
    }
    addresses = {channel["address"] for channel in DOCUMENT["channels"].values()}
    assert addresses == set(topics.values())
    for channel, setting in TOPIC_SETTINGS.items():
        spec = DOCUMENT["channels"][channel]
        assert spec["address"] == PlatformSettings.model_fields[setting].default
        assert setting.upper() in spec["description"] and "configuration" in spec["description"]


def test_who_sends_and_who_receives() -> None:
    flows = {
        (op_id.split(".")[0], op["action"], op["channel"]["$ref"].rsplit("/", 1)[1])
        for op_id, op in DOCUMENT["operations"].items()
    }
    assert flows == {
        ("scheduler", "send", "dueCallbacks"),
        ("routing", "receive", "dueCallbacks"),
        ("routing", "send", "routingEvents"),
        ("state-tracker", "receive", "routingEvents"),
        ("admin-api", "send", "routingCommands"),
        ("scheduler", "send", "routingCommands"),
        ("state-tracker", "send", "routingCommands"),
        ("routing", "receive", "routingCommands"),
        ("state-tracker", "send", "lifecycleEvents"),
        ("admin-api", "send", "lifecycleEvents"),
        ("admin-api", "receive", "lifecycleEvents"),
        ("exporter", "receive", "lifecycleEvents"),
        ("routing-sim", "send", "deadLetters"),
        ("state-tracker", "send", "deadLetters"),
        ("exporter", "send", "deadLetters"),
    }


# --- structurally AsyncAPI 3.0 ----------------------------------------------------------------
# No JSON Schema of AsyncAPI 3.0 is installed (offline), so these check what the document relies
# on: the required fields, and that every reference resolves where 3.0 wants it to point.


def test_the_document_is_asyncapi_3() -> None:
    assert DOCUMENT["asyncapi"] == "3.0.0"
    assert set(DOCUMENT) <= {
        "asyncapi",
        "id",
        "info",
        "servers",
        "defaultContentType",
        "channels",
        "operations",
        "components",
    }
    assert isinstance(DOCUMENT["info"]["title"], str) and DOCUMENT["info"]["title"]
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", DOCUMENT["info"]["version"])
    for name, server in DOCUMENT["servers"].items():
        assert server["host"] and server["protocol"] == "kafka", name
        for variable in re.findall(r"\{(\w+)\}", server["host"]):
            assert variable in server["variables"], name


def test_every_reference_resolves() -> None:
    for ref in refs(DOCUMENT):
        try:
            resolve(ref)
        except KeyError:
            pytest.fail(f"{ref} does not resolve")


def test_channels_have_an_address_and_their_messages() -> None:
    for name, channel in DOCUMENT["channels"].items():
        assert COMPONENT_KEY.match(name), name
        assert isinstance(channel["address"], str) and channel["address"], name
        assert channel["messages"], name
        for message in channel["messages"].values():
            assert message["$ref"].startswith("#/components/messages/"), name
            assert "payload" in resolve(message["$ref"]), name


def test_operations_point_at_a_channel_and_its_messages() -> None:
    for name, operation in DOCUMENT["operations"].items():
        assert COMPONENT_KEY.match(name), name
        assert operation["action"] in {"send", "receive"}, name
        channel_ref = operation["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/"), name
        resolve(channel_ref)
        assert operation["messages"], name
        for message in operation["messages"]:
            # 3.0: an operation's messages are those of its channel, referenced there
            assert message["$ref"].startswith(channel_ref + "/messages/"), name
            resolve(message["$ref"])


def test_every_channel_is_sent_to_and_every_event_channel_is_read() -> None:
    for name in DOCUMENT["channels"]:
        actions = {
            op["action"]
            for op in DOCUMENT["operations"].values()
            if op["channel"]["$ref"] == f"#/channels/{name}"
        }
        assert "send" in actions, name
        # dead letters are read by operators, not by a service
        assert name == "deadLetters" or "receive" in actions, name


def test_components_are_well_formed() -> None:
    components = DOCUMENT["components"]
    assert set(components) <= {"schemas", "messages"}
    for kind in ("schemas", "messages"):
        for key in components[kind]:
            assert COMPONENT_KEY.match(key), (kind, key)
    for name, schema in components["schemas"].items():
        assert "$defs" not in schema, f"{name}: $defs must be hoisted into components.schemas"
        Draft7Validator.check_schema(schema)
    for name, message in components["messages"].items():
        assert message["payload"]["$ref"] == f"#/components/schemas/{name}"
        assert message["bindings"]["kafka"]["bindingVersion"] == "0.5.0"
