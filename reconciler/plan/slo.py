"""Warm runners and spare instance room from a queue-wait objective (`scaling.slo`).

Pure: the objective, the arrivals learned so far and the time in, a `SloSizing` out; no I/O
(the counts are kept by `reconciler.demand.arrivals`).

The model. Workflow runs of a pool arrive as a Poisson process whose rate depends on the
5-minute slot of the week (UTC: a cron storm at 03:00 JST is 18:00 UTC the day before); a run
brings several jobs at once, so jobs are an overdispersed Poisson count (`Arrivals`: rate and
dispersion, the size-biased mean run size). A slot's arrivals are the decayed means of its
counts over the weeks observed before this one (weight `decay` per week of age).

A job starts within `queueWait` when it finds an idle warm runner; or a runner started for it
comes online in time: `startup.warmInstance` when an instance has room for it,
`startup.newInstance` when an instance must boot first. The objective is on jobs ("90% of jobs
wait at most 30 s"), so each count below is the smallest k for which the expected jobs beyond
k in the window are at most (100 - percentile)% of the jobs expected in it (the fill rate of
inventory theory, `covering`):

- warm runners: none when a runner on spare room comes in time (warmInstance <= queueWait):
  an idle runner costs the same instance room as empty room, and room serves every pool of
  the capacity provider; otherwise k over the arrivals during warmInstance;
- spare room: k over the arrivals during newInstance (while a new instance boots, every job
  needs room), minus the warm runners; none when newInstance <= queueWait.

Large runs (matrices) get room of their own. A pool's job-weighted count can meet the
objective on the pool's average while the repository whose jobs come in 60-job matrices
waits for new instances with most of each matrix, so the objective is also kept for the jobs
of large runs by themselves (`LargeRuns`): a quarter of the error budget `(100 -
percentile)%` goes to the large-run jobs that arrive at the quietest times of the learned
week (no room is held for them then), a quarter to the part of each large run beyond the
room, and half is left as the margin for a week unlike the ones learned. So room is held for
the size that covers all but that quarter of the learned large runs' jobs, at the times of
the week that bring all but the other quarter (the hours around each slot pooled).

The arrivals read at `now` are those asking the most room among: each slot overlapping
[now, now + newInstance] (so a recurring spike is pre-warmed one instance boot before it
starts), the hour and the four hours around now (their slots pooled: random bursts, say a
matrix build at any time of the morning, recur by the part of the day, not by the slot) and
the last two slots of this week (a surge nobody has seen before counts within minutes).
Outside the objective's windows nothing is added; the hand-set `idle` and `schedules` remain
floors, always.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from ..spec.models import WEEKDAYS, QueueWaitSlo, duration_seconds

SLOT_SECONDS = 300
SLOTS_PER_WEEK = 7 * 24 * 3600 // SLOT_SECONDS
#: windows (hours around now) whose slots are pooled: random bursts (a matrix build at any
#: time of the morning) recur by the hour or the part of the day, not by the 5-minute slot
POOLED_HOURS = (1, 4)
#: weeks of history the model reads (older weeks weigh decay**4 or less)
HISTORY_WEEKS = 4
#: a slot whose squares show a run of at least this many jobs had a large run (a matrix):
#: the largest run of a slot is at most sqrt(squares), and about that when one run dominates
LARGE_RUN_JOBS = 20
#: hours around a slot, on its day and the days either side, whose large runs are pooled
#: into how likely one is at that time: a matrix build comes at any time of a working
#: morning, so the same hours of the neighbouring days are as good a guess as this day's
LARGE_RUN_POOLED_HOURS = 4
LARGE_RUN_POOLED_DAYS = (-1, 0, 1)
#: share of the error budget given to each of: large-run jobs at the quiet times no room is
#: held, and each large run's jobs beyond the room; the rest is the margin for a week that
#: brings more large runs at quiet times than the weeks learned (a few matrices a week make
#: that share vary a lot)
LARGE_RUN_BUDGET_SHARE = 0.25
#: what ArrivalHistory keeps of the weeks that are over
Learned = TypeVar("Learned", "Arrivals", "LargeRuns")
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
class Arrivals:
    """Arrivals as the model sees them: jobs per second, and their dispersion: the mean size
    of the workflow run a job arrives in, size-biased (E[B^2] / E[B] of run sizes B); 1 when
    jobs come one by one, about 60 when most come in 60-job matrices."""

    rate: float
    dispersion: float = 1.0

    def covering(self, probability: float, window: float, limit: int = 10_000) -> int:
        """The fewest runners (or room for them) that let `probability` of the jobs arriving
        within `window` seconds start on one: smallest k with E[(N - k)+] <= (1 - p) E[N],
        N = dispersion x M, M ~ Poisson(rate x window / dispersion) runs; at most `limit`."""
        dispersion = max(1.0, self.dispersion)
        runs = self.rate * window / dispersion
        if runs <= 0:
            return 0
        target = (1 - probability) * runs  # in runs: E[(M - x)+] <= target
        x = _covering_runs(runs, target)
        return min(limit, math.ceil(dispersion * x - 1e-9))


def _covering_runs(mean: float, target: float) -> float:
    """The least x >= 0 with E[(M - x)+] <= target, M ~ Poisson(mean). E[(M - x)+] is convex,
    piecewise linear between integers with slope -(1 - F(j)) on [j, j + 1]."""
    if mean > 500:  # normal approximation: bisection on its loss function
        sigma = math.sqrt(mean)
        low, high = 0.0, mean + 12 * sigma
        for _ in range(100):
            middle = (low + high) / 2
            z = (middle - mean) / sigma
            loss = sigma * math.exp(-z * z / 2) / math.sqrt(2 * math.pi) - (middle - mean) * (
                0.5 * math.erfc(z / math.sqrt(2))
            )
            low, high = (middle, high) if loss > target else (low, middle)
        return high
    loss = mean  # E[(M - 0)+]
    pmf = math.exp(-mean)
    cdf = pmf
    j = 0
    while True:
        if loss <= target:
            return float(j)
        tail = 1 - cdf  # slope on [j, j + 1] is -tail
        if tail <= 1e-15 or loss - tail <= target:
            return j + (loss - target) / tail if tail > 1e-15 else float(j + 1)
        loss -= tail
        j += 1
        pmf *= mean / j
        cdf += pmf


@dataclass(frozen=True)
class LargeRuns:
    """A pool's large runs over the weeks learned: their sizes (decay-weighted), and per slot
    of the week how many large-run jobs the hours around it brought (`busy`); room for them is
    held where `busy` is at least `threshold` (times bringing `held_share` of those jobs)."""

    sizes: tuple[tuple[float, int], ...] = ()  # (weight, jobs) per slot-week with a large run
    busy: tuple[float, ...] = ()
    threshold: float = math.inf
    held_share: float = 0.0
    covered_share: float = 1.0  # share of each learned run's jobs the room is sized for

    def room(self) -> int:
        """The room that covers `covered_share` of the learned large runs' jobs: the least k
        with sum w (L - k)+ <= (1 - covered_share) sum w L."""
        if not self.sizes:
            return 0
        allowed = (1 - self.covered_share) * sum(w * jobs for w, jobs in self.sizes)
        k = max(jobs for _, jobs in self.sizes)
        while k > 0 and sum(w * max(0, jobs - (k - 1)) for w, jobs in self.sizes) <= allowed:
            k -= 1
        return k

    def held_at(self, slot: int) -> bool:
        """True when room for a large run is held in `slot` of the week."""
        return bool(self.busy) and self.busy[slot] > 0 and self.busy[slot] >= self.threshold

    def describe(self) -> str:
        """`95% of the jobs of the 5 large runs learned (40-80 jobs), held at times bringing
        96% of them`."""
        smallest = min(jobs for _, jobs in self.sizes)
        largest = max(jobs for _, jobs in self.sizes)
        runs = (
            f"the large run learned ({largest} jobs)"
            if len(self.sizes) == 1
            else f"the {len(self.sizes)} large runs learned ({smallest}-{largest} jobs)"
        )
        return (
            f"{100 * self.covered_share:g}% of the jobs of {runs}, "
            f"held at times bringing {100 * self.held_share:.0f}% of them"
        )


def learn_large_runs(
    squares: Mapping[int, Mapping[int, int]],
    observed_from: Mapping[int, int],
    week: int,
    decay: float,
    probability: float,
) -> LargeRuns:
    """The large runs of the observed weeks before `week` (see the module's docstring): a
    quarter of the error budget `1 - probability` for the times no room is held, a quarter for
    each run's tail."""
    budget = (1 - probability) * LARGE_RUN_BUDGET_SHARE
    sizes: list[tuple[float, int]] = []
    per_slot = [0.0] * SLOTS_PER_WEEK
    for past in range(week - HISTORY_WEEKS, week):
        first = observed_from.get(past)
        if first is None:
            continue
        weight = decay ** (week - 1 - past)
        for slot, square_sum in squares.get(past, {}).items():
            largest = math.isqrt(square_sum)
            if slot >= first and largest >= LARGE_RUN_JOBS:
                sizes.append((weight, largest))
                per_slot[slot] += weight * largest
    total = sum(per_slot)
    if not total:
        return LargeRuns()
    half = LARGE_RUN_POOLED_HOURS * 3600 // SLOT_SECONDS // 2
    running = [0.0]  # prefix sums over three weeks, so every window is one difference
    for value in per_slot * 3:
        running.append(running[-1] + value)
    day = SLOTS_PER_WEEK // 7
    busy = tuple(
        sum(
            running[SLOTS_PER_WEEK + slot + shift * day + half]
            - running[SLOTS_PER_WEEK + slot + shift * day - half]
            for shift in LARGE_RUN_POOLED_DAYS
        )
        for slot in range(SLOTS_PER_WEEK)
    )
    held, threshold = 0.0, 0.0
    for slot in sorted(range(SLOTS_PER_WEEK), key=lambda s: busy[s], reverse=True):
        held += per_slot[slot]
        threshold = busy[slot]
        if held >= (1 - budget) * total:
            break
    return LargeRuns(tuple(sizes), busy, threshold, held / total, 1 - budget)


@dataclass(frozen=True)
class ArrivalHistory:
    """Jobs that arrived per (week, slot) for one pool, with the sum over them of (2c - 1)
    where c is the job's place in its run (so a run of n jobs adds n^2: `squares`), and per
    week the controller ran in, the first slot it watched (`observed_from`): a quiet slot after
    it counts as zero, a slot before it (not watched) does not count at all."""

    counts: Mapping[int, Mapping[int, int]] = field(default_factory=dict)  # week -> slot -> jobs
    observed_from: Mapping[int, int] = field(default_factory=dict)  # week -> first slot watched
    squares: Mapping[int, Mapping[int, int]] = field(default_factory=dict)  # week -> slot -> sum
    # learned(week, ...) reads only the weeks before `week`; up to the newest week watched
    # those are over and never change again, so what was learned of them is kept (the sizing
    # windows overlap, and the simulator asks the same slots cycle after cycle)
    _memo: dict[tuple[object, ...], Arrivals | LargeRuns] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def large_runs(self, week: int, decay: float, probability: float) -> LargeRuns:
        """The large runs of the observed weeks before `week` (`learn_large_runs`)."""
        return self._kept(
            ("large", week, decay, probability),
            week,
            lambda: learn_large_runs(self.squares, self.observed_from, week, decay, probability),
        )

    def _kept(self, key: tuple[object, ...], week: int, learn: Callable[[], Learned]) -> Learned:
        """`learn()`, which reads the weeks before `week`: kept if those are all over."""
        if week > max(self.observed_from, default=week):
            return learn()  # it reads the week in progress
        known = self._memo.get(key)
        if known is None:
            known = self._memo[key] = learn()
        return known  # type: ignore[return-value]  # a key keeps the kind it was learned as

    def learned(self, week: int, slot: int, decay: float) -> Arrivals:
        """`slot`'s arrivals: decayed means over the observed weeks before `week`."""
        return self._kept((week, slot, decay), week, lambda: self._learn(week, slot, decay))

    def _learn(self, week: int, slot: int, decay: float) -> Arrivals:
        jobs = squares = weight = 0.0
        for past in range(week - HISTORY_WEEKS, week):
            first = self.observed_from.get(past)
            if first is None or slot < first:
                continue
            w = decay ** (week - 1 - past)
            jobs += w * self.counts.get(past, {}).get(slot, 0)
            squares += w * self.squares.get(past, {}).get(slot, 0)
            weight += w
        if not weight or not jobs:
            return Arrivals(0.0)
        return Arrivals(jobs / weight / SLOT_SECONDS, max(1.0, squares / jobs))

    def learned_around(self, week: int, slot: int, decay: float, hours: int = 1) -> Arrivals:
        """The arrivals of the `hours` around `slot`, pooled (their mean rate; dispersion
        from their summed squares)."""
        half = hours * 3600 // SLOT_SECONDS // 2
        last_week = week + (slot + half - 1) // SLOTS_PER_WEEK
        return self._kept(
            ("around", week, slot, decay, hours),
            last_week,
            lambda: self._pool(week, range(slot - half, slot + half), decay),
        )

    def _pool(self, week: int, slots: range, decay: float) -> Arrivals:
        around = [
            self.learned(week + (s // SLOTS_PER_WEEK), s % SLOTS_PER_WEEK, decay) for s in slots
        ]
        jobs = sum(a.rate for a in around)
        if not jobs:
            return Arrivals(0.0)
        squares = sum(a.rate * a.dispersion for a in around)
        return Arrivals(jobs / len(around), squares / jobs)

    def learned_rate(self, week: int, slot: int, decay: float) -> float:
        """Jobs per second in `slot`: the decayed mean over the observed weeks before `week`."""
        return self.learned(week, slot, decay).rate

    def recent(self, at: datetime.datetime) -> Arrivals:
        """Arrivals seen in this slot and the one before (this week's counts)."""
        week, slot = week_and_slot(at)
        previous_week, previous = week_and_slot(at - datetime.timedelta(seconds=SLOT_SECONDS))
        jobs = self.counts.get(week, {}).get(slot, 0) + self.counts.get(previous_week, {}).get(
            previous, 0
        )
        squares = self.squares.get(week, {}).get(slot, 0) + self.squares.get(previous_week, {}).get(
            previous, 0
        )
        elapsed = (at - _EPOCH_MONDAY).total_seconds() % SLOT_SECONDS
        if not jobs:
            return Arrivals(0.0)
        return Arrivals(jobs / (SLOT_SECONDS + elapsed), max(1.0, squares / jobs))

    def recent_rate(self, at: datetime.datetime) -> float:
        """Jobs per second seen in this slot and the one before (this week's counts)."""
        return self.recent(at).rate


@dataclass(frozen=True)
class SloSizing:
    """What the objective asks of a pool now."""

    warm: int  # idle runners to keep (before the hand-set floors)
    spare_room: int  # runner-sized room on running instances beyond the warm runners
    rate: float  # jobs per second assumed
    reason: str


def slo_active(slo: QueueWaitSlo, now: datetime.datetime) -> bool:
    """True when `now` is inside one of the objective's windows (or it has none)."""
    return not slo.windows or any(window.covers(now) for window in slo.windows)


def slo_sizing(
    slo: QueueWaitSlo,
    history: ArrivalHistory,
    now: datetime.datetime,
    maximum: int,
    per_run: int | None = None,
) -> SloSizing:
    """Warm runners and spare room for the objective at `now`, within the pool's `maximum`
    (and the room for a large run within `per_run`, the runners one repository may have)."""
    percentile = f"p{slo.percentile:g}"
    if not slo_active(slo, now):
        return SloSizing(0, 0, 0.0, f"slo: outside its windows, {percentile} not targeted")
    target = slo.queue_wait_seconds
    warm_s = duration_seconds(slo.startup.warm_instance)
    new_s = duration_seconds(slo.startup.new_instance)
    probability = slo.percentile / 100
    week, slot = week_and_slot(now)
    candidates: list[tuple[Arrivals, str]] = []
    ahead, horizon = now, now + datetime.timedelta(seconds=new_s)
    while ahead <= horizon:
        ahead_week, ahead_slot = week_and_slot(ahead)
        source = f"learned for {slot_label(ahead_slot)}"
        if ahead_slot != slot:
            source += " (pre-warmed)"
        candidates.append((history.learned(ahead_week, ahead_slot, slo.decay), source))
        ahead = _next_slot(ahead)
    for hours in POOLED_HOURS:
        pooled = history.learned_around(week, slot, slo.decay, hours)
        candidates.append((pooled, f"learned for the {hours} h around now"))
    candidates.append((history.recent(now), "seen in the last slots"))
    arrivals, source = max(
        candidates, key=lambda c: (c[0].covering(probability, new_s, maximum), c[0].rate)
    )
    if not arrivals.rate:
        source = "none learned yet"
    runs = f", runs of ~{arrivals.dispersion:.0f}" if arrivals.dispersion >= 1.5 else ""
    seen = f"({arrivals.rate * 60:.2f} jobs/min{runs} {source})"
    if warm_s <= target:
        warm = 0
        warm_why = f"slo: 0 warm (on spare room a runner is online in {warm_s} s <= {target} s)"
    else:
        warm = arrivals.covering(probability, warm_s, maximum)
        warm_why = f"slo: {warm} warm = {percentile} of jobs arriving in {warm_s} s"
    if new_s <= target:
        room = 0
        room_why = f"no room kept (a new instance is online in {new_s} s <= {target} s)"
    else:
        room = max(0, arrivals.covering(probability, new_s, maximum) - warm)
        room_why = f"room for {room} more = {percentile} of jobs arriving in {new_s} s"
        large = history.large_runs(week, slo.decay, probability) if slo.large_runs else None
        if large is not None and large.held_at(slot):
            reserve = min(large.room(), maximum, per_run or maximum) - warm
            if reserve > room:
                room = reserve
                room_why = f"room for {room} more = {large.describe()}"
    return SloSizing(warm, room, arrivals.rate, f"{warm_why}; {room_why} {seen}")


def _next_slot(at: datetime.datetime) -> datetime.datetime:
    elapsed = (at - _EPOCH_MONDAY).total_seconds() % SLOT_SECONDS
    return at + datetime.timedelta(seconds=SLOT_SECONDS - elapsed)
