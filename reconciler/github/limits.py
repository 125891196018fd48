"""GitHub's secondary rate limits, kept on our side instead of discovered by a 403.

GitHub documents them in "Rate limits for the REST API", section "About secondary rate
limits" (docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api; the same text
for GHEC and GHES 3.14-3.21, where an administrator may change or disable them):

- "No more than 100 concurrent requests are allowed. This limit is shared across the REST
  API and GraphQL API." -> `concurrency` (default 100): requests in flight at once, every
  thread of the client counted (the executor's bind workers, the runner-state listing).
- "In general, no more than 80 content-generating requests per minute and no more than 500
  content-generating requests per hour are allowed. Some endpoints have lower content
  creation limits." -> `WriteBudget` (`run --github-write-budget 80/500`): every POST
  attempt (what creates something: a JIT configuration, a registration token) takes a place
  in a sliding minute and hour; when none is free the request waits for the first place
  that frees, or fails at once with `RateLimited` if that is further away than the client
  is willing to wait. GitHub does not say whether generating a JIT configuration counts as
  content generation; the budget is the documented general one and can be raised or turned
  off (`off`) where GitHub allows more (GHES with limits disabled).
- The per-endpoint points budget (900 points a minute, 5 per POST = 180 POSTs a minute) is
  looser than the content budget and is not tracked separately.

A `Retry-After` or `x-ratelimit-remaining: 0` answer is still honoured by the client
itself (every thread pauses): these limits only keep us from provoking one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

DOCUMENTED_CONCURRENCY = 100
DOCUMENTED_WRITES_PER_MINUTE = 80
DOCUMENTED_WRITES_PER_HOUR = 500


class BudgetExceeded(Exception):
    """The next write could only be sent after `wait` seconds, more than allowed."""

    def __init__(self, wait: float, budget: WriteBudget) -> None:
        super().__init__(f"GitHub write budget {budget} spent: the next place frees in {wait:.0f}s")
        self.wait = wait
        self.budget = budget


@dataclass(frozen=True)
class WriteBudget:
    """Content-creating requests allowed per sliding minute and per sliding hour."""

    per_minute: int = DOCUMENTED_WRITES_PER_MINUTE
    per_hour: int = DOCUMENTED_WRITES_PER_HOUR

    def __post_init__(self) -> None:
        if self.per_minute < 1 or self.per_hour < 1:
            raise ValueError(f"a write budget allows at least 1 request, not {self}")
        if self.per_hour < self.per_minute:
            raise ValueError(
                f"a write budget's hour ({self.per_hour}) cannot allow fewer requests than "
                f"its minute ({self.per_minute})"
            )

    def __str__(self) -> str:
        return f"{self.per_minute}/min, {self.per_hour}/h"

    @classmethod
    def parse(cls, text: str) -> WriteBudget | None:
        """`PER_MINUTE[/PER_HOUR]` (the hour defaults to 60 minutes' worth, at most the
        documented 500 unless the minute allows more), or `off` (None: no budget)."""
        value = text.strip().lower()
        if value == "off":
            return None
        minute, _, hour = value.partition("/")
        if not minute.isdigit() or (hour and not hour.isdigit()):
            raise ValueError(
                f"write budget {text!r}: expected PER_MINUTE[/PER_HOUR] (e.g. 80/500) or off"
            )
        per_minute = int(minute)
        per_hour = int(hour) if hour else max(per_minute, min(60 * per_minute, 500))
        return cls(per_minute, per_hour)


class SecondaryLimits:
    """A concurrency cap and an optional write budget, shared by every thread of a client.

    `slot(writes=True)` waits for a write place (sliding minute and hour, reserved in the
    order asked, so waiting threads are served first come first served), then for one of
    the `concurrency` places, and holds that until the request's answer was read."""

    def __init__(
        self,
        concurrency: int = DOCUMENTED_CONCURRENCY,
        budget: WriteBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self.concurrency = concurrency
        self.budget = budget
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._writes: deque[float] = deque()  # reserved send times, ascending
        self._in_flight = threading.BoundedSemaphore(concurrency)

    def reserve_write(self, max_wait: float) -> float:
        """Reserve the earliest write place; returns the seconds to wait for it. Raises
        `BudgetExceeded` (reserving nothing) when that is more than `max_wait`."""
        budget = self.budget
        if budget is None:
            return 0.0
        with self._lock:
            now = self._clock()
            while self._writes and self._writes[0] <= now - 3600.0:
                self._writes.popleft()
            at = max(now, self._writes[-1]) if self._writes else now  # first come, first served
            for window, allowed in ((60.0, budget.per_minute), (3600.0, budget.per_hour)):
                recent = [t for t in self._writes if t > at - window]
                if len(recent) >= allowed:  # the place of the allowed-th last write frees
                    at = max(at, recent[-allowed] + window)
            wait = at - now
            if wait > max_wait:
                raise BudgetExceeded(wait, budget)
            self._writes.append(at)
            return wait

    @contextlib.contextmanager
    def slot(self, writes: bool, max_wait: float = float("inf")) -> Iterator[None]:
        """Hold one request place (after waiting for a write place when `writes`)."""
        if writes:
            wait = self.reserve_write(max_wait)
            if wait > 0:
                self._sleep(wait)
        with self._in_flight:
            yield
