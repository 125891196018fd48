"""The blast-radius guard: which actions of a plan apply refuses without explicit consent."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from reconciler.plan.actions import Plan
from reconciler.plan.guard import GuardPolicy, refused_actions
from reconciler.plan.planner import plan
from reconciler.plan.state import ObservedCluster, family_of

from .test_planner import (
    NOW,
    converged,
    desired_of,
    empty_cluster,
    pool_spec,
    provider_of,
    provider_spec,
    revision_of,
    runners,
    states_of,
)


def two_pools(tmp_path: Path, codes: str, idle: int) -> Plan:
    """pool-a runs `codes` runners and wants `idle`; new pool-b registers and starts one."""
    observed = converged(desired_of(tmp_path, pool_spec(idle=len(codes)), provider_spec()))
    desired = desired_of(tmp_path, pool_spec(idle=idle), pool_spec("pool-b"), provider_spec())
    return plan(desired, observed, states_of(observed, codes), now=NOW)


STOP_SHARE_CASES = [
    # (pool-a runner codes, idle wanted, max_stop_share, refused)
    pytest.param("iiii", 0, 0.5, True, id="4 of 4 > 2"),
    pytest.param("iiii", 1, 0.5, True, id="3 of 4 > 2"),
    pytest.param("iiii", 2, 0.5, False, id="2 of 4 = 2"),
    pytest.param("iii", 1, 0.5, True, id="2 of 3 > int(1.5)"),
    pytest.param("i", 0, 0.5, False, id="1 of 1: at least 1 allowed"),
    pytest.param("iiii", 3, 0.0, False, id="share 0 still allows 1"),
    pytest.param("iiii", 0, 1.0, False, id="share 1 allows all"),
    pytest.param("iibb", 0, 0.5, False, id="busy runners count in the pool size"),
]


@pytest.mark.parametrize(("codes", "idle", "share", "refused"), STOP_SHARE_CASES)
def test_pool_stopping_more_than_its_share_is_refused_as_a_whole(
    tmp_path: Path, codes: str, idle: int, share: float, refused: bool
) -> None:
    result = two_pools(tmp_path, codes, idle)
    verdict = refused_actions(result, GuardPolicy(max_stop_share=share))
    pool_a = result.for_pool("pool-a")
    assert pool_a, "the case must stop runners of pool-a"
    assert sum(a.stops for a in pool_a) == len(codes) - max(idle, codes.count("b"))
    if refused:
        assert set(verdict) == set(pool_a)
        stops = sum(a.stops for a in pool_a)
        assert f"would stop {stops} of {len(codes)} runners of pool pool-a" in verdict[pool_a[0]]
        assert "--max-stop-share 1" in verdict[pool_a[0]]
    else:
        assert verdict == {}
    assert not set(verdict) & set(result.for_pool("pool-b")), "other pools proceed"


def test_rollout_replacements_count_as_stops(tmp_path: Path) -> None:
    old = desired_of(tmp_path, pool_spec(idle=4), provider_spec())
    observed = converged(old)
    new = desired_of(
        tmp_path,
        pool_spec(idle=4, version="2.329.0", extra="  rollout: {maxSurge: 4, canary: 0}\n"),
        provider_spec(),
    )
    result = plan(new, observed, states_of(observed), now=NOW)
    assert [a.action for a in result.actions] == ["update", "replace"]
    refused = refused_actions(result, GuardPolicy())
    assert set(refused) == set(result.actions), "the revision is refused with its rollout"
    assert refused_actions(result, GuardPolicy(max_stop_share=1.0)) == {}


def test_no_changes_nothing_refused(tmp_path: Path) -> None:
    desired = desired_of(tmp_path, pool_spec(), provider_spec())
    observed = converged(desired)
    assert (
        refused_actions(plan(desired, observed, states_of(observed), now=NOW), GuardPolicy()) == {}
    )
    assert refused_actions(Plan(), GuardPolicy()) == {}


def removed_pool(tmp_path: Path, codes: str) -> Plan:
    """pool-b with `codes` runners is removed from the specs (deletionPolicy Drain)."""
    before = desired_of(
        tmp_path, pool_spec(), pool_spec("pool-b", idle=len(codes)), provider_spec()
    )
    observed = converged(before)
    observed = dataclasses.replace(
        observed, tasks=[t for t in observed.tasks if t.pool == "pool-a"]
    )
    revision = observed.task_definitions[family_of("pool-b")][0]
    tasks, _ = runners(before, "pool-b", codes, revision, first=10)
    observed = dataclasses.replace(observed, tasks=observed.tasks + tasks)
    after = desired_of(tmp_path, pool_spec(), provider_spec())
    return plan(after, observed, states_of(observed, "i" + codes), now=NOW)


REMOVAL_CASES = [
    # (pool-b runner codes, policy, refused)
    pytest.param("ii", GuardPolicy(max_stop_share=1.0), True, id="no --allow-delete: refused"),
    pytest.param("", GuardPolicy(max_stop_share=1.0), True, id="no runner, still a removal"),
    pytest.param("ii", GuardPolicy(max_stop_share=1.0, allow_delete=True), False, id="allowed"),
    pytest.param("", GuardPolicy(allow_delete=True), False, id="allowed, nothing to stop"),
    pytest.param(
        "iibb",
        GuardPolicy(max_stop_share=0.5, allow_delete=True),
        False,
        id="allowed: 2 idle of 4 runners is within 50%",
    ),
]


@pytest.mark.parametrize(("codes", "policy", "refused"), REMOVAL_CASES)
def test_pool_removal_needs_allow_delete(
    tmp_path: Path, codes: str, policy: GuardPolicy, refused: bool
) -> None:
    result = removed_pool(tmp_path, codes)
    pool_b = result.for_pool("pool-b")
    assert pool_b and all(a.deletes_pool for a in pool_b)
    verdict = refused_actions(result, policy)
    if refused:
        assert set(verdict) == set(pool_b)
        assert all("would remove pool pool-b; pass --allow-delete" in r for r in verdict.values())
    else:
        assert verdict == {}, list(verdict.values())


def test_capacity_provider_deletion_needs_allow_delete(tmp_path: Path) -> None:
    desired = desired_of(tmp_path, pool_spec(), provider_spec())
    observed = converged(desired)
    observed = dataclasses.replace(
        observed,
        capacity_providers={**observed.capacity_providers, "old": provider_of("old", "ci-old")},
        clusters={"ci": ObservedCluster("ci", "ACTIVE", ("linux", "old"))},
    )
    result = plan(desired, observed, states_of(observed), now=NOW)
    delete = next(a for a in result.actions if a.address == "capacity_provider.old")
    refused = refused_actions(result, GuardPolicy(max_stop_share=1.0))
    assert refused == {
        delete: "would delete capacity_provider.old; pass --allow-delete to allow it"
    }
    assert refused_actions(result, GuardPolicy(allow_delete=True)) == {}


def test_creations_and_revision_clean_up_are_never_refused(tmp_path: Path) -> None:
    desired = desired_of(tmp_path, pool_spec(idle=3), provider_spec())
    empty = empty_cluster(desired)
    outdated = dataclasses.replace(
        revision_of(desired, "pool-a", 1),
        content={"family": "ecs-reconciler-pool-a"},
        content_hash="0" * 16,
    )
    observed = dataclasses.replace(empty, task_definitions={family_of("pool-a"): [outdated]})
    result = plan(desired, observed, {}, now=NOW)
    assert ("delete", "task_definition.pool-a[1]") in [
        (a.action, a.address) for a in result.actions
    ]
    assert refused_actions(result, GuardPolicy(max_stop_share=0.0)) == {}


def test_stop_reason_names_the_share_and_the_limit(tmp_path: Path) -> None:
    result = two_pools(tmp_path, "iiiiiiiiii", 0)
    [reason] = set(refused_actions(result, GuardPolicy(max_stop_share=0.25)).values())
    assert reason == (
        "would stop 10 of 10 runners of pool pool-a (limit 25%, at most 2); "
        "pass --max-stop-share 1 to allow it"
    )
