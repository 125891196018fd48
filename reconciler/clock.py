"""The one place that reads the wall clock.

Every decision that depends on the time of day or compares with a timestamp (schedules, the
demand book's TTLs, boot timeouts, the janitor's grace, instance lifetimes, runner-version
staleness) takes its time from a clock handed to it, so that tests, the simulator and the
controller decide at a time they choose. Production code passes `utc_now` / `wall_time`;
tests and the simulator pass a `FixedClock`. Durations and deadlines (timeouts, backoff,
leases) use `time.monotonic()` instead, which no wall-clock change can shorten.

`tests/test_clock.py` walks the package and fails on any other read of the wall clock.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable

#: Seconds since the epoch, as `time.time()` gives them.
WallClock = Callable[[], float]
#: An aware UTC datetime.
UtcClock = Callable[[], datetime.datetime]


def wall_time() -> float:
    """The system's wall clock in seconds since the epoch."""
    return time.time()


def utc_now() -> datetime.datetime:
    """The system's wall clock as an aware UTC datetime."""
    return datetime.datetime.now(datetime.UTC)


class FixedClock:
    """A clock that stands still until advanced: for tests and simulations.

    `clock.now` is a `UtcClock` and `clock.time` a `WallClock`; both read the same instant.
    """

    def __init__(self, at: datetime.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime (with a timezone)")
        self._at = at.astimezone(datetime.UTC)

    def now(self) -> datetime.datetime:
        """The clock's instant as an aware UTC datetime."""
        return self._at

    def time(self) -> float:
        """The clock's instant in seconds since the epoch."""
        return self._at.timestamp()

    def advance(self, seconds: float) -> None:
        """Move the clock forward (or back, with a negative value)."""
        self._at += datetime.timedelta(seconds=seconds)

    def set(self, at: datetime.datetime) -> None:
        """Move the clock to `at` (aware)."""
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime (with a timezone)")
        self._at = at.astimezone(datetime.UTC)
