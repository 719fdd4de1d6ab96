"""lime_task.timestamps: RFC 3339 as Kubernetes writes it, and AMQP's epoch seconds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lime_task import timestamps
from lime_task.timestamps import format_time, parse_time, parse_time_or_none

# Python datetimes from year 1 to 9999; RFC 3339 needs four-digit years.
moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(timezone.utc))
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


def test_format_is_what_kubernetes_writes():
    assert format_time(datetime(2024, 5, 1, 10, 0, 5, 999_999, tzinfo=timezone.utc)) == "2024-05-01T10:00:05Z"
    assert format_time(datetime(2024, 5, 1, 12, 0, 5, tzinfo=timezone(timedelta(hours=2)))) == "2024-05-01T10:00:05Z"
    assert format_time(datetime(2024, 5, 1, 10, 0, 5)) == "2024-05-01T10:00:05Z"  # naive: UTC


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2024-05-01T10:00:05Z", datetime(2024, 5, 1, 10, 0, 5, tzinfo=timezone.utc)),
        ("2024-05-01t10:00:05z", datetime(2024, 5, 1, 10, 0, 5, tzinfo=timezone.utc)),
        ("2024-05-01T12:00:05+02:00", datetime(2024, 5, 1, 10, 0, 5, tzinfo=timezone.utc)),
        ("2024-05-01T00:30:00-01:30", datetime(2024, 5, 1, 2, 0, 0, tzinfo=timezone.utc)),
        ("2024-05-01T10:00:05.5Z", datetime(2024, 5, 1, 10, 0, 5, 500_000, tzinfo=timezone.utc)),
        ("2024-05-01T10:00:05.123456789Z", datetime(2024, 5, 1, 10, 0, 5, 123_456, tzinfo=timezone.utc)),  # Go's nanos
    ],
)
def test_parse_reads_every_rfc3339_form_into_utc(text, expected):
    parsed = parse_time(text)
    assert parsed == expected and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text,why",
    [
        ("2024-05-01T10:00:05", "is not RFC 3339"),  # no offset
        ("2024-05-01", "is not RFC 3339"),
        ("2024-05-01 10:00:05Z", "is not RFC 3339"),
        ("20240501T100005Z", "is not RFC 3339"),
        ("yesterday", "is not RFC 3339"),
        ("", "is not RFC 3339"),
        ("2024-05-01T10:00:05Z\n", "is not RFC 3339"),
        ("2024-02-30T10:00:05Z", "is not a real date and time"),
        ("2024-05-01T24:00:00Z", "is not a real date and time"),
        ("2016-12-31T23:59:60Z", "is not a real date and time"),  # a leap second
        ("2024-05-01T10:00:05+24:00", "is not a real date and time"),
    ],
)
def test_parse_refuses_what_is_not_rfc3339_naming_the_value(text, why):
    with pytest.raises(ValueError, match=why) as caught:
        parse_time(text)
    assert repr(text) in str(caught.value)
    assert parse_time_or_none(text) is None


@pytest.mark.parametrize("value", [None, 1714557605, b"2024-05-01T10:00:05Z"])
def test_parse_refuses_what_is_not_a_string(value):
    with pytest.raises(ValueError, match="is not RFC 3339"):
        parse_time(value)


def test_parse_or_none_passes_empty_values_and_datetimes():
    assert parse_time_or_none(None) is None and parse_time_or_none("") is None
    assert parse_time_or_none(datetime(2024, 5, 1)) == datetime(2024, 5, 1, tzinfo=timezone.utc)


@given(moments)
def test_format_then_parse_is_the_moment_to_the_second(moment):
    assert parse_time(format_time(moment)) == moment.replace(microsecond=0)


@given(moments, offsets)
def test_any_offset_and_python_isoformat_parse_to_the_same_instant(moment, offset):
    local = moment.astimezone(offset)
    assert parse_time(local.isoformat()) == moment
    assert format_time(local) == format_time(moment)


@given(moments)
def test_epoch_seconds_round_trip_to_the_second(moment):
    seconds = timestamps.to_epoch_seconds(moment)
    assert isinstance(seconds, int)
    assert timestamps.from_epoch_seconds(seconds) == moment.replace(microsecond=0)
