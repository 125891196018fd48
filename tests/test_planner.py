"""The pure planner, table by table: no I/O, observed state built by hand."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pytest

from reconciler.plan.actions import Plan
from reconciler.plan.desired import desired_runner_count, render_desired
from reconciler.plan.guard import GuardPolicy, refused_actions
from reconciler.plan.normalize import content_hash
from reconciler.plan.planner import plan
from reconciler.plan.render_markdown import GITHUB_COMMENT_LIMIT, render_markdown
from reconciler.plan.render_text import render_text
from reconciler.plan.state import (
    DELETION_POLICY_TAG,
    MANAGED_BY_TAG,
    MANAGED_BY_VALUE,
    POOL_TAG,
    SPEC_HASH_TAG,
    DesiredState,
    ObservedCapacityProvider,
    ObservedCluster,
    ObservedState,
    ObservedTask,
    ObservedTaskDefinition,
    RunnerState,
)
from reconciler.spec.loader import load_specs

from .conftest import CAPACITY_PROVIDER, POOL

UTC = datetime.UTC
MONDAY_10_TOKYO = datetime.datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
GROUP_ARN = (
    "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:uuid:autoScalingGroupName/ci-linux"
)
SUBNET, SECURITY_GROUP = "subnet-0123456789abcdef0", "sg-0123456789abcdef0"


def desired_of(
    tmp_path: Path, *texts: str, now: datetime.datetime = MONDAY_10_TOKYO
) -> DesiredState:
    root = tmp_path / f"specs-{len(list(tmp_path.iterdir()))}"
    root.mkdir()
    for index, text in enumerate(texts):
        (root / f"{index}.yaml").write_text(text)
    return render_desired(load_specs([root]), now, "us-east-1")


def revision_of(
    desired: DesiredState, pool: str, number: int = 1, **changes: object
) -> ObservedTaskDefinition:
    wanted = desired.pools[pool]
    content = {**wanted.task_definition, **changes}
    return ObservedTaskDefinition(
        arn=f"arn:aws:ecs:us-east-1:123456789012:task-definition/{wanted.family}:{number}",
        family=wanted.family,
        revision=number,
        content=content,
        content_hash=content_hash(content),
        tags=dict(wanted.task_definition_tags),
    )


def task_of(
    pool: str, spec_hash: str, number: int, revision_arn: str = "", cluster: str = "ci"
) -> ObservedTask:
    return ObservedTask(
        arn=f"arn:aws:ecs:us-east-1:123456789012:task/{cluster}/{pool}-{number:03d}",
        cluster=cluster,
        pool=pool,
        task_definition_arn=revision_arn,
        spec_hash=spec_hash,
        last_status="RUNNING",
        started_at=float(number),
        tags={MANAGED_BY_TAG: MANAGED_BY_VALUE, POOL_TAG: pool, SPEC_HASH_TAG: spec_hash},
        capacity_provider="linux",
    )


def converged(desired: DesiredState, runners: int | None = None) -> ObservedState:
    """What AWS looks like once `desired` was applied (all runners idle)."""
    providers = {
        name: ObservedCapacityProvider(
            name, f"arn:cp/{name}", GROUP_ARN, provider.settings, dict(provider.tags)
        )
        for name, provider in desired.capacity_providers.items()
    }
    revisions = {pool.family: [revision_of(desired, name)] for name, pool in desired.pools.items()}
    tasks = [
        task_of(name, pool.spec_hash, n, revisions[pool.family][0].arn)
        for name, pool in desired.pools.items()
        for n in range(pool.desired_count if runners is None else runners)
    ]
    return ObservedState(
        clusters={"ci": ObservedCluster("ci", "ACTIVE", tuple(sorted(providers)))},
        capacity_providers=providers,
        task_definitions=revisions,
        tasks=tasks,
        auto_scaling_groups={"ci-linux": GROUP_ARN, GROUP_ARN: GROUP_ARN},
        subnets={SUBNET: SUBNET},
        security_groups={SECURITY_GROUP: SECURITY_GROUP},
    )


def idle(observed: ObservedState) -> dict[str, RunnerState]:
    return {t.arn: RunnerState.IDLE for t in observed.tasks}


def kinds(result: Plan) -> list[tuple[str, str]]:
    return [(a.action, a.address) for a in result.actions]


@pytest.fixture
def desired(tmp_path: Path) -> DesiredState:
    return desired_of(tmp_path, POOL, CAPACITY_PROVIDER)


def test_empty_account_creates_everything(desired: DesiredState) -> None:
    empty = dataclasses.replace(
        converged(desired), capacity_providers={}, task_definitions={}, tasks=[]
    )
    empty = dataclasses.replace(empty, clusters={"ci": ObservedCluster("ci", "ACTIVE", ())})
    result = plan(desired, empty, {})
    assert kinds(result) == [
        ("create", "capacity_provider.linux"),
        ("update", "cluster_capacity_providers.ci"),
        ("create", "task_definition.pool-a"),
        ("run", "runner_tasks.pool-a"),
    ]
    assert result.actions[-1].count == 1
    assert result.actions[-1].after["network"] == {
        "subnets": [SUBNET],
        "securityGroups": [SECURITY_GROUP],
    }


def test_converged_state_has_no_changes_and_plans_are_deterministic(desired: DesiredState) -> None:
    observed = converged(desired)
    first = plan(desired, observed, idle(observed), now=MONDAY_10_TOKYO)
    second = plan(desired, observed, idle(observed), now=MONDAY_10_TOKYO)
    assert not first.has_changes
    assert first.summary_line() == "No changes. ECS matches the specs."
    assert first.to_json() == second.to_json()


def test_foreign_providers_stay_in_the_association(desired: DesiredState) -> None:
    observed = converged(desired)
    cluster = ObservedCluster("ci", "ACTIVE", ("FARGATE", "team-owned"))
    result = plan(desired, dataclasses.replace(observed, clusters={"ci": cluster}), idle(observed))
    [association] = [a for a in result.actions if a.resource_type == "cluster_capacity_providers"]
    assert association.after == {"capacityProviders": ["FARGATE", "linux", "team-owned"]}


def test_removed_provider_is_detached_and_deleted_only_when_unused(
    tmp_path: Path, desired: DesiredState
) -> None:
    observed = converged(desired)
    old = ObservedCapacityProvider(
        "old", "arn:cp/old", GROUP_ARN, {}, {MANAGED_BY_TAG: MANAGED_BY_VALUE}
    )
    with_old = dataclasses.replace(
        observed,
        capacity_providers={**observed.capacity_providers, "old": old},
        clusters={"ci": ObservedCluster("ci", "ACTIVE", ("linux", "old"))},
    )
    result = plan(desired, with_old, idle(observed))
    assert kinds(result) == [
        ("update", "cluster_capacity_providers.ci"),
        ("delete", "capacity_provider.old"),
    ]
    busy_on_old = [dataclasses.replace(observed.tasks[0], capacity_provider="old")]
    held = plan(desired, dataclasses.replace(with_old, tasks=busy_on_old), idle(observed))
    assert not held.has_changes
    assert any("kept while 1 task(s) still run on it" in n.message for n in held.notes)


def test_provider_of_the_same_name_without_our_tags_is_never_changed(desired: DesiredState) -> None:
    observed = converged(desired)
    foreign = dataclasses.replace(observed.capacity_providers["linux"], tags={}, settings={})
    result = plan(
        desired,
        dataclasses.replace(observed, capacity_providers={"linux": foreign}),
        idle(observed),
    )
    assert not result.has_changes
    assert any("not created by ecs-reconciler" in n.message for n in result.notes)


def test_provider_drift_is_an_update_with_a_patch(desired: DesiredState) -> None:
    observed = converged(desired)
    drifted_settings = {**observed.capacity_providers["linux"].settings}
    drifted_settings["managedScaling"] = {
        **drifted_settings["managedScaling"],
        "targetCapacity": 50,
    }
    drifted = dataclasses.replace(observed.capacity_providers["linux"], settings=drifted_settings)
    result = plan(
        desired,
        dataclasses.replace(observed, capacity_providers={"linux": drifted}),
        idle(observed),
    )
    [action] = result.actions
    assert action.action == "update"
    assert action.patch == [
        {"op": "replace", "path": "/managedScaling/targetCapacity", "value": 100}
    ]


def test_image_bump_rolls_idle_runners_by_max_surge(tmp_path: Path) -> None:
    old_desired = desired_of(tmp_path, POOL.replace("idle: 1", "idle: 4"), CAPACITY_PROVIDER)
    observed = converged(old_desired)
    bumped = POOL.replace("idle: 1", "idle: 4").replace("runner:2.328.0@", "runner:2.329.0@")
    desired = desired_of(tmp_path, bumped + "  rollout: {maxSurge: 2}\n", CAPACITY_PROVIDER)
    busy = observed.tasks[0].arn
    states = {**idle(observed), busy: RunnerState.BUSY}
    result = plan(desired, observed, states)
    assert kinds(result) == [
        ("update", "task_definition.pool-a"),
        ("replace", "runner_tasks.pool-a"),
    ]
    image_ops = [op for op in result.actions[0].patch if op["path"].endswith("/image")]
    assert image_ops and "runner:2.329.0" in image_ops[0]["value"]
    replace = result.actions[1]
    assert replace.count == 2 and len(replace.task_arns) == 2 and busy not in replace.task_arns
    assert any("finish their job" in n.message for n in result.notes)

    # one new runner is still starting: it takes one place of the surge
    new_revision = revision_of(desired, "pool-a", 2)
    starting = task_of("pool-a", desired.pools["pool-a"].spec_hash, 99, new_revision.arn)
    family = desired.pools["pool-a"].family
    during = dataclasses.replace(
        observed,
        tasks=[*observed.tasks[:3], starting],
        task_definitions={family: [*observed.task_definitions[family], new_revision]},
    )
    states = {**idle(observed), busy: RunnerState.BUSY, starting.arn: RunnerState.UNKNOWN}
    rolling = plan(desired, during, states)
    [replace] = [a for a in rolling.actions if a.action == "replace"]
    assert len(replace.task_arns) == 1
    assert not [a for a in rolling.actions if a.resource_type == "task_definition"], (
        "old revision kept while tasks use it; new one exists"
    )


def test_outdated_revision_is_deleted_once_unused(tmp_path: Path) -> None:
    old_desired = desired_of(tmp_path, POOL, CAPACITY_PROVIDER)
    desired = desired_of(
        tmp_path, POOL.replace("runner:2.328.0@", "runner:2.329.0@"), CAPACITY_PROVIDER
    )
    family = desired.pools["pool-a"].family
    new_revision = revision_of(desired, "pool-a", 2)
    observed = dataclasses.replace(
        converged(desired),
        task_definitions={family: [revision_of(old_desired, "pool-a", 1), new_revision]},
    )
    observed = dataclasses.replace(
        observed,
        tasks=[
            dataclasses.replace(t, task_definition_arn=new_revision.arn) for t in observed.tasks
        ],
    )
    assert kinds(plan(desired, observed, idle(observed))) == [
        ("delete", "task_definition.pool-a[1]")
    ]


SCALE_CASES = [
    # (running, states, desired idle, expected action, stopped indexes)
    pytest.param(
        3, ["idle", "idle", "idle"], 1, "stop", [0, 1], id="scale in stops idle, oldest first"
    ),
    pytest.param(
        3, ["busy", "idle", "unknown"], 1, "stop", [1], id="busy and unknown are never stopped"
    ),
    pytest.param(2, ["busy", "busy"], 0, None, [], id="all busy: nothing stopped"),
    pytest.param(1, ["idle"], 3, "run", [], id="scale out"),
]


@pytest.mark.parametrize(("running", "states", "idle_target", "expected", "stopped"), SCALE_CASES)
def test_scaling(
    tmp_path: Path,
    running: int,
    states: list[str],
    idle_target: int,
    expected: str | None,
    stopped: list[int],
) -> None:
    desired = desired_of(
        tmp_path, POOL.replace("idle: 1", f"idle: {idle_target}"), CAPACITY_PROVIDER
    )
    observed = converged(desired, runners=running)
    runner_states = {t.arn: RunnerState(s) for t, s in zip(observed.tasks, states, strict=True)}
    result = plan(desired, observed, runner_states)
    if expected is None:
        assert not result.has_changes
        assert any("never stopped" in n.message for n in result.notes)
        return
    [action] = result.actions
    assert action.action == expected
    assert action.task_arns == tuple(observed.tasks[i].arn for i in stopped)
    if expected == "run":
        assert action.count == idle_target - running


SCHEDULE = """\
    schedules:
      - {days: [mon, tue, wed, thu, fri], from: "09:00", to: "19:00", timezone: Asia/Tokyo, idle: 8}
"""


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (MONDAY_10_TOKYO, 8),
        (datetime.datetime(2026, 11, 28, 1, 0, tzinfo=UTC), 1),  # Saturday 10:00 Tokyo
        (datetime.datetime(2026, 11, 30, 10, 0, tzinfo=UTC), 1),  # Monday 19:00 Tokyo: window ends
        (datetime.datetime(2026, 11, 30, 0, 0, tzinfo=UTC), 8),  # Monday 09:00 Tokyo: window starts
    ],
    ids=["weekday business hours", "weekend", "end is exclusive", "start is inclusive"],
)
def test_idle_schedule(tmp_path: Path, moment: datetime.datetime, expected: int) -> None:
    spec = load_specs([_write(tmp_path, POOL + SCHEDULE)]).pools[0].spec
    assert desired_runner_count(spec.scaling, moment)[0] == expected


def test_schedule_is_clamped_and_min_dominates(tmp_path: Path) -> None:
    spec = (
        load_specs(
            [
                _write(
                    tmp_path,
                    POOL.replace("min: 0", "min: 3") + SCHEDULE.replace("idle: 8", "idle: 10"),
                )
            ]
        )
        .pools[0]
        .spec
    )
    assert desired_runner_count(spec.scaling, MONDAY_10_TOKYO)[0] == 10
    saturday = datetime.datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
    assert desired_runner_count(spec.scaling, saturday)[0] == 3


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"pool-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(text)
    return path


def test_revisions_registered_by_hand(desired: DesiredState) -> None:
    observed = converged(desired)
    family = desired.pools["pool-a"].family
    ours = observed.task_definitions[family][0]
    foreign = dataclasses.replace(revision_of(desired, "pool-a", 2), tags={})
    tampered = revision_of(desired, "pool-a", 3, cpu="4096")  # our tags copied, content changed
    with_hand_made = dataclasses.replace(
        observed, task_definitions={family: [ours, foreign, tampered]}
    )
    result = plan(desired, with_hand_made, idle(observed))
    assert kinds(result) == [("delete", "task_definition.pool-a[3]")]
    assert "drift" in result.actions[0].reason
    assert any("registered outside ecs-reconciler" in n.message for n in result.notes)


@pytest.mark.parametrize("policy", ["Drain", "Orphan"])
def test_removed_pool_follows_its_deletion_policy(tmp_path: Path, policy: str) -> None:
    before = desired_of(tmp_path, POOL.replace("idle: 1", "idle: 2"), CAPACITY_PROVIDER)
    observed = converged(before)
    family = before.pools["pool-a"].family
    revision = observed.task_definitions[family][0]
    tagged = dataclasses.replace(revision, tags={**revision.tags, DELETION_POLICY_TAG: policy})
    observed = dataclasses.replace(observed, task_definitions={family: [tagged]})
    states = {observed.tasks[0].arn: RunnerState.BUSY, observed.tasks[1].arn: RunnerState.IDLE}
    after = desired_of(tmp_path, CAPACITY_PROVIDER)
    result = plan(after, observed, states)
    if policy == "Orphan":
        assert not result.has_changes
        assert any("deletionPolicy Orphan" in n.message for n in result.notes)
        return
    [stop] = result.actions
    assert stop.action == "stop" and stop.deletes_pool
    assert stop.task_arns == (observed.tasks[1].arn,)
    assert any("draining" in n.message for n in result.notes)


def test_nothing_is_removed_while_specs_have_errors(tmp_path: Path) -> None:
    before = desired_of(tmp_path, POOL, CAPACITY_PROVIDER)
    observed = converged(before)
    broken = desired_of(tmp_path, CAPACITY_PROVIDER, "kind: [\n")
    assert not broken.complete
    result = plan(broken, observed, idle(observed))
    assert not [a for a in result.actions if a.action in ("stop", "delete")]
    assert any("failed to load" in n.message for n in result.notes)


def test_unresolvable_network_blocks_starting_runners(desired: DesiredState) -> None:
    observed = dataclasses.replace(converged(desired, runners=0), subnets={})
    result = plan(desired, observed, {})
    assert not [a for a in result.actions if a.action == "run"]
    assert any(n.severity == "error" and SUBNET in n.message for n in result.notes)


def test_missing_cluster_is_an_error(desired: DesiredState) -> None:
    observed = dataclasses.replace(converged(desired, runners=0), clusters={})
    result = plan(desired, observed, {})
    assert not [a for a in result.actions if a.action == "run"]
    assert any("cluster ci not found" in n.message for n in result.notes)


def test_guard_limits_stops_and_removals(tmp_path: Path) -> None:
    desired = desired_of(tmp_path, POOL.replace("idle: 1", "idle: 0"), CAPACITY_PROVIDER)
    observed = converged(desired, runners=4)
    result = plan(desired, observed, idle(observed))
    [stop] = result.actions
    assert stop.stops == 4
    assert "would stop 4 of 4 runners" in refused_actions(result, GuardPolicy())[stop]
    assert refused_actions(result, GuardPolicy(max_stop_share=1.0)) == {}
    gone = plan(desired_of(tmp_path, CAPACITY_PROVIDER), observed, idle(observed))
    refused = refused_actions(gone, GuardPolicy(max_stop_share=1.0))
    assert refused and all("--allow-delete" in reason for reason in refused.values())
    assert refused_actions(gone, GuardPolicy(max_stop_share=1.0, allow_delete=True)) == {}


def test_text_and_json_renderings(desired: DesiredState) -> None:
    empty = dataclasses.replace(
        converged(desired, runners=0),
        task_definitions={},
        capacity_providers={},
        clusters={"ci": ObservedCluster("ci", "ACTIVE", ())},
    )
    result = plan(desired, empty, {})
    text = render_text(result)
    assert "+ capacity_provider.linux will be created" in text
    assert "~ cluster_capacity_providers.ci will be updated in place" in text
    assert "+ runner_tasks.pool-a: start 1 runner(s)" in text
    assert text.rstrip().endswith(result.summary_line())
    document = result.to_json()
    assert document["format_version"] == "1.0"
    assert {"action", "address", "before", "after", "patch"} <= set(document["actions"][0])


def test_markdown_of_300_pools_fits_and_shows_every_deletion(tmp_path: Path) -> None:
    pools = [POOL.replace("name: pool-a", f"name: pool-{i:03d}") for i in range(300)]
    before = desired_of(tmp_path, CAPACITY_PROVIDER, *pools)
    observed = converged(before)
    after = desired_of(tmp_path, CAPACITY_PROVIDER, *pools[150:])
    result = plan(after, observed, idle(observed))
    markdown = render_markdown(result)
    assert len(markdown) <= GITHUB_COMMENT_LIMIT
    assert result.summary_line() in markdown
    for number in range(150):
        assert f"`runner_tasks.pool-{number:03d}`" in markdown
    assert "not shown: see the JSON plan" in markdown
