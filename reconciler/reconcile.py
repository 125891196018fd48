"""One reconcile cycle: load specs -> demand -> render desired -> observe -> runner states -> plan.

The glue every entry point shares (`plan`, `apply`, the sandbox, later the controller), so
they cannot drift apart. Applying is a separate, explicit step (`aws.executor`).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from .aws.observe import Observer
from .demand import DemandBook, PoolDemandSpec
from .demand.arrivals import ArrivalStore
from .demand.scaleset import ScaleSetDemand
from .github.client import GitHubError, Scope
from .github.groups import RunnerGroupAccessWatch, SpecGroup
from .github.registry import GitHubRunnerStates
from .github.releases import RunnerVersionWatch
from .plan.actions import Note, Plan
from .plan.desired import render_desired
from .plan.expectations import Expectations
from .plan.planner import plan as make_plan
from .plan.slo import ArrivalHistory
from .plan.state import DesiredState, ObservedState, RunnerState
from .plan.versions import (
    VersionCheck,
    check_runner_versions,
    running_versions,
    stale_version_notes,
)
from .runners import RunnerStateSource
from .spec.loader import SpecSet, load_specs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cycle:
    """Everything one cycle saw and decided."""

    spec_set: SpecSet
    desired: DesiredState
    observed: ObservedState
    runner_states: dict[str, RunnerState]
    plan: Plan
    demand_pools: tuple[PoolDemandSpec, ...] = ()
    version_checks: tuple[VersionCheck, ...] = ()  # empty when no version watch was given


def plan_cycle(
    spec_paths: Sequence[str | Path],
    observer: Observer,
    runner_source: RunnerStateSource,
    now: datetime.datetime,
    demand: DemandBook | None = None,
    versions: RunnerVersionWatch | None = None,
    scale_set_demand: ScaleSetDemand | None = None,
    expectations: Expectations | None = None,
    arrivals: ArrivalStore | None = None,
    group_access: RunnerGroupAccessWatch | None = None,
) -> Cycle:
    """Run one read-only cycle at `now` (schedules, ages) and return its plan (nothing is
    changed).

    With expectations (the controller's), the starts and stops earlier cycles issued are
    settled against this observation and the rest is counted by the planner.

    With a demand book, its queued jobs (refreshed from its store) raise each pool's target;
    if the store cannot be read, the last demand known is used and the plan says so. With a
    version watch, pools whose runner version is stale get a warning note. Pools whose
    ``demand.source`` is ``scaleSet`` take their pending jobs from `scale_set_demand` (their
    scale set's statistics) instead of the book. With a group access watch, a runner group
    whose access in GitHub differs from the specs' `runnerGroupAccess` is a warning (each group
    read at most once per the watch's ttl). With an arrival
    store, pools with a queue-wait objective (`scaling.slo`) size their warm runners from it;
    if it cannot be read they keep their floors and the plan says so.
    """
    began = time.monotonic()
    spec_set = load_specs(spec_paths)
    demand_pools = tuple(
        PoolDemandSpec.of(pool) for pool in spec_set.pools if pool.spec.demand.source == "webhook"
    )
    # the demand store (DynamoDB) is read while ECS is observed: what is observed depends on
    # the pools, clusters and providers, never on how many jobs wait (a 400-job burst: each
    # took 1-3 s on the sandbox, one after the other). Demand is still read before the runner
    # states (GitHub's busy): a job that starts in between counts twice for a cycle, never
    # not at all.
    structure = render_desired(spec_set, now, observer.clients.region)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="demand-load") as reading:
        loaded = reading.submit(demand.load, demand_pools) if demand is not None else None
        observed = observer.observe(structure)
        seen = time.monotonic()
        pending: dict[str, int] | None = None
        notes = []
        if loaded is not None and demand is not None:
            try:
                loaded.result()
            except (ClientError, BotoCoreError) as error:
                log.warning("demand store unreadable, using the last demand known: %s", error)
                notes.append(Note("warning", f"queued jobs not refreshed (demand store: {error})"))
            pending = demand.pending(demand_pools)
            notes.extend(refused_job_notes(demand.refused_by_groups(demand_pools), spec_set))
    if scale_set_demand is not None:
        scale_set_names = [
            p.metadata.name for p in spec_set.pools if p.spec.demand.source == "scaleSet"
        ]
        pending = {**(pending or {}), **scale_set_demand.pending(scale_set_names)}
    histories: dict[str, ArrivalHistory] | None = None
    slo_pools = slo_pool_names(spec_set)
    if arrivals is not None and slo_pools:
        try:
            histories = arrivals.load(slo_pools, now)
        except (ClientError, BotoCoreError) as error:
            log.warning("arrival store unreadable, queue-wait objectives not sized: %s", error)
            notes.append(Note("warning", f"learned arrivals not read (arrival store: {error})"))
    desired = render_desired(spec_set, now, observer.clients.region, pending, histories)
    read = time.monotonic()
    runner_states = runner_source.states([*observed.tasks, *observed.stopped_tasks])
    asked = time.monotonic()
    in_flight = None
    if expectations is not None:
        stopped = observer.stopped_among(expectations.unlisted(observed.tasks))
        in_flight = expectations.observe(observed.tasks, stopped)
    log.debug(
        "cycle inputs: specs and AWS observed %.2fs, then demand and arrivals %.2fs more, "
        "runner states %.2fs, starts and stops in flight %.2fs",
        seen - began,
        read - seen,
        asked - read,
        time.monotonic() - asked,
    )
    plan = make_plan(
        desired,
        observed,
        runner_states,
        spec_errors=tuple(str(d) for d in spec_set.errors),
        now=now,
        in_flight=in_flight,
    )
    checks: list[VersionCheck] = []
    if versions is not None:
        reported = (
            runner_source.versions(observed.tasks)
            if isinstance(runner_source, GitHubRunnerStates)
            else {}
        )
        checks, version_notes = check_spec_versions(spec_set, versions, now, reported)
        notes.extend(version_notes)
    if group_access is not None:
        notes.extend(Note("warning", text) for text in group_access.drift(spec_groups(spec_set)))
    if notes:
        plan = dataclasses.replace(plan, notes=plan.notes + tuple(notes))
    return Cycle(spec_set, desired, observed, runner_states, plan, demand_pools, tuple(checks))


def spec_groups(spec_set: SpecSet) -> list[SpecGroup]:
    """The enterprise and organization runner groups the pools name, with the access stated."""
    groups: dict[tuple[str, str, str], SpecGroup] = {}
    for pool in spec_set.pools:
        spec = pool.spec
        if spec.scope.kind == "repository":
            continue
        access = spec.runner_group_access
        names = (access.repositories or access.organizations or []) if access else None
        key = (spec.scope.kind, spec.scope.target.lower(), spec.runner_group)
        known = groups.get(key)
        groups[key] = SpecGroup(
            Scope(spec.scope.kind, spec.scope.target),  # type: ignore[arg-type]
            spec.runner_group,
            None if names is None else frozenset(name.lower() for name in names),
            (*(known.pools if known else ()), pool.metadata.name),
        )
    return list(groups.values())


def refused_job_notes(refused: Mapping[tuple[str, str], int], spec_set: SpecSet) -> list[Note]:
    """A warning per repository whose queued jobs fit a pool but not its runner group."""
    groups = {pool.metadata.name: pool.spec.runner_group for pool in spec_set.pools}
    return [
        Note(
            "warning",
            f"{count} queued job(s) of {repository} fit pool {pool}'s labels and scope, but its "
            f"runner group {groups.get(pool, '?')!r} does not admit the repository "
            "(runnerGroupAccess): GitHub will not hand them its runners; add the repository "
            "to the group (and to runnerGroupAccess) or give it a pool",
            pool,
        )
        for (pool, repository), count in sorted(refused.items())
    ]


def slo_pool_names(spec_set: SpecSet) -> list[str]:
    """The pools with a queue-wait objective."""
    return [pool.metadata.name for pool in spec_set.pools if pool.spec.scaling.slo is not None]


def check_spec_versions(
    spec_set: SpecSet,
    versions: RunnerVersionWatch,
    now: datetime.datetime,
    reported: Mapping[str, Iterable[str]] | None = None,
) -> tuple[list[VersionCheck], list[Note]]:
    """The pools' runner versions against the releases known, and the plan notes they make.

    A pool whose runners report an older version to GitHub (`reported`, by pool) is checked
    at that version. If GitHub cannot be read, the configured releases alone are used and a
    note says so.
    """
    notes: list[Note] = []
    try:
        published = versions.published()
    except GitHubError as error:
        log.warning("runner releases unreadable: %s", error)
        notes.append(Note("warning", f"runner releases not read ({error})"))
        published = list(versions.configured)
    spec_versions = {pool.metadata.name: pool.spec.runner.version for pool in spec_set.pools}
    running, running_notes = running_versions(spec_versions, reported or {})
    checks = check_runner_versions(running, published, now, versions.max_age)
    return checks, [*notes, *running_notes, *stale_version_notes(checks)]
