"""The pure planner, table by table: specs rendered from small YAML texts, AWS built by hand.

No I/O beyond writing spec files to tmp_path: no moto, no network. The helpers at the top
are shared with test_guard.py and test_render.py.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import itertools
from pathlib import Path

import jsonpatch
import pytest

from reconciler.plan.actions import Action, Plan
from reconciler.plan.desired import desired_runner_count, idle_target_now, render_desired
from reconciler.plan.expectations import InFlight
from reconciler.plan.normalize import content_hash, normalize_task_definition
from reconciler.plan.planner import plan
from reconciler.plan.rollout import failure_of
from reconciler.plan.state import (
    DELETION_POLICY_TAG,
    MANAGED_BY_TAG,
    MANAGED_BY_VALUE,
    POOL_TAG,
    ROLLOUT_FAILURES_TAG,
    SPEC_HASH_TAG,
    DesiredState,
    ObservedCapacityProvider,
    ObservedCluster,
    ObservedState,
    ObservedTask,
    ObservedTaskDefinition,
    RunnerState,
    family_of,
)
from reconciler.spec.loader import load_specs
from reconciler.spec.models import Scaling

from .conftest import CAPACITY_PROVIDER, POOL

# ---------------------------------------------------------------------------- helpers

UTC = datetime.UTC
ACCOUNT = "arn:aws:ecs:us-east-1:123456789012"
MONDAY_10_TOKYO = datetime.datetime(2026, 11, 30, 1, 0, tzinfo=UTC)  # Monday 10:00 JST
NOW = MONDAY_10_TOKYO
SUBNET, SECURITY_GROUP = "subnet-0123456789abcdef0", "sg-0123456789abcdef0"
GROUPS = {
    name: f"arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:uuid-{name}:"
    f"autoScalingGroupName/{name}"
    for name in ("ci-linux", "ci-old", "ci-linux-v2", "ci-spot")
}
STATE_CODES = {"i": RunnerState.IDLE, "b": RunnerState.BUSY, "u": RunnerState.UNKNOWN}
SCALING_BLOCK = "    min: 0\n    max: 10\n    idle: 1\n"


def pool_spec(
    name: str = "pool-a",
    *,
    idle: int = 1,
    min_: int = 0,
    max_: int = 10,
    version: str = "2.328.0",
    schedules: str = "",
    extra: str = "",
    subnet: str = SUBNET,
) -> str:
    """POOL from conftest with a few fields changed; `extra` is appended under `spec:`."""
    text = (
        POOL.replace("name: pool-a", f"name: {name}")
        .replace("runner:2.328.0@", f"runner:{version}@")
        .replace(SUBNET, subnet)
        .replace(SCALING_BLOCK, f"    min: {min_}\n    max: {max_}\n    idle: {idle}\n")
    )
    return text + schedules + extra


def provider_spec(name: str = "linux", group: str = "ci-linux", extra: str = "") -> str:
    """CAPACITY_PROVIDER from conftest under another name / Auto Scaling group."""
    text = CAPACITY_PROVIDER.replace("name: linux", f"name: {name}")
    return text.replace("autoScalingGroup: ci-linux", f"autoScalingGroup: {group}") + extra


def desired_of(tmp_path: Path, *texts: str, now: datetime.datetime = NOW) -> DesiredState:
    """DesiredState of the spec texts, each written to its own file in a fresh directory."""
    root = tmp_path / f"specs-{len(list(tmp_path.iterdir()))}"
    root.mkdir()
    for index, text in enumerate(texts):
        (root / f"{index:03d}.yaml").write_text(text)
    return render_desired(load_specs([root]), now, "us-east-1")


def revision_of(
    desired: DesiredState, pool: str, number: int = 1, tags: dict[str, str] | None = None
) -> ObservedTaskDefinition:
    """A revision as the observer reports one registered from `desired` (normalized content)."""
    wanted = desired.pools[pool]
    content = normalize_task_definition(copy.deepcopy(wanted.task_definition))
    return ObservedTaskDefinition(
        arn=f"{ACCOUNT}:task-definition/{wanted.family}:{number}",
        family=wanted.family,
        revision=number,
        content=content,
        content_hash=content_hash(content),
        tags=dict(wanted.task_definition_tags if tags is None else tags),
    )


def task_of(
    pool: str,
    spec_hash: str,
    number: int,
    revision_arn: str = "",
    cluster: str = "ci",
    provider: str = "linux",
) -> ObservedTask:
    """A runner task of ours; `number` orders tasks by start time and names them."""
    return ObservedTask(
        arn=f"{ACCOUNT}:task/{cluster}/{pool}-{number:03d}",
        cluster=cluster,
        pool=pool,
        task_definition_arn=revision_arn,
        spec_hash=spec_hash,
        last_status="RUNNING",
        started_at=1_000.0 + number,
        tags={MANAGED_BY_TAG: MANAGED_BY_VALUE, POOL_TAG: pool, SPEC_HASH_TAG: spec_hash},
        capacity_provider=provider,
    )


def runners(
    desired: DesiredState, pool: str, codes: str, revision: ObservedTaskDefinition, first: int = 0
) -> tuple[list[ObservedTask], dict[str, RunnerState]]:
    """Tasks of `pool` on `revision`, one per code (i idle, b busy, u unknown), and states."""
    spec_hash = revision.tagged_hash or desired.pools[pool].spec_hash
    tasks = [
        task_of(pool, spec_hash, first + n, revision.arn, desired.pools[pool].cluster)
        for n in range(len(codes))
    ]
    return tasks, {t.arn: STATE_CODES[c] for t, c in zip(tasks, codes, strict=True)}


def provider_of(
    name: str, group: str = "ci-linux", settings: dict | None = None, owned: bool = True
) -> ObservedCapacityProvider:
    """An observed capacity provider with the default settings (those of the conftest spec)."""
    defaults = {
        "managedScaling": {
            "status": "ENABLED",
            "targetCapacity": 100,
            "minimumScalingStepSize": 1,
            "maximumScalingStepSize": 10_000,
            "instanceWarmupPeriod": 300,
        },
        "managedTerminationProtection": "DISABLED",
    }
    tags = {MANAGED_BY_TAG: MANAGED_BY_VALUE} if owned else {}
    return ObservedCapacityProvider(
        name, f"{ACCOUNT}:capacity-provider/{name}", GROUPS[group], settings or defaults, tags
    )


def converged(desired: DesiredState, codes: str | None = None) -> ObservedState:
    """AWS once `desired` was applied: one revision per pool and its runners (all idle).

    `codes` overrides the runners of every pool (`""` for none); runner states come from
    `states_of` or `runners`.
    """
    providers = {
        name: ObservedCapacityProvider(
            name,
            f"{ACCOUNT}:capacity-provider/{name}",
            GROUPS[provider.auto_scaling_group],
            copy.deepcopy(provider.settings),
            dict(provider.tags),
        )
        for name, provider in desired.capacity_providers.items()
    }
    revisions = {pool.family: [revision_of(desired, name)] for name, pool in desired.pools.items()}
    tasks = [
        task_of(name, pool.spec_hash, n, revisions[pool.family][0].arn, pool.cluster)
        for name, pool in desired.pools.items()
        for n in range(pool.desired_count if codes is None else len(codes))
    ]
    clusters = {
        name: ObservedCluster(
            name,
            "ACTIVE",
            tuple(sorted(p for p, cp in desired.capacity_providers.items() if cp.cluster == name)),
        )
        for name in desired.clusters
    }
    return ObservedState(
        clusters=clusters,
        capacity_providers=providers,
        task_definitions=revisions,
        tasks=tasks,
        auto_scaling_groups={**GROUPS, **{arn: arn for arn in GROUPS.values()}},
        subnets={SUBNET: SUBNET},
        security_groups={SECURITY_GROUP: SECURITY_GROUP},
    )


def empty_cluster(desired: DesiredState) -> ObservedState:
    """The clusters exist with no capacity provider; no revision, no task."""
    observed = converged(desired, "")
    return dataclasses.replace(
        observed,
        clusters={name: ObservedCluster(name, "ACTIVE", ()) for name in desired.clusters},
        capacity_providers={},
        task_definitions={},
    )


def states_of(observed: ObservedState, codes: str | None = None) -> dict[str, RunnerState]:
    """Runner states of all observed tasks: all idle, or one code per task in order."""
    if codes is None:
        return {t.arn: RunnerState.IDLE for t in observed.tasks}
    return {t.arn: STATE_CODES[c] for t, c in zip(observed.tasks, codes, strict=True)}


def kinds(result: Plan) -> list[tuple[str, str]]:
    """(action, address) of every action, in plan order."""
    return [(a.action, a.address) for a in result.actions]


def only(result: Plan, action: str, address: str) -> Action:
    """The single action of that kind and address."""
    [found] = [a for a in result.actions if a.action == action and a.address == address]
    return found


def messages(result: Plan, severity: str | None = None) -> str:
    """All note messages (of one severity), one per line, for substring assertions."""
    return "\n".join(n.message for n in result.notes if severity in (None, n.severity))


def stopped_arns(result: Plan) -> set[str]:
    """Every task ARN any action of the plan would stop."""
    return {arn for action in result.actions for arn in action.task_arns}


@pytest.fixture
def desired(tmp_path: Path) -> DesiredState:
    """One pool (idle 1) on one capacity provider in cluster ci."""
    return desired_of(tmp_path, pool_spec(), provider_spec())


# ---------------------------------------------------------------------------- creation, no-op


def test_empty_cluster_creates_providers_association_revision_and_runners(
    tmp_path: Path,
) -> None:
    desired = desired_of(tmp_path, pool_spec(idle=3), provider_spec())
    result = plan(desired, empty_cluster(desired), {}, now=NOW)

    assert kinds(result) == [
        ("create", "capacity_provider.linux"),
        ("update", "cluster_capacity_providers.ci"),
        ("create", "task_definition.pool-a"),
        ("run", "runner_tasks.pool-a"),
    ]
    association = only(result, "update", "cluster_capacity_providers.ci")
    assert association.before == {"capacityProviders": []}
    assert association.after == {"capacityProviders": ["linux"]}
    assert "attach linux" in association.reason
    revision = only(result, "create", "task_definition.pool-a")
    assert revision.after["tags"] == desired.pools["pool-a"].task_definition_tags
    run = only(result, "run", "runner_tasks.pool-a")
    assert run.count == 3 and run.task_arns == ()
    assert run.spec_hash == desired.pools["pool-a"].spec_hash
    assert run.after["network"] == {"subnets": [SUBNET], "securityGroups": [SECURITY_GROUP]}
    assert result.summary_line() == (
        "Plan: 2 to create, 1 to update, 0 to replace, 0 to delete; runners: 3 to start, 0 to stop."
    )


CONVERGED_CASES = [
    pytest.param((pool_spec(), provider_spec()), id="one pool"),
    pytest.param((pool_spec(idle=0), provider_spec()), id="no runner wanted"),
    pytest.param((pool_spec(), pool_spec("pool-b", idle=2), provider_spec()), id="two pools"),
    pytest.param(
        (
            pool_spec(extra="  rollout: {maxSurge: 2}\n  deletionPolicy: Orphan\n"),
            provider_spec(extra="  tags: {team: ci}\n  managedScaling: {targetCapacity: 80}\n"),
        ),
        id="non-default settings and tags",
    ),
]


@pytest.mark.parametrize("texts", CONVERGED_CASES)
def test_converged_state_has_no_changes(tmp_path: Path, texts: tuple[str, ...]) -> None:
    desired = desired_of(tmp_path, *texts)
    observed = converged(desired)
    result = plan(desired, observed, states_of(observed), now=NOW)
    assert kinds(result) == []
    assert not result.has_changes
    assert result.summary_line() == "No changes. ECS matches the specs."
    assert not [n for n in result.notes if n.severity != "info"]


def test_aws_defaults_in_a_described_revision_are_no_diff(desired: DesiredState) -> None:
    """A DescribeTaskDefinition answer (AWS defaults filled in) normalizes to the desired one."""
    wanted = desired.pools["pool-a"]
    described = copy.deepcopy(wanted.task_definition)
    described.update(
        taskDefinitionArn=f"{ACCOUNT}:task-definition/{wanted.family}:1",
        revision=1,
        status="ACTIVE",
        placementConstraints=[],
        compatibilities=["EC2"],
        registeredAt="2026-01-01T00:00:00Z",
    )
    for container in described["containerDefinitions"]:
        container.update(cpu=0, essential=True, portMappings=[], volumesFrom=[], systemControls=[])
        for mount in container.get("mountPoints", []):
            mount.setdefault("readOnly", False)
    content = normalize_task_definition(described)
    assert content == wanted.task_definition
    revision = dataclasses.replace(
        revision_of(desired, "pool-a"), content=content, content_hash=content_hash(content)
    )
    observed = dataclasses.replace(converged(desired), task_definitions={wanted.family: [revision]})
    assert not plan(desired, observed, states_of(observed), now=NOW).has_changes


# ---------------------------------------------------------------------------- determinism


def _rolling(tmp_path: Path) -> tuple[DesiredState, ObservedState, dict[str, RunnerState]]:
    old = desired_of(tmp_path, pool_spec(idle=4), provider_spec())
    new = desired_of(tmp_path, pool_spec(idle=3, version="2.329.0"), provider_spec())
    observed = converged(old)
    return new, observed, states_of(observed, "biiu")


def _draining(tmp_path: Path) -> tuple[DesiredState, ObservedState, dict[str, RunnerState]]:
    both = desired_of(tmp_path, pool_spec(idle=3), pool_spec("pool-b", idle=2), provider_spec())
    observed = converged(both)
    after = desired_of(tmp_path, pool_spec(idle=3), provider_spec())
    return after, observed, states_of(observed, "iiibi")


def _creating(tmp_path: Path) -> tuple[DesiredState, ObservedState, dict[str, RunnerState]]:
    desired = desired_of(tmp_path, pool_spec(idle=2), pool_spec("pool-b"), provider_spec())
    return desired, empty_cluster(desired), {}


def _shuffled(observed: ObservedState) -> ObservedState:
    """The same facts in another order (ECS lists tasks in no particular order)."""
    return dataclasses.replace(
        observed,
        tasks=list(reversed(observed.tasks)),
        capacity_providers=dict(reversed(observed.capacity_providers.items())),
        task_definitions=dict(reversed(observed.task_definitions.items())),
        clusters=dict(reversed(observed.clusters.items())),
    )


@pytest.mark.parametrize(
    "scenario", [_creating, _rolling, _draining], ids=["create", "rollout", "drain"]
)
def test_plans_are_deterministic(tmp_path: Path, scenario) -> None:
    desired, observed, states = scenario(tmp_path)
    first = plan(desired, observed, states, now=NOW)
    again = plan(desired, observed, dict(states), now=NOW)
    reordered = plan(desired, _shuffled(observed), dict(reversed(states.items())), now=NOW)
    assert first.has_changes
    assert first.to_json() == again.to_json() == reordered.to_json()
    assert first.to_json()["generated_at"] == NOW.isoformat(timespec="seconds")


# ---------------------------------------------------------------------------- capacity providers


def test_foreign_providers_stay_in_the_association(desired: DesiredState) -> None:
    """PutClusterCapacityProviders replaces the whole list: entries we do not own are kept."""
    observed = converged(desired)
    observed = dataclasses.replace(
        observed,
        clusters={"ci": ObservedCluster("ci", "ACTIVE", ("FARGATE", "team-owned"))},
        capacity_providers={
            **observed.capacity_providers,
            "team-owned": provider_of("team-owned", owned=False),
        },
    )
    result = plan(desired, observed, states_of(observed), now=NOW)
    assert kinds(result) == [("update", "cluster_capacity_providers.ci")]
    association = result.actions[0]
    assert association.after == {"capacityProviders": ["FARGATE", "linux", "team-owned"]}
    assert "attach linux" in association.reason and "detach" not in association.reason
    assert jsonpatch.apply_patch(association.before, association.patch) == association.after


def _with_old_provider(
    desired: DesiredState, *, owned: bool = True, task_on_it: bool = False
) -> tuple[ObservedState, dict[str, RunnerState]]:
    observed = converged(desired)
    tasks = list(observed.tasks)
    if task_on_it:
        tasks[0] = dataclasses.replace(tasks[0], capacity_provider="old")
    observed = dataclasses.replace(
        observed,
        tasks=tasks,
        capacity_providers={
            **observed.capacity_providers,
            "old": provider_of("old", "ci-old", owned=owned),
        },
        clusters={"ci": ObservedCluster("ci", "ACTIVE", ("FARGATE", "linux", "old"))},
    )
    return observed, {t.arn: RunnerState.IDLE for t in tasks}


REMOVED_PROVIDER_CASES = [
    # (owned, a task on it, spec set complete, expected actions, note)
    pytest.param(
        True,
        False,
        True,
        [("update", "cluster_capacity_providers.ci"), ("delete", "capacity_provider.old")],
        None,
        id="ours and unused: detached then deleted",
    ),
    pytest.param(
        True, True, True, [], "kept while 1 task(s) still run on it", id="ours but in use: kept"
    ),
    pytest.param(
        True, False, False, [], "is not in the specs; kept (spec errors)", id="spec errors: kept"
    ),
    pytest.param(False, False, True, [], None, id="not ours: never touched"),
]


@pytest.mark.parametrize(
    ("owned", "in_use", "complete", "expected", "note"), REMOVED_PROVIDER_CASES
)
def test_provider_removed_from_specs(
    tmp_path: Path,
    owned: bool,
    in_use: bool,
    complete: bool,
    expected: list[tuple[str, str]],
    note: str | None,
) -> None:
    texts = [pool_spec(), provider_spec()] + ([] if complete else ["kind: [\n"])
    desired = desired_of(tmp_path, *texts)
    assert desired.complete is complete
    observed, states = _with_old_provider(desired, owned=owned, task_on_it=in_use)
    result = plan(desired, observed, states, now=NOW)
    assert kinds(result) == expected
    if expected:
        association, delete = result.actions
        assert association.before == {"capacityProviders": ["FARGATE", "linux", "old"]}
        assert association.after == {"capacityProviders": ["FARGATE", "linux"]}
        assert "detach old" in association.reason
        assert delete.pool is None and delete.patch == [{"op": "remove", "path": ""}]
    if note:
        assert note in messages(result)


def test_foreign_provider_with_a_spec_name_is_never_changed(desired: DesiredState) -> None:
    observed = converged(desired)
    foreign = provider_of("linux", "ci-old", owned=False)  # other group, no managed-by tag
    result = plan(
        desired,
        dataclasses.replace(observed, capacity_providers={"linux": foreign}),
        states_of(observed),
        now=NOW,
    )
    assert not [a for a in result.actions if a.resource_type == "capacity_provider"]
    assert "linux exists but was not created by ecs-reconciler" in messages(result, "warning")


def _drifted(settings: dict, path: tuple[str, ...], value: object) -> dict:
    changed = copy.deepcopy(settings)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


PROVIDER_DRIFT_CASES = [
    # (field path changed by hand, value found, JSON pointer, value wanted)
    pytest.param(
        ("managedScaling", "targetCapacity"),
        50,
        "/managedScaling/targetCapacity",
        100,
        id="targetCapacity",
    ),
    pytest.param(
        ("managedScaling", "status"), "DISABLED", "/managedScaling/status", "ENABLED", id="status"
    ),
    pytest.param(
        ("managedTerminationProtection",),
        "ENABLED",
        "/managedTerminationProtection",
        "DISABLED",
        id="termination protection",
    ),
]


@pytest.mark.parametrize(("path", "found", "pointer", "wanted"), PROVIDER_DRIFT_CASES)
def test_provider_settings_drift_is_an_update_with_a_patch(
    desired: DesiredState, path: tuple[str, ...], found: object, pointer: str, wanted: object
) -> None:
    observed = converged(desired)
    current = observed.capacity_providers["linux"]
    drifted = dataclasses.replace(current, settings=_drifted(current.settings, path, found))
    result = plan(
        desired,
        dataclasses.replace(observed, capacity_providers={"linux": drifted}),
        states_of(observed),
        now=NOW,
    )
    assert kinds(result) == [("update", "capacity_provider.linux")]
    update = result.actions[0]
    assert update.patch == [{"op": "replace", "path": pointer, "value": wanted}]
    assert update.before["autoScalingGroupArn"] == update.after["autoScalingGroupArn"]


@pytest.mark.parametrize(
    ("codes", "expected", "note"),
    [
        pytest.param("", [("replace", "capacity_provider.linux")], None, id="unused: replaced"),
        pytest.param("b", [], "held while 1 task(s) run on it", id="in use: held"),
    ],
)
def test_provider_auto_scaling_group_change_is_a_replacement(
    tmp_path: Path, codes: str, expected: list, note: str | None
) -> None:
    idle = len(codes) - codes.count("b")  # busy runners come on top of the idle target
    before = desired_of(tmp_path, pool_spec(idle=idle), provider_spec())
    observed = converged(before, codes)
    after = desired_of(tmp_path, pool_spec(idle=idle), provider_spec(group="ci-linux-v2"))
    result = plan(after, observed, states_of(observed, codes), now=NOW)
    assert kinds(result) == expected
    if expected:
        replace = result.actions[0]
        assert {
            "op": "replace",
            "path": "/autoScalingGroupArn",
            "value": GROUPS["ci-linux-v2"],
        } in (replace.patch)
    if note:
        assert note in messages(result, "warning")


def test_missing_auto_scaling_group_blocks_the_pools_on_it(desired: DesiredState) -> None:
    observed = dataclasses.replace(
        empty_cluster(desired), auto_scaling_groups={}, capacity_providers={}
    )
    result = plan(desired, observed, {}, now=NOW)
    assert kinds(result) == [("create", "task_definition.pool-a")]
    errors = messages(result, "error")
    assert "Auto Scaling group 'ci-linux' not found" in errors
    assert "no runner is started" in errors


# ---------------------------------------------------------------------------- task definitions


def test_image_bump_registers_one_revision_with_an_image_patch(tmp_path: Path) -> None:
    old = desired_of(tmp_path, pool_spec(), provider_spec())
    new = desired_of(tmp_path, pool_spec(version="2.329.0"), provider_spec())
    observed = converged(old)
    result = plan(new, observed, states_of(observed, "b"), now=NOW)
    [register] = [a for a in result.actions if a.resource_type == "task_definition"]
    assert (register.action, register.address) == ("update", "task_definition.pool-a")
    assert register.spec_hash == new.pools["pool-a"].spec_hash != old.pools["pool-a"].spec_hash
    image_ops = [op for op in register.patch if op["path"].endswith("/image")]
    assert image_ops == [
        {
            "op": "replace",
            "path": "/containerDefinitions/1/image",
            "value": new.pools["pool-a"].task_definition["containerDefinitions"][1]["image"],
        }
    ]
    assert "runner:2.329.0@" in image_ops[0]["value"]
    tag_op = {"op": "replace", "path": f"/tags/{SPEC_HASH_TAG}", "value": register.spec_hash}
    assert tag_op in register.patch


OLD_REVISION_CASES = [
    # (runner codes still on the old revision, old revision deleted)
    pytest.param("", True, id="unused: deleted"),
    pytest.param("b", False, id="busy runner on it: kept"),
    pytest.param("u", False, id="unknown runner on it: kept"),
]


@pytest.mark.parametrize(("codes", "deleted"), OLD_REVISION_CASES)
def test_outdated_revision_is_deleted_only_when_no_task_uses_it(
    tmp_path: Path, codes: str, deleted: bool
) -> None:
    old = desired_of(tmp_path, pool_spec(idle=1), provider_spec())
    new = desired_of(tmp_path, pool_spec(idle=1 + len(codes), version="2.329.0"), provider_spec())
    family = new.pools["pool-a"].family
    old_revision, new_revision = revision_of(old, "pool-a", 1), revision_of(new, "pool-a", 2)
    current, current_states = runners(new, "pool-a", "i", new_revision, first=10)
    outdated, outdated_states = runners(old, "pool-a", codes, old_revision)
    observed = dataclasses.replace(
        converged(new),
        task_definitions={family: [old_revision, new_revision]},
        tasks=outdated + current,
    )
    result = plan(new, observed, {**outdated_states, **current_states}, now=NOW)
    assert (("delete", "task_definition.pool-a[1]") in kinds(result)) is deleted
    assert ("delete", "task_definition.pool-a[2]") not in kinds(result)
    assert not [a for a in result.actions if a.action in ("create", "update")]
    if deleted:
        assert "outdated" in only(result, "delete", "task_definition.pool-a[1]").reason


def test_revision_registered_by_hand_is_never_deleted(desired: DesiredState) -> None:
    observed = converged(desired)
    family = desired.pools["pool-a"].family
    hand_made = dataclasses.replace(revision_of(desired, "pool-a", 2), tags={"team": "ci"})
    other = dataclasses.replace(hand_made, revision=3, arn=hand_made.arn[:-1] + "3", content={})
    result = plan(
        desired,
        dataclasses.replace(
            observed,
            task_definitions={family: [*observed.task_definitions[family], hand_made, other]},
        ),
        states_of(observed),
        now=NOW,
    )
    assert kinds(result) == []
    warnings = messages(result, "warning")
    assert f"{family}:2 was registered outside ecs-reconciler" in warnings
    assert f"{family}:3 was registered outside ecs-reconciler" in warnings


@pytest.mark.parametrize(
    ("codes", "deleted"),
    [pytest.param("", True, id="unused: deleted"), pytest.param("b", False, id="in use: kept")],
)
def test_revision_of_ours_changed_by_hand_is_deleted_as_drift(
    desired: DesiredState, codes: str, deleted: bool
) -> None:
    observed = converged(desired)
    family = desired.pools["pool-a"].family
    ours = observed.task_definitions[family][0]
    content = {**ours.content, "cpu": "4096"}  # registered by hand with our tags copied
    tampered = dataclasses.replace(
        revision_of(desired, "pool-a", 2), content=content, content_hash=content_hash(content)
    )
    assert tampered.owned and tampered.content_hash != tampered.tagged_hash
    tasks, states = runners(desired, "pool-a", codes, tampered, first=10)
    observed = dataclasses.replace(
        observed, task_definitions={family: [ours, tampered]}, tasks=observed.tasks + tasks
    )
    result = plan(desired, observed, {**states_of(observed, "i" + codes), **states}, now=NOW)
    revision_actions = [a for a in result.actions if a.resource_type == "task_definition"]
    assert [a.address for a in revision_actions] == (
        ["task_definition.pool-a[2]"] if deleted else []
    )
    if deleted:
        assert revision_actions[0].action == "delete" and "drift" in revision_actions[0].reason


def test_only_tampered_revisions_register_a_fresh_one(desired: DesiredState) -> None:
    """When the only revision of ours was changed by hand, a clean one is registered."""
    observed = converged(desired, "")
    family = desired.pools["pool-a"].family
    ours = observed.task_definitions[family][0]
    content = {**ours.content, "memory": "8192"}
    tampered = dataclasses.replace(ours, content=content, content_hash=content_hash(content))
    result = plan(
        desired, dataclasses.replace(observed, task_definitions={family: [tampered]}), {}, now=NOW
    )
    assert kinds(result) == [
        ("update", "task_definition.pool-a"),
        ("run", "runner_tasks.pool-a"),
        ("delete", "task_definition.pool-a[1]"),
    ]
    assert "drift" in only(result, "delete", "task_definition.pool-a[1]").reason


@pytest.mark.parametrize(
    "change",
    [
        pytest.param("  deletionPolicy: Orphan\n", id="deletionPolicy Drain -> Orphan"),
        pytest.param("  tags: {team: ci}\n", id="pool tags added"),
    ],
)
def test_tag_only_spec_change_is_planned(tmp_path: Path, change: str) -> None:
    """Revision tags must follow the spec: the deletion-policy tag is what a later removal
    obeys, so without this an Orphan pool still says Drain in ECS and would be drained."""
    old = desired_of(tmp_path, pool_spec(), provider_spec())
    new = desired_of(tmp_path, pool_spec(extra=change), provider_spec())
    assert new.pools["pool-a"].spec_hash == old.pools["pool-a"].spec_hash  # content unchanged
    observed = converged(old)
    result = plan(new, observed, states_of(observed), now=NOW)
    wanted = new.pools["pool-a"].task_definition_tags
    retagged = [
        a
        for a in result.actions
        if a.resource_type == "task_definition" and (a.after or {}).get("tags") == wanted
    ]
    assert retagged, f"revision tags differ from the spec but the plan is {kinds(result)}"


# ---------------------------------------------------------------------------- rollout

ROLLOUT_CASES = [
    # (outdated runner codes, new runner codes, maxSurge, canary, outdated indexes replaced)
    pytest.param("iiii", "", 2, 0, [0, 1], id="oldest idle first, maxSurge at a time"),
    pytest.param("biii", "", 2, 0, [1, 2], id="busy outdated skipped"),
    pytest.param("uiii", "", 2, 0, [1, 2], id="unknown outdated skipped"),
    pytest.param("iii", "u", 2, 0, [0], id="a starting new runner takes a surge place"),
    pytest.param("ii", "uu", 2, 0, [], id="surge used up by starting runners"),
    pytest.param("ii", "ii", 2, 0, [0, 1], id="idle new runners free the surge"),
    pytest.param("bbbb", "", 2, 0, [], id="all busy: nothing replaced"),
    pytest.param("iiii", "", "25%", 0, [0], id="25% of 4 is 1"),
    pytest.param("iiiiiii", "", "50%", 0, [0, 1, 2, 3], id="50% of 7 rounds up to 4"),
    pytest.param("iiii", "", 2, 1, [0], id="canary first: one runner on the new revision"),
    pytest.param("iiii", "", 3, 2, [0, 1], id="canary 2"),
    pytest.param("iii", "u", 2, 1, [], id="canary not online yet: nothing more replaced"),
    pytest.param("iii", "i", 2, 1, [0, 1], id="canary online: maxSurge at a time"),
    pytest.param("iii", "b", 2, 1, [0, 1], id="canary busy (took a job): maxSurge at a time"),
]


@pytest.mark.parametrize(
    ("outdated_codes", "new_codes", "surge", "canary", "replaced"), ROLLOUT_CASES
)
def test_image_bump_rolls_canary_first_then_by_max_surge(
    tmp_path: Path,
    outdated_codes: str,
    new_codes: str,
    surge: int | str,
    canary: int,
    replaced: list[int],
) -> None:
    codes = outdated_codes + new_codes
    size = len(codes) - codes.count("b")  # busy runners come on top of the idle target
    rollout = f"  rollout: {{maxSurge: {surge}, canary: {canary}}}\n"
    old = desired_of(tmp_path, pool_spec(idle=size), provider_spec())
    new = desired_of(
        tmp_path, pool_spec(idle=size, version="2.329.0", extra=rollout), provider_spec()
    )
    family = new.pools["pool-a"].family
    old_revision, new_revision = revision_of(old, "pool-a", 1), revision_of(new, "pool-a", 2)
    outdated, outdated_states = runners(old, "pool-a", outdated_codes, old_revision)
    fresh, fresh_states = runners(new, "pool-a", new_codes, new_revision, first=100)
    registered = [old_revision, new_revision] if new_codes else [old_revision]
    observed = dataclasses.replace(
        converged(new), task_definitions={family: registered}, tasks=outdated + fresh
    )
    states = {**outdated_states, **fresh_states}
    result = plan(new, observed, states, now=NOW)

    expected = [] if new_codes else [("update", "task_definition.pool-a")]
    if replaced:
        expected.append(("replace", "runner_tasks.pool-a"))
    assert kinds(result) == expected
    if replaced:
        replace = only(result, "replace", "runner_tasks.pool-a")
        assert replace.task_arns == tuple(outdated[i].arn for i in replaced)
        assert replace.count == len(replaced)
        assert replace.spec_hash == new.pools["pool-a"].spec_hash
    assert not stopped_arns(result) & {a for a, s in states.items() if s != RunnerState.IDLE}
    if set(outdated_codes) & {"b", "u"}:
        assert "finish their job before being replaced" in messages(result, "info")


def test_the_runners_a_rollout_replaces_do_not_change_when_a_task_reaches_running(
    tmp_path: Path,
) -> None:
    """Oldest is by ECS `createdAt`: `startedAt` appears only at RUNNING, so two plans a moment
    apart (the CLI's plan and the apply's) would otherwise pick different runners."""
    old = desired_of(tmp_path, pool_spec(idle=3), provider_spec())
    new = desired_of(tmp_path, pool_spec(idle=3, version="2.329.0"), provider_spec())
    old_revision = revision_of(old, "pool-a", 1)
    outdated, states = runners(old, "pool-a", "iii", old_revision)
    created = [dataclasses.replace(t, created_at=t.started_at) for t in outdated]
    # the oldest task was PENDING (no startedAt) and has just reached RUNNING: a late startedAt
    running = [dataclasses.replace(created[0], started_at=9_999.0), *created[1:]]
    picks = []
    for tasks in (created, running):
        observed = dataclasses.replace(
            converged(new),
            task_definitions={new.pools["pool-a"].family: [old_revision]},
            tasks=tasks,
        )
        picks.append(only(plan(new, observed, states, now=NOW), "replace", "runner_tasks.pool-a"))
    assert picks[0].task_arns == picks[1].task_arns == (outdated[0].arn,)


# ---------------------------------------------------------------------------- scaling

SCALE_CASES = [
    # (runner codes: i/b/u current, I outdated idle; desired idle; expected actions as
    #  (action, indexes of stopped tasks, runners started); note expected)
    pytest.param("iii", 1, [("stop", [0, 1], 0)], None, id="scale in stops idle, oldest first"),
    pytest.param("iIiI", 2, [("stop", [1, 3], 0)], None, id="scale in stops outdated idle first"),
    pytest.param(
        "iIIi", 3, [("replace", [2], 1), ("stop", [1], 0)], None, id="scale in, then roll the rest"
    ),
    pytest.param("biu", 1, [("stop", [1], 0)], None, id="busy/unknown kept"),
    pytest.param("bu", 0, [], "1 runner(s) above target kept", id="nothing idle: unknown held"),
    pytest.param("ii", 2, [], None, id="at target"),
    pytest.param("i", 3, [("run", [], 2)], None, id="scale out"),
    pytest.param("bb", 3, [("run", [], 3)], None, id="busy runners are not warm: idle on top"),
    pytest.param("bbbbbbbbb", 3, [("run", [], 1)], None, id="busy + idle capped by max"),
    pytest.param("", 0, [], None, id="empty and nothing wanted"),
]


@pytest.mark.parametrize(("codes", "idle", "expected", "note"), SCALE_CASES)
def test_scaling(tmp_path: Path, codes: str, idle: int, expected: list, note: str | None) -> None:
    old = desired_of(tmp_path, pool_spec(version="2.327.0"), provider_spec())
    desired = desired_of(tmp_path, pool_spec(idle=idle), provider_spec())
    family = desired.pools["pool-a"].family
    old_revision, revision = revision_of(old, "pool-a", 1), revision_of(desired, "pool-a", 2)
    tasks: list[ObservedTask] = []
    states: dict[str, RunnerState] = {}
    for number, code in enumerate(codes):
        (task,), state = runners(
            old if code == "I" else desired,
            "pool-a",
            code.lower(),
            old_revision if code == "I" else revision,
            first=number,
        )
        tasks.append(task)
        states.update(state)
    observed = dataclasses.replace(
        converged(desired), task_definitions={family: [old_revision, revision]}, tasks=tasks
    )
    result = plan(desired, observed, states, now=NOW)
    index = {task.arn: number for number, task in enumerate(tasks)}
    assert [
        (a.action, [index[arn] for arn in a.task_arns], a.count)
        for a in result.actions
        if a.resource_type == "runner_tasks"
    ] == expected
    assert not stopped_arns(result) & {a for a, s in states.items() if s != RunnerState.IDLE}
    if note:
        assert note in messages(result, "info")


@pytest.fixture(scope="module")
def sweep_states(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DesiredState]:
    """Specs for the sweep: an old revision, new ones at several sizes, pool-a removed."""
    root = tmp_path_factory.mktemp("sweep")
    states = {"old": desired_of(root, pool_spec(version="2.327.0"), provider_spec())}
    for idle in (0, 1, 3):
        states[f"idle {idle}"] = desired_of(root, pool_spec(idle=idle), provider_spec())
    states["removed"] = desired_of(root, pool_spec("pool-b"), provider_spec())
    return states


def test_busy_or_unknown_runners_are_never_stopped(sweep_states: dict[str, DesiredState]) -> None:
    """Every mix of 3 runners (idle/busy/unknown, current/outdated) against every target.

    Lower case codes run the current revision, upper case an outdated one."""
    old = sweep_states["old"]
    old_revision = revision_of(old, "pool-a", 1)
    checked, stopping = 0, 0
    for target in ("idle 0", "idle 1", "idle 3", "removed"):
        desired = sweep_states[target]
        current = desired.pools.get("pool-a") or sweep_states["idle 1"].pools["pool-a"]
        revision = dataclasses.replace(
            revision_of(sweep_states["idle 1"], "pool-a", 2),
            tags=dict(current.task_definition_tags),
        )
        for mix in itertools.product("ibuIBU", repeat=3):
            tasks: list[ObservedTask] = []
            states: dict[str, RunnerState] = {}
            for number, code in enumerate(mix):
                source = old if code.isupper() else sweep_states["idle 1"]
                on = old_revision if code.isupper() else revision
                (task,), state = runners(source, "pool-a", code.lower(), on, first=number)
                tasks.append(task)
                states.update(state)
            observed = dataclasses.replace(
                converged(desired, ""),
                tasks=tasks,
                task_definitions={family_of("pool-a"): [old_revision, revision]},
            )
            result = plan(desired, observed, states, now=NOW)
            held = {arn for arn, state in states.items() if state is not RunnerState.IDLE}
            assert not stopped_arns(result) & held, (target, "".join(mix), kinds(result))
            assert len(stopped_arns(result)) == sum(a.stops for a in result.actions)
            checked += 1
            stopping += bool(stopped_arns(result))
    assert checked == 4 * 6**3 and stopping > 100


# ---------------------------------------------------------------------------- idle schedules

WEEKDAYS_9_TO_19 = """\
    schedules:
      - {days: [mon, tue, wed, thu, fri], from: "09:00", to: "19:00", timezone: Asia/Tokyo, idle: 8}
"""
SATURDAY_10_TOKYO = datetime.datetime(2026, 11, 28, 1, 0, tzinfo=UTC)


def _utc(day: int, hour: int, minute: int = 0) -> datetime.datetime:
    return datetime.datetime(2026, 11, day, hour, minute, tzinfo=UTC)


SCHEDULE_CASES = [
    # (now, min, base idle, max, schedule active, expected desired count)
    pytest.param(MONDAY_10_TOKYO, 0, 1, 10, True, 8, id="monday 10:00 JST: schedule"),
    pytest.param(SATURDAY_10_TOKYO, 0, 1, 10, False, 1, id="saturday: base idle"),
    pytest.param(_utc(30, 10), 0, 1, 10, False, 1, id="monday 19:00 JST: window ended"),
    pytest.param(_utc(30, 9, 59), 0, 1, 10, True, 8, id="monday 18:59 JST: still in"),
    pytest.param(_utc(30, 0), 0, 1, 10, True, 8, id="monday 09:00 JST: window starts"),
    pytest.param(_utc(29, 23, 59), 0, 1, 10, False, 1, id="monday 08:59 JST: not yet"),
    pytest.param(_utc(29, 16), 0, 1, 10, False, 1, id="sunday in UTC, monday 01:00 JST"),
    pytest.param(_utc(27, 11), 0, 1, 10, False, 1, id="friday in UTC, friday 20:00 JST"),
    pytest.param(MONDAY_10_TOKYO, 0, 1, 8, True, 8, id="schedule idle equal to max"),
    pytest.param(MONDAY_10_TOKYO, 9, 1, 10, True, 9, id="min dominates the schedule"),
    pytest.param(SATURDAY_10_TOKYO, 3, 1, 10, False, 3, id="min dominates base idle"),
]


@pytest.mark.parametrize(("now", "min_", "idle", "max_", "active", "count"), SCHEDULE_CASES)
def test_idle_schedule(
    tmp_path: Path,
    now: datetime.datetime,
    min_: int,
    idle: int,
    max_: int,
    active: bool,
    count: int,
) -> None:
    spec = pool_spec(idle=idle, min_=min_, max_=max_, schedules=WEEKDAYS_9_TO_19)
    desired = desired_of(tmp_path, spec, provider_spec(), now=now)
    pool = desired.pools["pool-a"]
    assert pool.desired_count == count
    assert ("schedules[0] 09:00-19:00 Asia/Tokyo active" in pool.count_reason) is active
    result = plan(desired, converged(desired, "i"), {}, now=now)
    if count > 1:
        assert only(result, "run", "runner_tasks.pool-a").count == count - 1


def _new_york(window: tuple[str, str], days: list[str]) -> Scaling:
    schedule = {"days": days, "from": window[0], "to": window[1], "idle": 5}
    return Scaling.model_validate(
        {"max": 10, "idle": 1, "schedules": [schedule | {"timezone": "America/New_York"}]}
    )


DST_CASES = [
    # spring forward, Sunday 2026-03-08: 02:00 EST -> 03:00 EDT (07:00 UTC); 02:xx never happens
    pytest.param(("01:00", "03:00"), "03-08T06:59", 5, id="spring: 01:59 EST inside 01:00-03:00"),
    pytest.param(("01:00", "03:00"), "03-08T07:00", 1, id="spring: 03:00 EDT ends 01:00-03:00"),
    pytest.param(("02:30", "04:00"), "03-08T06:59", 1, id="spring: 01:59 EST before 02:30"),
    pytest.param(("02:30", "04:00"), "03-08T07:00", 5, id="spring: skipped 02:30 opens at 03:00"),
    # fall back, Sunday 2026-11-01: 02:00 EDT -> 01:00 EST (06:00 UTC); 01:xx happens twice
    pytest.param(("01:00", "02:00"), "11-01T05:30", 5, id="fall: first 01:30 (EDT)"),
    pytest.param(("01:00", "02:00"), "11-01T06:30", 5, id="fall: second 01:30 (EST)"),
    pytest.param(("01:00", "02:00"), "11-01T07:00", 1, id="fall: 02:00 EST ends it"),
]


@pytest.mark.parametrize(("window", "utc", "idle"), DST_CASES)
def test_schedules_follow_local_wall_time_across_daylight_saving(
    window: tuple[str, str], utc: str, idle: int
) -> None:
    now = datetime.datetime.fromisoformat(f"2026-{utc}:00+00:00")
    assert idle_target_now(_new_york(window, ["sun"]), now)[0] == idle


def test_a_weekday_window_keeps_its_local_hours_when_the_clocks_change() -> None:
    """09:00-17:00 New York is 14:00-22:00 UTC in winter and 13:00-21:00 UTC in summer."""
    scaling = _new_york(("09:00", "17:00"), ["mon", "tue", "wed", "thu", "fri"])
    friday_before, monday_after = "2026-03-06T13:30:00+00:00", "2026-03-09T13:30:00+00:00"
    assert idle_target_now(scaling, datetime.datetime.fromisoformat(friday_before))[0] == 1
    assert idle_target_now(scaling, datetime.datetime.fromisoformat(monday_after))[0] == 5


def test_idle_target_is_clamped_to_max(tmp_path: Path) -> None:
    """The spec validator already refuses idle > max; the count is clamped all the same."""
    spec = load_specs([_write(tmp_path, pool_spec(schedules=WEEKDAYS_9_TO_19))]).pools[0].spec
    unchecked = spec.scaling.model_copy(update={"max": 5})
    assert desired_runner_count(unchecked, MONDAY_10_TOKYO)[0] == 5
    assert desired_runner_count(unchecked, SATURDAY_10_TOKYO)[0] == 1


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pool.yaml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------- removed pools


def _removed_pool(
    tmp_path: Path, policy: str | None, codes: str, complete: bool = True
) -> tuple[Plan, ObservedState, dict[str, RunnerState]]:
    """pool-b (with `codes` runners on revision 1, plus unused revision 2) leaves the specs."""
    before = desired_of(tmp_path, pool_spec(), pool_spec("pool-b"), provider_spec())
    family = family_of("pool-b")
    tags = dict(before.pools["pool-b"].task_definition_tags)
    if policy is None:
        del tags[DELETION_POLICY_TAG]
    else:
        tags[DELETION_POLICY_TAG] = policy
    revisions = [revision_of(before, "pool-b", n, tags) for n in (1, 2)]
    tasks, states = runners(before, "pool-b", codes, revisions[0], first=50)
    base = converged(before)
    kept = [t for t in base.tasks if t.pool == "pool-a"]
    observed = dataclasses.replace(
        base,
        tasks=kept + tasks,
        task_definitions={**base.task_definitions, family: revisions},
    )
    after_texts = [pool_spec(), provider_spec()] + ([] if complete else ["kind: [\n"])
    after = desired_of(tmp_path, *after_texts)
    assert after.complete is complete
    states = {**{t.arn: RunnerState.IDLE for t in kept}, **states}
    return plan(after, observed, states, now=NOW), observed, states


REMOVED_POOL_CASES = [
    # (deletion policy tag, runner codes, stopped indexes, revisions deleted, note)
    pytest.param("Drain", "iib", [0, 1], [2], "is draining: 1 busy", id="drain: idle stop"),
    pytest.param("Drain", "ii", [0, 1], [1, 2], None, id="drain: all idle, all revisions go"),
    pytest.param("Drain", "", [], [1, 2], None, id="drain: no runner left"),
    pytest.param(
        "Drain", "bu", [], [2], "2 busy or unknown runner(s) finish first", id="drain: held"
    ),
    pytest.param(None, "i", [0], [1, 2], None, id="no policy tag: Drain"),
    pytest.param(
        "Orphan", "ib", [], [], "deletionPolicy Orphan leaves its 2 runner(s)", id="orphan"
    ),
]


@pytest.mark.parametrize(("policy", "codes", "stopped", "deleted", "note"), REMOVED_POOL_CASES)
def test_removed_pool_follows_its_deletion_policy(
    tmp_path: Path,
    policy: str | None,
    codes: str,
    stopped: list[int],
    deleted: list[int],
    note: str | None,
) -> None:
    result, observed, states = _removed_pool(tmp_path, policy, codes)
    pool_b = [t for t in observed.tasks if t.pool == "pool-b"]
    expected = [("stop", "runner_tasks.pool-b")] if stopped else []
    expected += [("delete", f"task_definition.pool-b[{n}]") for n in deleted]
    assert kinds(result) == expected
    assert all(a.deletes_pool and a.pool == "pool-b" for a in result.actions)
    if stopped:
        stop = only(result, "stop", "runner_tasks.pool-b")
        assert stop.task_arns == tuple(pool_b[i].arn for i in stopped)
    assert not stopped_arns(result) & {a for a, s in states.items() if s != RunnerState.IDLE}
    if note:
        assert note in messages(result)


def test_nothing_is_removed_or_drained_while_specs_have_errors(tmp_path: Path) -> None:
    result, _, _ = _removed_pool(tmp_path, "Drain", "ii", complete=False)
    assert kinds(result) == []
    warnings = messages(result, "warning")
    assert "the spec set has errors" in warnings
    assert "pool pool-b is not in the specs, but some specs failed to load" in warnings


# ---------------------------------------------------------------------------- missing resources

NETWORK_CASES = [
    # (subnet reference in the spec, subnets AWS resolves, security groups, missing names)
    pytest.param("ci-private", {}, {SECURITY_GROUP: SECURITY_GROUP}, ["ci-private"], id="subnet"),
    pytest.param(SUBNET, {SUBNET: SUBNET}, {}, [SECURITY_GROUP], id="security group"),
    pytest.param("ci-private", {}, {}, ["ci-private", SECURITY_GROUP], id="both"),
]


@pytest.mark.parametrize(("subnet", "subnets", "groups", "missing"), NETWORK_CASES)
def test_unresolvable_network_blocks_starting_runners(
    tmp_path: Path, subnet: str, subnets: dict, groups: dict, missing: list[str]
) -> None:
    desired = desired_of(tmp_path, pool_spec(idle=2, subnet=subnet), provider_spec())
    observed = dataclasses.replace(converged(desired, ""), subnets=subnets, security_groups=groups)
    result = plan(desired, observed, {}, now=NOW)
    assert kinds(result) == []
    [error] = [n for n in result.notes if n.severity == "error" and "network" in n.message]
    assert error.pool == "pool-a"
    assert error.message.endswith(", ".join(missing))


def test_subnet_by_name_is_started_with_its_id(tmp_path: Path) -> None:
    desired = desired_of(tmp_path, pool_spec(subnet="ci-private"), provider_spec())
    observed = dataclasses.replace(converged(desired, ""), subnets={"ci-private": SUBNET})
    run = only(plan(desired, observed, {}, now=NOW), "run", "runner_tasks.pool-a")
    assert run.after["network"]["subnets"] == [SUBNET]


@pytest.mark.parametrize(
    "clusters",
    [
        pytest.param({}, id="missing"),
        pytest.param({"ci": ObservedCluster("ci", "INACTIVE", ())}, id="inactive"),
    ],
)
def test_missing_cluster_is_an_error_and_blocks_its_pools(
    desired: DesiredState, clusters: dict
) -> None:
    observed = dataclasses.replace(empty_cluster(desired), clusters=clusters)
    result = plan(desired, observed, {}, now=NOW)
    assert not [
        a
        for a in result.actions
        if a.resource_type in ("runner_tasks", "cluster_capacity_providers")
    ]
    assert "cluster ci not found or not ACTIVE" in messages(result, "error")
    assert any(n.pool == "pool-a" and "no runner is started" in n.message for n in result.notes)


def test_pool_moved_to_another_cluster_stops_idle_runners_left_behind(tmp_path: Path) -> None:
    before = desired_of(tmp_path, pool_spec(idle=2), provider_spec())
    observed = converged(before)
    moved = pool_spec(idle=2).replace("cluster: ci", "cluster: ci2")
    moved = moved.replace("capacityProvider: linux", "capacityProvider: linux2")
    provider2 = provider_spec("linux2").replace("cluster: ci", "cluster: ci2")
    after = desired_of(tmp_path, moved, provider_spec(), provider2)
    observed = dataclasses.replace(
        observed,
        clusters={**observed.clusters, "ci2": ObservedCluster("ci2", "ACTIVE", ())},
    )
    result = plan(after, observed, states_of(observed, "bi"), now=NOW)
    stop = only(result, "stop", "runner_tasks.pool-a")
    assert stop.task_arns == (observed.tasks[1].arn,)
    assert "moved to cluster ci2" in stop.reason
    assert only(result, "run", "runner_tasks.pool-a").count == 2


def test_runners_are_not_started_when_their_cluster_could_not_be_listed(
    desired: DesiredState,
) -> None:
    """Partial failure: listing the tasks of cluster ci failed, so they are unknown, not zero.

    Starting runners now would add `desired` more every cycle while the error lasts, and a
    capacity provider with runners on it would look unused."""
    observed = dataclasses.replace(
        converged(desired),
        tasks=[],
        problems={"ci": "cluster ci: cannot list runner tasks: ThrottlingException"},
    )
    result = plan(desired, observed, {}, now=NOW)
    assert "cannot list runner tasks" in messages(result, "error")
    assert not [a for a in result.actions if a.resource_type == "runner_tasks"], kinds(result)


TARGET_CASES = [
    # (min, max, idle target, pending, busy, expected target)
    pytest.param(0, 10, 2, 0, 0, 2, id="idle only"),
    pytest.param(0, 10, 2, 3, 4, 9, id="busy + pending + idle"),
    pytest.param(0, 10, 2, 30, 4, 10, id="capped by max"),
    pytest.param(5, 10, 0, 1, 1, 5, id="raised to min"),
    pytest.param(0, 10, 0, 0, 0, 0, id="nothing wanted"),
]


@pytest.mark.parametrize(("low", "high", "idle", "pending", "busy", "expected"), TARGET_CASES)
def test_pool_target_is_demand_plus_warm_idle_within_bounds(
    desired: DesiredState, low: int, high: int, idle: int, pending: int, busy: int, expected: int
) -> None:
    pool = dataclasses.replace(
        desired.pools["pool-a"], minimum=low, maximum=high, idle_target=idle, pending=pending
    )
    target, why = pool.target(busy)
    assert target == expected
    assert f"busy {busy} + pending {pending} + idle {idle}" in why


def test_pending_jobs_scale_the_pool_out(tmp_path: Path) -> None:
    """Queued demand passed to render_desired starts runners beyond the idle target."""
    root = tmp_path / "specs"
    root.mkdir()
    (root / "pool.yaml").write_text(pool_spec(idle=1) + "---\n" + provider_spec())
    desired = render_desired(load_specs([root]), NOW, "us-east-1", pending={"pool-a": 4})
    observed = converged(desired, "i")
    result = plan(desired, observed, states_of(observed), now=NOW)
    run = only(result, "run", "runner_tasks.pool-a")
    assert run.count == 4 and "pending 4" in run.reason


def test_scale_out_stays_on_the_previous_revision_until_the_canary_is_online(
    tmp_path: Path,
) -> None:
    old = desired_of(tmp_path, pool_spec(idle=4), provider_spec())
    new = desired_of(tmp_path, pool_spec(idle=4, version="2.329.0"), provider_spec())
    family = new.pools["pool-a"].family
    old_revision, new_revision = revision_of(old, "pool-a", 1), revision_of(new, "pool-a", 2)
    outdated, states = runners(old, "pool-a", "ii", old_revision)
    observed = dataclasses.replace(
        converged(new), task_definitions={family: [old_revision, new_revision]}, tasks=outdated
    )
    result = plan(new, observed, states, now=NOW)

    canary = only(result, "replace", "runner_tasks.pool-a")
    assert canary.count == 1 and canary.spec_hash == new.pools["pool-a"].spec_hash
    scale_out = only(result, "run", "runner_tasks.pool-a")
    old_hash = old.pools["pool-a"].spec_hash
    assert scale_out.count == 2 and scale_out.spec_hash == old_hash
    assert scale_out.after["tags"][SPEC_HASH_TAG] == old_hash
    assert "previous revision until the canary is up" in scale_out.reason
    assert "rollout ecs-reconciler-pool-a:1 -> ecs-reconciler-pool-a:2: canary first" in messages(
        result, "info"
    )


# ---------------------------------------------------------------------------- halted rollouts


def _rolling_with(
    tmp_path: Path, max_failures: int, recorded: str = "", stopped: tuple[str, ...] = ()
) -> tuple[DesiredState, DesiredState, ObservedState, dict[str, RunnerState]]:
    """3 idle runners on revision 1, a canary of revision 2 waiting, failures as given."""
    rollout = f"  rollout: {{maxSurge: 2, canary: 1, maxFailures: {max_failures}}}\n"
    old = desired_of(tmp_path, pool_spec(idle=4), provider_spec())
    new = desired_of(tmp_path, pool_spec(idle=4, version="2.329.0", extra=rollout), provider_spec())
    family = new.pools["pool-a"].family
    tags = dict(new.pools["pool-a"].task_definition_tags)
    if recorded:
        tags[ROLLOUT_FAILURES_TAG] = recorded
    old_revision, new_revision = revision_of(old, "pool-a", 1), revision_of(new, "pool-a", 2, tags)
    outdated, states = runners(old, "pool-a", "iii", old_revision)
    crashed = [
        dataclasses.replace(
            task_of("pool-a", new.pools["pool-a"].spec_hash, 50 + n, new_revision.arn, "ci"),
            last_status="STOPPED",
            stopped_reason=reason,
        )
        for n, reason in enumerate(stopped)
    ]
    observed = dataclasses.replace(
        converged(new),
        task_definitions={family: [old_revision, new_revision]},
        tasks=outdated,
        stopped_tasks=crashed,
    )
    return old, new, observed, states


@pytest.mark.parametrize(
    ("reason", "exit_code", "state", "failure"),
    [
        ("CannotPullContainerError: not found", None, RunnerState.UNKNOWN, True),
        ("ResourceInitializationError: secrets", None, RunnerState.UNKNOWN, True),
        ("ecs-reconciler: runner never came online (boot timeout)", 0, RunnerState.UNKNOWN, True),
        ("Essential container in task exited", 1, RunnerState.UNKNOWN, True),
        ("Essential container in task exited", 0, RunnerState.FAILED, True),  # never did a job
        ("Essential container in task exited", 0, RunnerState.UNKNOWN, False),  # job done
        ("ecs-reconciler: scale in: 4 running", None, RunnerState.UNKNOWN, False),
    ],
)
def test_which_stopped_runners_count_as_failures(
    reason: str, exit_code: int | None, state: RunnerState, failure: bool
) -> None:
    task = dataclasses.replace(
        task_of("pool-a", "hash", 1, "arn", "ci"),
        last_status="STOPPED",
        stopped_reason=reason,
        exit_code=exit_code,
    )
    assert (failure_of(task, state) is not None) is failure


def test_failures_are_recorded_on_the_revision_and_halt_at_max_failures(tmp_path: Path) -> None:
    old, new, observed, states = _rolling_with(
        tmp_path, max_failures=2, stopped=("CannotPullContainerError: not found",)
    )
    first = plan(new, observed, states, now=NOW)
    record = only(first, "update", "task_definition.pool-a[2]")
    assert record.reason.startswith("rollout failures recorded")
    assert len(record.after["tags"][ROLLOUT_FAILURES_TAG].split(",")) == 1
    assert "1 failure(s) so far" in messages(first, "info")

    # the failure recorded earlier + a new one: halted, whatever ECS still shows
    _, _, observed, states = _rolling_with(
        tmp_path,
        max_failures=2,
        recorded="0badc0de",
        stopped=("Essential container in task exited",),
    )
    crashed = observed.stopped_tasks[0]
    halted = plan(new, observed, {**states, crashed.arn: RunnerState.FAILED}, now=NOW)
    assert "HALTED" in messages(halted, "warning") and "maxFailures 2" in messages(halted)
    assert not [a for a in halted.actions if a.action == "replace"]
    scale_out = only(halted, "run", "runner_tasks.pool-a")
    assert scale_out.spec_hash == old.pools["pool-a"].spec_hash
    assert "rollout halted" in scale_out.reason
    assert halted.pools[0].rollout_halted.startswith("rollout ecs-reconciler-pool-a:1 -> ")

    # restart: nothing in ECS any more, the tag alone keeps the halt
    _, _, observed, states = _rolling_with(tmp_path, max_failures=2, recorded="0badc0de,1badc0de")
    assert "HALTED" in messages(plan(new, observed, states, now=NOW), "warning")


# ---------------------------------------------------------------------------- in flight

IN_FLIGHT_CASES = [
    # (runner codes, idle target, starts in flight, indexes stopped in flight, expected
    #  (action, runners started or tasks stopped); the pool summary's running)
    pytest.param("i", 3, 2, [], [], 3, id="starts in flight count: nothing started twice"),
    pytest.param("i", 4, 2, [], [("run", 1)], 3, id="only what is still missing starts"),
    pytest.param("iii", 1, 0, [0, 1], [], 1, id="stops in flight are gone: not stopped again"),
    pytest.param("iii", 3, 0, [0], [("run", 1)], 2, id="a stopped runner is replaced"),
    pytest.param("ii", 1, 1, [], [("stop", 2)], 3, id="scale in counts starts too"),
]


@pytest.mark.parametrize(
    ("codes", "idle", "starts", "stopping", "expected", "running"), IN_FLIGHT_CASES
)
def test_runners_in_flight_are_counted(
    tmp_path: Path,
    codes: str,
    idle: int,
    starts: int,
    stopping: list[int],
    expected: list[tuple[str, int]],
    running: int,
) -> None:
    desired = desired_of(tmp_path, pool_spec(idle=idle), provider_spec())
    observed = converged(desired, codes)
    in_flight = InFlight(
        starts={"pool-a": starts} if starts else {},
        stops=frozenset(observed.tasks[i].arn for i in stopping),
    )
    result = plan(desired, observed, states_of(observed), now=NOW, in_flight=in_flight)
    tasks = [a for a in result.actions if a.resource_type == "runner_tasks"]
    assert [(a.action, a.count or a.stops) for a in tasks] == expected
    assert not stopped_arns(result) & in_flight.stops
    [summary] = result.pools
    assert summary.running == running


@pytest.mark.parametrize(("starts", "replaced"), [(0, 1), (1, 0)])
def test_starts_in_flight_use_up_the_rollout_surge(
    tmp_path: Path, starts: int, replaced: int
) -> None:
    rollout = "  rollout: {maxSurge: 1}\n"
    old = desired_of(tmp_path, pool_spec(idle=3), provider_spec())
    new = desired_of(tmp_path, pool_spec(idle=3, version="2.329.0", extra=rollout), provider_spec())
    old_revision, new_revision = revision_of(old, "pool-a", 1), revision_of(new, "pool-a", 2)
    outdated, states = runners(old, "pool-a", "iii", old_revision)
    observed = dataclasses.replace(
        converged(new),
        task_definitions={new.pools["pool-a"].family: [old_revision, new_revision]},
        tasks=outdated,
    )
    # a scale-in/out start of the last cycle is not listed yet: it counts against the surge
    in_flight = InFlight(starts={"pool-a": starts}) if starts else None
    result = plan(new, observed, states, now=NOW, in_flight=in_flight)
    replacing = [a for a in result.actions if a.action == "replace"]
    assert sum(a.count for a in replacing) == replaced
