"""Timestamps as Kubernetes writes them: the one place they are parsed and formatted.

Kubernetes serialises `metav1.Time` (creationTimestamp, a condition's
lastTransitionTime, the times in a LimeTask's status) as RFC 3339 in UTC with whole
seconds and a ``Z``: ``2024-05-01T10:00:05Z`` (Go's ``time.RFC3339`` layout on a UTC
time; see k8s.io/apimachinery/pkg/apis/meta/v1/time.go). This module formats exactly that,
and parses any RFC 3339 date-time (RFC 3339 section 5.6: a ``T``, optional fractions of a
second, ``Z`` or a numeric offset), which is what the API server, Go's RFC3339Nano and
Python's ``isoformat`` produce. Everything is pure and works in aware UTC datetimes; a
naive datetime handed in is taken as UTC.

AMQP's message timestamp (the event's ``timestamp`` property) is whole seconds since
the epoch (AMQP 0-9-1, basic properties, ``timestamp``: a 64-bit POSIX time).
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta, timezone
from typing import Optional, Union

__all__ = ["as_utc", "format_time", "from_epoch_seconds", "parse_time", "parse_time_or_none", "to_epoch_seconds"]

# RFC 3339 section 5.6 date-time; letters are case-insensitive there (section 5.6 NOTE).
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<hours>\d{2}):(?P<minutes>\d{2}))"
)


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def format_time(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``: `moment` in UTC, fractions of a second dropped (as
    Kubernetes writes times; whole seconds are all its `metav1.Time` keeps)."""
    if not isinstance(moment, datetime):
        raise ValueError(f"timestamp {moment!r} is not a datetime")
    # isoformat, not strftime("%Y"): glibc writes the year 999 as "999", not "0999".
    return as_utc(moment).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def parse_time(value: Union[str, datetime]) -> datetime:
    """An aware UTC datetime from an RFC 3339 date-time string (or a datetime, see `as_utc`).

    Fractions of a second beyond microseconds are cut (Python keeps six digits; Go may
    write nine). Raises ValueError naming the value when it is not RFC 3339: no offset,
    a date alone, a space for the ``T``, an impossible date or time (a leap second too:
    Python cannot hold ``23:59:60``).
    """
    if isinstance(value, datetime):
        return as_utc(value)
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"timestamp {value!r} is not RFC 3339: expected e.g. '2024-05-01T10:00:05Z' "
            "(date, 'T', time, optional fraction, then 'Z' or an offset like '+02:00')"
        )
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    try:
        moment = datetime.fromisoformat(f"{match['date']}T{match['time']}.{fraction}")
        if match["utc"]:
            offset = timedelta(0)
        else:
            offset = timedelta(hours=int(match["hours"]), minutes=int(match["minutes"]))
            offset = -offset if match["sign"] == "-" else offset
        return moment.replace(tzinfo=timezone(offset)).astimezone(timezone.utc)
    except ValueError as error:  # 2024-02-30, 25:00:00, offset +24:00
        raise ValueError(f"timestamp {value!r} is not a real date and time: {error}") from None


def parse_time_or_none(value: Union[str, datetime, None]) -> Optional[datetime]:
    """`parse_time`, but None for None, "" and anything that is not RFC 3339 (for
    display code that shows what it can)."""
    if value is None or value == "":
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def to_epoch_seconds(moment: datetime) -> int:
    """Whole seconds since the epoch (an AMQP timestamp), fractions dropped towards the
    past (as `format_time` drops them); a naive datetime is UTC."""
    return calendar.timegm(as_utc(moment).utctimetuple())


def from_epoch_seconds(seconds: Union[int, float]) -> datetime:
    """The aware UTC datetime of a POSIX time (an AMQP timestamp)."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc)
