"""Where a spot pool's new runners go this cycle: its spot provider, or its on-demand fallback.

Pure: decides from the spot group's recent launch activities (`ObservedState.launch_activities`,
read from Auto Scaling's DescribeScalingActivities) and `now`; it never reads a clock nor
calls AWS. The rule, per pool with `spot.fallbackCapacityProvider`:

- the newest launch of the spot group failed (Auto Scaling reports, for example,
  "We currently do not have sufficient m6i.xlarge capacity in the Availability Zone you
  requested" / InsufficientInstanceCapacity, or UnfulfillableCapacity for spot) and no
  launch succeeded since: new runners go to the fallback, for `spot.retryAfter` after that
  failure (Auto Scaling keeps retrying the launch itself; every retry that fails is a new
  activity, so the back-off lasts while the shortage does);
- a launch succeeded after the last failure, or `retryAfter` passed without a new failure:
  new runners go to spot again.

Runners already started stay where they are: they are ephemeral, and the pool drifts back to
spot as they finish their jobs.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from .state import DesiredPool, DesiredState, LaunchActivity, ObservedState, group_name_of


@dataclass(frozen=True)
class Placement:
    """The capacity provider for this cycle's new runners, and why (empty: nothing to say)."""

    provider: str
    reason: str = ""
    on_fallback: bool = False


def spot_placement(
    pool: DesiredPool, desired: DesiredState, observed: ObservedState, now: float
) -> Placement:
    """The provider `pool`'s new runners are placed on at `now` (epoch seconds)."""
    primary = desired.capacity_providers.get(pool.capacity_provider)
    if not pool.spot_fallback or primary is None:
        return Placement(pool.capacity_provider)
    group = group_name_of(primary.auto_scaling_group)
    failure, success = _last_launches(observed.launch_activities.get(group, ()))
    if failure is None or (success is not None and success.at >= failure.at):
        return Placement(pool.capacity_provider)
    retry = pool.spot_retry_after
    if now - failure.at < retry:
        return Placement(
            pool.spot_fallback,
            f"spot cannot launch: Auto Scaling group {group} failed to launch an instance at "
            f"{_clock(failure.at)} ({_short(failure.message)}); new runners on "
            f"{pool.spot_fallback} until spot launches again or {retry} s pass without a "
            "failure",
            on_fallback=True,
        )
    return Placement(
        pool.capacity_provider,
        f"spot tried again: no failed launch in {group} for {retry} s "
        f"(last at {_clock(failure.at)})",
    )


def _last_launches(
    activities: tuple[LaunchActivity, ...],
) -> tuple[LaunchActivity | None, LaunchActivity | None]:
    """The newest failed and the newest successful launch."""
    failed = [a for a in activities if a.failed]
    done = [a for a in activities if a.status == "Successful"]
    return (
        max(failed, key=lambda a: a.at, default=None),
        max(done, key=lambda a: a.at, default=None),
    )


def _clock(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%H:%M:%SZ")


def _short(message: str, limit: int = 160) -> str:
    message = " ".join(message.split()) or "no reason given"
    return message if len(message) <= limit else message[: limit - 1] + "…"
