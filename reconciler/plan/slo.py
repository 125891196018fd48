"""Warm runners and spare instance room from a queue-wait objective (`scaling.slo`).

Pure: the objective, the arrivals learned so far and the time in, a `SloSizing` out; no I/O
(the counts are kept by `reconciler.github.arrivals`).

The model. Jobs of a pool arrive as a Poisson process whose rate depends on the 5-minute slot of
the week (UTC; a cron storm at 03:00 JST is slot 18:00 UTC Sunday/...). The rate of a slot is the
decayed mean of its job counts over the weeks observed before this one (weight `decay` per week
of age), or the rate seen in the last two slots of this week if that is higher (a surge
nobody has seen before still counts within minutes). A job that arrives when a warm runner is
idle starts at once; otherwise it waits for a runner started for it, which takes
`startup.warmInstance` if its instance has room and `startup.newInstance` if an instance must
boot first. So:

- warm runners = the `percentile` quantile of Poisson arrivals during `warmInstance` (the time
  a replacement takes): with that chance, every job of the window finds a warm runner;
- spare room = the quantile of arrivals during `newInstance`, minus the warm runners: room on
  running instances for that many more runners (the autoscaler keeps it), so a job that misses
  the warm pool waits `warmInstance`, not a new instance's boot.

The rate used at `now` is the highest of the slots overlapping [now, now + newInstance]: a
recurring spike is pre-warmed one instance boot before it starts. Outside the objective's
windows nothing is added (the hand-set `idle` and `schedules` remain floors, always).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from ..spec.models import WEEKDAYS, QueueWaitSlo, SloWindow, duration_seconds

SLOT_SECONDS = 300
SLOTS_PER_WEEK = 7 * 24 * 3600 // SLOT_SECONDS
#: weeks of history the model reads (older weeks weigh decay**4 or less)
HISTORY_WEEKS = 4
# 1970-01-05 was a Monday: weeks are counted from there, in UTC
_EPOCH_MONDAY = datetime.datetime(1970, 1, 5, tzinfo=datetime.UTC)


def week_and_slot(at: datetime.datetime) -> tuple[int, int]:
    """(week number since 1970-01-05 UTC, 5-minute slot of that week 0..2015) of `at`."""
    if at.tzinfo is None:
        raise ValueError(f"{at!r} has no time zone: pass an aware datetime (UTC)")
    seconds = int((at - _EPOCH_MONDAY).total_seconds())
    week, offset = divmod(seconds, 7 * 24 * 3600)
    return week, offset // SLOT_SECONDS


def slot_label(slot: int) -> str:
    """`Mon 09:05 UTC` for a slot of the week."""
    day, minute = divmod(slot * SLOT_SECONDS // 60, 24 * 60)
    return f"{WEEKDAYS[day].capitalize()} {minute // 60:02d}:{minute % 60:02d} UTC"


@dataclass(frozen=True)
class ArrivalHistory:
    """Jobs that arrived per (week, slot) for one pool; `observed_from` gives, per week the
    controller ran in, the first slot it watched, so a quiet slot after it counts as zero and
    a slot before it (not watched) does not count at all."""

    counts: Mapping[int, Mapping[int, int]] = field(default_factory=dict)  # week -> slot -> jobs
    observed_from: Mapping[int, int] = field(default_factory=dict)  # week -> first slot watched

    def learned_rate(self, week: int, slot: int, decay: float) -> float:
        """Jobs per second in `slot`: the decayed mean over the observed weeks before `week`."""
        total = weight = 0.0
        for past in range(week - HISTORY_WEEKS, week):
            first = self.observed_from.get(past)
            if first is None or slot < first:
                continue
            w = decay ** (week - 1 - past)
            total += w * self.counts.get(past, {}).get(slot, 0)
            weight += w
        return total / weight / SLOT_SECONDS if weight else 0.0

    def recent_rate(self, at: datetime.datetime) -> float:
        """Jobs per second seen in this slot and the one before (this week's counts)."""
        week, slot = week_and_slot(at)
        this = self.counts.get(week, {})
        previous_week, previous = week_and_slot(at - datetime.timedelta(seconds=SLOT_SECONDS))
        before = self.counts.get(previous_week, {}).get(previous, 0)
        elapsed = (at - _EPOCH_MONDAY).total_seconds() % SLOT_SECONDS
        return (this.get(slot, 0) + before) / (SLOT_SECONDS + elapsed)


@dataclass(frozen=True)
class SloSizing:
    """What the objective asks of a pool now."""

    warm: int  # idle runners to keep (before the hand-set floors)
    spare_room: int  # runner-sized room on running instances beyond the warm runners
    rate: float  # jobs per second assumed
    reason: str


def poisson_quantile(probability: float, mean: float) -> int:
    """The smallest k with P(N <= k) >= probability for N ~ Poisson(mean)."""
    if not 0 < probability < 1:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    if mean < 0 or math.isnan(mean):
        raise ValueError(f"mean must be >= 0, got {mean}")
    if mean == 0:
        return 0
    if mean > 500:  # normal approximation (continuity-corrected); exact sums underflow
        z = _normal_quantile(probability)
        return max(0, math.ceil(mean + z * math.sqrt(mean) - 0.5))
    k, pmf = 0, math.exp(-mean)
    cdf = pmf
    while cdf < probability - 1e-12:
        k += 1
        pmf *= mean / k
        cdf += pmf
    return k


def _normal_quantile(probability: float) -> float:
    """Inverse standard normal CDF by bisection (enough for a count)."""
    low, high = -10.0, 10.0
    for _ in range(80):
        middle = (low + high) / 2
        if 0.5 * math.erfc(-middle / math.sqrt(2)) < probability:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def slo_active(slo: QueueWaitSlo, now: datetime.datetime) -> bool:
    """True when `now` is inside one of the objective's windows (or it has none)."""
    return not slo.windows or any(_in_window(window, now) for window in slo.windows)


def _in_window(window: SloWindow, now: datetime.datetime) -> bool:
    local = now.astimezone(ZoneInfo(window.timezone))
    return (
        WEEKDAYS[local.weekday()] in window.days
        and window.from_ <= local.strftime("%H:%M") < window.to
    )


def slo_sizing(
    slo: QueueWaitSlo, history: ArrivalHistory, now: datetime.datetime, maximum: int
) -> SloSizing:
    """Warm runners and spare room for the objective at `now`, within the pool's `maximum`."""
    percentile = f"p{slo.percentile:g}"
    if not slo_active(slo, now):
        return SloSizing(0, 0, 0.0, f"slo: outside its windows, {percentile} not targeted")
    warm_s = duration_seconds(slo.startup.warm_instance)
    new_s = duration_seconds(slo.startup.new_instance)
    _, slot = week_and_slot(now)
    rate, source = 0.0, "none learned yet"
    # every slot overlapping [now, now + newInstance]: pre-warm a spike one boot ahead
    horizon = now + datetime.timedelta(seconds=new_s)
    ahead = now
    while ahead <= horizon:
        ahead_week, ahead_slot = week_and_slot(ahead)
        learned = history.learned_rate(ahead_week, ahead_slot, slo.decay)
        if learned > rate:
            rate = learned
            source = f"learned for {slot_label(ahead_slot)}"
            if ahead_slot != slot:
                source += " (pre-warmed)"
        ahead = _next_slot(ahead)
    recent = history.recent_rate(now)
    if recent > rate:
        rate, source = recent, "seen in the last slots"
    probability = slo.percentile / 100
    warm = min(maximum, poisson_quantile(probability, rate * warm_s))
    room = max(0, min(maximum, poisson_quantile(probability, rate * new_s)) - warm)
    reason = (
        f"slo: {warm} warm = {percentile} of arrivals in {warm_s} s "
        f"({rate * 60:.2f} jobs/min {source}); room for {room} more = {percentile} in {new_s} s"
    )
    return SloSizing(warm, room, rate, reason)


def _next_slot(at: datetime.datetime) -> datetime.datetime:
    elapsed = (at - _EPOCH_MONDAY).total_seconds() % SLOT_SECONDS
    return at + datetime.timedelta(seconds=SLOT_SECONDS - elapsed)
