"""Wide Hypothesis strategies for the times and dates a client can write: every year from 1 to
9999, any UTC offset, the calendar's edges more often. Used by the property tests and registered
with schemathesis for the ``date-time`` and ``date`` formats."""

from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import strategies as st

OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
#: any time a client can write: every year from 1 to 9999, any offset, the edges more often
TIMES = st.one_of(
    st.datetimes(timezones=OFFSETS),
    st.sampled_from(
        [datetime.min, datetime.max, datetime(1, 1, 1, 0, 30), datetime(9999, 12, 31, 23, 30)]
    ).flatmap(lambda at: OFFSETS.map(lambda zone: at.replace(tzinfo=zone))),
    st.datetimes(min_value=datetime(1969, 12, 30), max_value=datetime(3000, 1, 2)).map(
        lambda at: at.replace(tzinfo=UTC)
    ),
)
DATES = st.one_of(st.dates(), st.sampled_from([date.min, date.max]))
