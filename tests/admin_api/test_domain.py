"""The plain domain functions: office hours and slots, numbers, ranges, plans, cursors, rules."""

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from callback_admin_api.listing import (
    MAX_STREAMS,
    InvalidCriteria,
    ListCriteria,
    PageCursor,
    RangePreset,
    list_filter,
    query_plan,
    resolve_range,
)
from callback_admin_api.numbers import InvalidNumber, normalise_customer_number
from callback_admin_api.repository import next_window
from callback_admin_api.rules import completion_time, keeps_name_recording
from callback_admin_api.schedule import (
    is_open,
    is_slot_start,
    local_date,
    openings,
    slot_starts,
    start_of_day,
)
from callback_shared.models import OfficeHours, ServiceConfig
from callback_shared.states import CallbackState
from pydantic import ValidationError

PARIS = ServiceConfig(
    name="paris",
    time_zone="Europe/Paris",
    office_hours={"sunday": [OfficeHours(opens="01:00", closes="04:00")]},
    slot_length_minutes=30,
)


def test_slots_skip_the_hour_clocks_skip() -> None:
    # 2030-03-31 is a Sunday: at 02:00 Paris clocks go to 03:00
    starts = slot_starts(PARIS, date(2030, 3, 31))
    local = [s.astimezone(ZoneInfo("Europe/Paris")).strftime("%H:%M") for s in starts]
    assert local == ["01:00", "01:30", "03:00", "03:30"]
    assert starts[0] == datetime(2030, 3, 31, 0, 0, tzinfo=UTC)


def test_office_hours_weekdays_closed_dates_and_midnight_closing() -> None:
    config = ServiceConfig(
        name="s",
        office_hours={"monday": [OfficeHours(opens="22:00", closes="24:00")]},
        closed_dates=[date(2030, 1, 14)],
    )
    monday = date(2030, 1, 7)
    assert openings(config, monday) == [
        (datetime(2030, 1, 7, 22, tzinfo=UTC), datetime(2030, 1, 8, tzinfo=UTC))
    ]
    assert is_open(config, datetime(2030, 1, 7, 23, 59, tzinfo=UTC))
    assert not is_open(config, datetime(2030, 1, 8, 0, 0, tzinfo=UTC))  # tuesday: closed
    assert not is_open(config, datetime(2030, 1, 14, 23, tzinfo=UTC))  # a closed monday
    assert len(slot_starts(config, monday)) == 8
    assert is_slot_start(config, datetime(2030, 1, 7, 23, 45, tzinfo=UTC))
    assert not is_slot_start(config, datetime(2030, 1, 7, 23, 50, tzinfo=UTC))


@pytest.mark.parametrize(
    "config",
    [
        PARIS,
        ServiceConfig(
            name="ny",
            time_zone="America/New_York",
            office_hours={
                "sunday": [
                    OfficeHours(opens="00:15", closes="03:10"),
                    OfficeHours(opens="01:00", closes="02:30"),
                ]
            },
            slot_length_minutes=20,
        ),
        ServiceConfig(name="utc", slot_length_minutes=45, closed_dates=[date(2030, 11, 3)]),
    ],
)
@pytest.mark.parametrize(
    "day", [date(2030, 3, 10), date(2030, 3, 31), date(2030, 10, 27), date(2030, 11, 3)]
)
def test_a_slot_start_is_one_the_day_lists(config: ServiceConfig, day: date) -> None:
    """The direct check agrees with the listing of the moment's local day for every minute of
    days around clock changes (skipped and repeated hours, overlapping openings, a closed date),
    and never takes a moment off the minute."""
    listed: dict[date, set[datetime]] = {}
    moment = start_of_day(config, day) - timedelta(hours=3)
    for _ in range(30 * 60):
        local_day = local_date(config, moment)
        if local_day not in listed:
            listed[local_day] = set(slot_starts(config, local_day))
        assert is_slot_start(config, moment) == (moment in listed[local_day]), moment
        moment += timedelta(minutes=1)
    starts = set().union(*listed.values())
    assert starts, "the days chosen have slots"
    assert not any(is_slot_start(config, start + timedelta(seconds=1)) for start in starts)


def test_service_settings_validate_their_fields() -> None:
    with pytest.raises(ValidationError, match="closes must be later"):
        OfficeHours(opens="10:00", closes="10:00")
    with pytest.raises(ValidationError, match="unknown time zone"):
        ServiceConfig(name="s", time_zone="Europe/Atlantis")
    assert ServiceConfig(name="s").desired_window == timedelta(minutes=2)


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [("+1 415 555 2671", "US", "+14155552671"), ("0612345678", "FR", "+33612345678")],
)
def test_numbers_become_e164(raw: str, country: str, expected: str) -> None:
    assert normalise_customer_number(raw, country, refuse_premium=True) == expected


def test_premium_numbers_are_refused_only_when_asked() -> None:
    with pytest.raises(InvalidNumber, match="premium"):
        normalise_customer_number("+33891123456", "FR", refuse_premium=True)
    assert normalise_customer_number("+33891123456", "FR", refuse_premium=False) == "+33891123456"


def test_presets_and_custom_ranges() -> None:
    now = datetime(2030, 6, 15, 12, tzinfo=UTC)
    utc = ZoneInfo("UTC")
    assert resolve_range(RangePreset.LAST_14_DAYS, None, None, now=now, zone=utc) == (
        now - timedelta(days=14),
        now,
    )
    assert resolve_range(RangePreset.NEXT_2_WEEKS, None, None, now=now, zone=utc) == (
        now,
        now + timedelta(days=14),
    )
    start, end = resolve_range(RangePreset.TODAY, None, None, now=now, zone=ZoneInfo("Asia/Tokyo"))
    assert (start, end) == (
        datetime(2030, 6, 14, 15, tzinfo=UTC),
        datetime(2030, 6, 15, 15, tzinfo=UTC),
    )
    with pytest.raises(InvalidCriteria) as raised:
        resolve_range(None, now, None, now=now, zone=utc)
    assert raised.value.field == "to"


def test_plans_fan_out_few_pairs_and_fall_back_to_in_clauses() -> None:
    now = datetime(2030, 6, 15, tzinfo=UTC)
    few = ListCriteria(
        now,
        now + timedelta(days=1),
        services=frozenset({"a", "b"}),
        states=frozenset({CallbackState.QUEUED, CallbackState.SCHEDULED}),
    )
    assert query_plan(few).streams == [
        {"service_name": "a", "state": "QUEUED"},
        {"service_name": "a", "state": "SCHEDULED"},
        {"service_name": "b", "state": "QUEUED"},
        {"service_name": "b", "state": "SCHEDULED"},
    ]
    many = ListCriteria(
        now, now + timedelta(days=1), services=frozenset(f"s{n}" for n in range(MAX_STREAMS + 1))
    )
    (stream,) = query_plan(many).streams
    assert many.services is not None
    assert stream == {"service_name": {"$in": sorted(many.services)}}
    assert list(list_filter(many)) == ["desired_time", "service_name"]


def test_cursors_round_trip_and_tampering_is_refused() -> None:
    cursor = PageCursor(datetime(2030, 1, 1, tzinfo=UTC), uuid4(), 3600.0)
    assert PageCursor.decode(cursor.encode()) == cursor
    for bad in ("", "abc", cursor.encode()[:-4], "eyJ0IjoxfQ"):
        with pytest.raises(InvalidCriteria):
            PageCursor.decode(bad)


def test_windows_follow_the_density_seen() -> None:
    hour = timedelta(hours=1)
    assert next_window(hour, 0, 251) == 1.5 * hour
    assert next_window(hour, 100, 100) == 1.25 * hour
    assert next_window(hour, 200, 51) == hour * 1.25 * 51 / 200  # shrinks: a few more needed
    assert next_window(hour, 245, 6) == 0.1 * hour  # no less than a tenth
    assert next_window(hour, 10, 241) == 16 * hour  # no more than 16 times


def test_the_window_after_an_empty_stretch_is_at_most_half_as_wide_as_the_stretch() -> None:
    # read blind: on a server that applies the limit late, every callback it holds is read
    first = timedelta(hours=1)
    for empty in range(1, 40):
        window, crossed = first, timedelta(0)
        for _ in range(empty):
            crossed += window
            window = next_window(window, 0, 250)
        # (exactly half and the first, but for the microseconds a timedelta rounds to)
        assert window <= crossed / 2 + first + timedelta(milliseconds=1), (empty, window, crossed)
        assert window > crossed / 3  # and still grows: a long empty stretch takes few windows


def test_windows_take_the_density_over_the_stretch_that_held_callbacks() -> None:
    hour = timedelta(hours=1)
    # 99 callbacks in the last hour of a 16-hour window (its start was before the oldest kept):
    # the density is that of the last hour (and the gap before the first), not of 16 hours
    assert next_window(16 * hour, 99, 198, occupied=hour) == hour * 100 / 99 * 1.25 * 2
    # callbacks from the window's start: the whole window
    assert next_window(hour, 100, 100, occupied=hour) == 1.25 * hour
    assert next_window(hour, 100, 100, occupied=0.999 * hour) == 1.25 * hour  # never wider
    # a lone callback at the very end: the stretch is taken as no less than 1/16 of the window
    assert next_window(16 * hour, 1, 10, occupied=timedelta(seconds=1)) == hour * 12.5


def test_the_name_recording_is_kept_four_days_after_completion() -> None:
    completed = datetime(2030, 1, 1, tzinfo=UTC)
    doc = {
        "updated_at": completed + timedelta(days=9),  # a later, unrelated update
        "timeline": [
            {"at": completed - timedelta(hours=1), "state": "SCHEDULED"},
            {"at": completed, "state": "COMPLETED"},
        ],
    }
    assert completion_time(doc) == completed
    assert keeps_name_recording(doc, completed + timedelta(days=4))
    assert not keeps_name_recording(doc, completed + timedelta(days=4, seconds=1))
