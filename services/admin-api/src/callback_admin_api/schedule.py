"""Office hours, closed dates and scheduling slots of a service, in its own time zone.

Pure functions over :class:`~callback_shared.models.ServiceConfig`. Slots start at each opening
and follow each other every ``slot_length_minutes`` while they end by the closing time; a local
time that does not exist (the hour skipped when clocks go forward) is never a slot.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from callback_shared.models import ServiceConfig, Weekday

MINUTES_PER_DAY = 24 * 60


def local_date(config: ServiceConfig, moment: datetime) -> date:
    return moment.astimezone(config.zone).date()


def _local(config: ServiceConfig, day: date, minute: int) -> datetime | None:
    """The UTC moment of ``minute`` after local midnight of ``day``; None if it does not exist."""
    day, minute = day + timedelta(days=minute // MINUTES_PER_DAY), minute % MINUTES_PER_DAY
    naive = datetime.combine(day, time(minute // 60, minute % 60))
    moment = naive.replace(tzinfo=config.zone).astimezone(UTC)
    if moment.astimezone(config.zone).replace(tzinfo=None) != naive:
        return None
    return moment


def start_of_day(config: ServiceConfig, day: date) -> datetime:
    """UTC moment of local midnight (or the first local time of the day if midnight is skipped)."""
    start = _local(config, day, 0)
    if start is not None:
        return start
    return datetime.combine(day, time(), tzinfo=config.zone).astimezone(UTC)


def is_closed_date(config: ServiceConfig, day: date) -> bool:
    return day in config.closed_dates


def openings(config: ServiceConfig, day: date) -> list[tuple[datetime, datetime]]:
    """The service's opening intervals on local date ``day``, in UTC ([opens, closes))."""
    if is_closed_date(config, day):
        return []
    intervals = []
    for hours in config.office_hours.get(Weekday.of(day), []):
        opens = _local(config, day, hours.opens_minute) or start_of_day(config, day)
        closes = _local(config, day, hours.closes_minute) or start_of_day(
            config, day + timedelta(days=1)
        )
        intervals.append((opens, closes))
    return sorted(intervals)


def is_open(config: ServiceConfig, moment: datetime) -> bool:
    """Within office hours and not on a closed date (the service's local calendar)."""
    day = local_date(config, moment)
    return any(opens <= moment < closes for opens, closes in openings(config, day))


def slot_starts(config: ServiceConfig, day: date) -> list[datetime]:
    """Every slot of local date ``day``, as UTC start times, in order."""
    if is_closed_date(config, day):
        return []
    length = config.slot_length_minutes
    starts: set[datetime] = set()
    for hours in config.office_hours.get(Weekday.of(day), []):
        minute = hours.opens_minute
        while minute + length <= hours.closes_minute:
            start = _local(config, day, minute)
            if start is not None:
                starts.add(start)
            minute += length
    return sorted(starts)


def is_slot_start(config: ServiceConfig, moment: datetime) -> bool:
    """Whether ``moment`` is one of :func:`slot_starts` of its local date, found from its own
    local time rather than by listing the day's slots (a create checks every scheduled time)."""
    local = moment.astimezone(config.zone)
    day = local.date()
    if is_closed_date(config, day):
        return False
    minute = local.hour * 60 + local.minute
    length = config.slot_length_minutes
    for hours in config.office_hours.get(Weekday.of(day), []):
        opens = hours.opens_minute
        on_grid = (minute - opens) % length == 0
        if on_grid and opens <= minute and minute + length <= hours.closes_minute:
            # the slot as slot_starts makes it: None if skipped, the first of a repeated hour
            return _local(config, day, minute) == moment
    return False


def next_local_midnight(config: ServiceConfig, moment: datetime) -> datetime:
    return start_of_day(config, local_date(config, moment) + timedelta(days=1))
