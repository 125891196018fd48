"""One reconcile cycle: load specs -> render desired -> observe -> runner states -> plan.

The glue every entry point shares (`plan`, `apply`, the sandbox, later the controller), so
they cannot drift apart. Applying is a separate, explicit step (`aws.executor`).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .aws.observe import Observer
from .plan.actions import Plan
from .plan.desired import render_desired
from .plan.planner import plan as make_plan
from .plan.state import DesiredState, ObservedState, RunnerState
from .runners import RunnerStateSource
from .spec.loader import SpecSet, load_specs


@dataclass(frozen=True)
class Cycle:
    """Everything one cycle saw and decided."""

    spec_set: SpecSet
    desired: DesiredState
    observed: ObservedState
    runner_states: dict[str, RunnerState]
    plan: Plan


def plan_cycle(
    spec_paths: Sequence[str | Path],
    observer: Observer,
    runner_source: RunnerStateSource,
    now: datetime.datetime | None = None,
) -> Cycle:
    """Run one read-only cycle and return its plan (nothing is changed)."""
    moment = now or datetime.datetime.now(datetime.UTC)
    spec_set = load_specs(spec_paths)
    desired = render_desired(spec_set, moment, observer.clients.region)
    observed = observer.observe(desired)
    runner_states = runner_source.states(observed.tasks)
    plan = make_plan(
        desired,
        observed,
        runner_states,
        spec_errors=tuple(str(d) for d in spec_set.errors),
        now=moment,
    )
    return Cycle(spec_set, desired, observed, runner_states, plan)
