import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest
from callback_shared.models import (
    CallbackType,
    CreateCallback,
    DueCallback,
    LifecycleEvent,
    LifecycleEventKind,
    RoutingEvent,
    RoutingEventKind,
    expire_at,
)
from callback_shared.states import CallbackState
from pydantic import ValidationError


def test_events_round_trip_through_json_and_are_keyed_by_callback_id() -> None:
    callback_id = uuid4()
    due = DueCallback(
        callback_id=callback_id,
        service_name="billing",
        customer_number="+14155550100",
        type=CallbackType.SCHEDULED,
        desired_time=datetime(2026, 11, 25, 10, tzinfo=UTC),
        attempt=1,
    )
    again = DueCallback.model_validate_json(due.model_dump_json())
    assert again == due
    assert due.key == str(callback_id).encode()
    assert due.schema_version == 1 and due.occurred_at.tzinfo is not None


def test_times_are_normalised_to_utc_and_naive_times_refused() -> None:
    paris = timezone(timedelta(hours=1))
    cmd = CreateCallback(
        type=CallbackType.SCHEDULED,
        service_name="billing",
        customer_number="+14155550100",
        desired_time=datetime(2026, 11, 25, 11, tzinfo=paris),
    )
    assert cmd.desired_time == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert cmd.desired_time.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError, match="time zone"):
        CreateCallback(
            type=CallbackType.SCHEDULED,
            service_name="billing",
            customer_number="+14155550100",
            desired_time=datetime(2026, 11, 25, 11),
        )


def test_unknown_fields_and_kinds_are_refused() -> None:
    payload = {
        "callback_id": str(uuid4()),
        "kind": "TELEPORTED",
        "service_name": "billing",
        "attempt": 1,
        "sequence": 0,
    }
    with pytest.raises(ValidationError, match="kind"):
        RoutingEvent.model_validate_json(json.dumps(payload))
    payload["kind"] = RoutingEventKind.QUEUED
    payload["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        RoutingEvent.model_validate(payload)


def test_lifecycle_event_carries_batch_actor_and_previous_state() -> None:
    event = LifecycleEvent(
        callback_id=uuid4(),
        kind=LifecycleEventKind.CANCELLATION_REFUSED,
        service_name="billing",
        customer_number="+14155550100",
        desired_time=datetime(2026, 11, 25, 10, tzinfo=UTC),
        state=CallbackState.PROCESSING,
        previous_state=CallbackState.PROCESSING,
        actor="alice",
        batch_id=uuid4(),
        reason="PROCESSING",
    )
    assert LifecycleEvent.model_validate_json(event.model_dump_json()) == event


def test_records_expire_fourteen_days_after_desired_time() -> None:
    desired = datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert expire_at(desired) == datetime(2026, 12, 9, 10, tzinfo=UTC)
