"""End to end over moto's HTTP server: plan -> apply -> plan converges, drift is corrected,
rollouts are gradual and busy-safe, removed or broken specs are handled safely.

Every test gets a fresh sandbox account (moto in its own process) seeded for a copy of the
example specs, and talks to it through the same boto3 code path as real AWS.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from reconciler.aws.clients import MutationRefused
from reconciler.aws.executor import ApplyResult, Executor
from reconciler.aws.observe import Observer
from reconciler.clock import utc_now
from reconciler.plan.guard import GuardPolicy, refused_actions
from reconciler.plan.state import RunnerState
from reconciler.reconcile import Cycle, plan_cycle
from reconciler.sandbox.runners import TaskTagRunnerStates
from reconciler.sandbox.scenario import Sandbox

from .conftest import edit, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.long]  # starts servers or processes

REPO = Path(__file__).resolve().parent.parent
CLUSTER = "ci-runners"
PLATFORM = "platform-linux-dind"
ALLOW_ALL = GuardPolicy(max_stop_share=1.0, allow_delete=True)


def cycle(sandbox: Sandbox, specs: Path, read_only: bool = True) -> Cycle:
    clients = sandbox.clients(read_only=read_only)
    return plan_cycle([specs], Observer(clients), TaskTagRunnerStates(clients), utc_now())


def apply(sandbox: Sandbox, specs: Path, policy: GuardPolicy = ALLOW_ALL) -> ApplyResult:
    clients = sandbox.clients()
    current = plan_cycle([specs], Observer(clients), TaskTagRunnerStates(clients), utc_now())
    executor = Executor(clients, current.observed, TaskTagRunnerStates(clients))
    result = executor.apply(current.plan, refused_actions(current.plan, policy))
    sandbox.tick()
    return result


def converge(sandbox: Sandbox, specs: Path, rounds: int = 3) -> Cycle:
    """Apply until the plan is empty: a scale-out beyond the registered instances takes a
    second round, once the instances the first one added have registered."""
    for _ in range(rounds):
        result = apply(sandbox, specs)
        assert result.ok, result.failed + result.skipped
        after = cycle(sandbox, specs)
        if not after.plan.has_changes:
            return after
    raise AssertionError([a.to_json() for a in after.plan.actions])


def kinds(current: Cycle) -> list[tuple[str, str]]:
    return [(a.action, a.address) for a in current.plan.actions]


def pool_tasks(current: Cycle, pool: str) -> list[str]:
    return sorted(t.arn for t in current.observed.tasks if t.pool == pool)


def cli(sandbox: Sandbox, specs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI pointed at the sandbox."""
    env = {**os.environ, **sandbox.environment()}
    return run_cli(*args, "--specs", str(specs), env=env, timeout=120)


def test_empty_cluster_plan_apply_plan_with_the_cli(sandbox: Sandbox, specs: Path) -> None:
    first = cli(sandbox, specs, "plan")
    assert first.returncode == 2, first.stdout + first.stderr
    assert "+ capacity_provider.linux-x64 will be created" in first.stdout
    assert "+ runner_tasks.platform-linux-dind: start 2 runner(s)" in first.stdout
    refused = cli(sandbox, specs, "apply")
    assert refused.returncode == 1
    assert "pass --auto-approve" in refused.stdout
    assert cli(sandbox, specs, "plan").returncode == 2, "apply without consent changed nothing"
    applied = cli(sandbox, specs, "apply", "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Apply complete: 10 done, 0 failed, 0 skipped." in applied.stdout
    sandbox.tick()
    second = cli(sandbox, specs, "plan", "--format", "json")
    assert second.returncode == 0, second.stdout
    assert '"has_changes": false' in second.stdout


def test_plan_is_read_only(sandbox: Sandbox, specs: Path) -> None:
    clients = sandbox.clients(read_only=True)
    current = plan_cycle([specs], Observer(clients), TaskTagRunnerStates(clients), utc_now())
    assert current.plan.has_changes
    assert clients.calls, "the plan observed nothing"
    assert all(op.split(":")[1].startswith(("Describe", "List", "Get")) for op in clients.calls)
    with pytest.raises(MutationRefused):
        clients.ecs.create_capacity_provider(
            name="x", autoScalingGroupProvider={"autoScalingGroupArn": "arn"}
        )
    ecs = sandbox.clients().ecs
    assert ecs.list_task_definition_families(familyPrefix="ecs-reconciler-")["families"] == []


def test_drift_capacity_provider_edited_by_hand(sandbox: Sandbox, specs: Path) -> None:
    converge(sandbox, specs)
    sandbox.clients().ecs.update_capacity_provider(
        name="linux-x64",
        autoScalingGroupProvider={
            "managedScaling": {"status": "ENABLED", "targetCapacity": 50},
            "managedTerminationProtection": "DISABLED",
        },
    )
    drifted = cycle(sandbox, specs)
    [action] = drifted.plan.actions
    assert (action.action, action.address) == ("update", "capacity_provider.linux-x64")
    assert {"op": "replace", "path": "/managedScaling/targetCapacity", "value": 100} in action.patch
    converge(sandbox, specs)


def test_drift_runner_stopped_by_hand(sandbox: Sandbox, specs: Path) -> None:
    converged = converge(sandbox, specs)
    victim = pool_tasks(converged, PLATFORM)[0]
    sandbox.clients().ecs.stop_task(cluster=CLUSTER, task=victim, reason="by hand")
    drifted = cycle(sandbox, specs)
    # moto places tasks on any instance of the cluster, whatever their capacity provider, so
    # the autoscaler may see its own group fuller than AWS would: only runner tasks are checked
    runs = [a for a in drifted.plan.actions if a.resource_type == "runner_tasks"]
    assert [(a.action, a.address, a.count) for a in runs] == [
        ("run", f"runner_tasks.{PLATFORM}", 1)
    ]
    converge(sandbox, specs)


def test_drift_task_definition_registered_by_hand(sandbox: Sandbox, specs: Path) -> None:
    converged = converge(sandbox, specs)
    ecs = sandbox.clients().ecs
    [ours] = converged.observed.task_definitions[f"ecs-reconciler-{PLATFORM}"]
    described = ecs.describe_task_definition(taskDefinition=ours.arn, include=["TAGS"])
    definition = described["taskDefinition"]
    keep = ("family", "containerDefinitions", "networkMode", "requiresCompatibilities", "cpu")
    copy = {k: definition[k] for k in keep} | {"memory": definition["memory"]}
    copy["containerDefinitions"][0]["image"] = "ghcr.io/evil/runner:latest"
    tampered = ecs.register_task_definition(**copy, tags=described["tags"])  # tags copied
    foreign = ecs.register_task_definition(**copy)  # no tags: not ours
    drifted = cycle(sandbox, specs)
    tampered_revision = tampered["taskDefinition"]["revision"]
    assert kinds(drifted) == [("delete", f"task_definition.{PLATFORM}[{tampered_revision}]")]
    assert "drift" in drifted.plan.actions[0].reason
    assert any("registered outside ecs-reconciler" in n.message for n in drifted.plan.notes)
    converge(sandbox, specs)
    foreign_arn = foreign["taskDefinition"]["taskDefinitionArn"]
    status = ecs.describe_task_definition(taskDefinition=foreign_arn)["taskDefinition"]["status"]
    assert status == "ACTIVE", "a revision without our tags is never deregistered"


def test_image_bump_rolls_idle_runners_gradually_and_spares_busy_ones(
    sandbox: Sandbox, specs: Path
) -> None:
    pool_file = specs / "org-platform-dind.yaml"
    edit(pool_file, "    idle: 2\n", "    idle: 4\n")
    edit(pool_file, "maxSurge: 25%", "maxSurge: 1")
    # small tasks: the registered instances hold the pool and its surge (this is about rollout)
    edit(pool_file, "cpu: 2048", "cpu: 512")
    edit(pool_file, "memory: 4096", "memory: 1024")
    converged = converge(sandbox, specs)
    old_tasks = pool_tasks(converged, PLATFORM)
    assert len(old_tasks) == 4
    busy = old_tasks[0]
    sandbox.runners.set_state(busy, RunnerState.BUSY)
    [old_revision] = converged.observed.task_definitions[f"ecs-reconciler-{PLATFORM}"]
    # the busy runner comes on top of the idle target: 1 busy + 3 idle keeps the pool at 4
    edit(pool_file, "    idle: 4\n", "    idle: 3\n")
    edit(pool_file, "actions-runner:2.328.0@sha256:3f1a", "actions-runner:2.329.0@sha256:4f1a")

    stopped: list[str] = []
    for _ in range(3):  # three idle outdated runners, one replaced per cycle
        rolling = cycle(sandbox, specs)
        replaced = [a for a in rolling.plan.actions if a.action == "replace"]
        assert len(replaced) == 1 and replaced[0].stops == 1
        assert busy not in replaced[0].task_arns
        stopped += replaced[0].task_arns
        assert apply(sandbox, specs).ok
    assert sorted(stopped) == sorted(old_tasks[1:])
    held = cycle(sandbox, specs)
    assert not held.plan.has_changes, "the busy runner keeps its old revision"
    assert busy in pool_tasks(held, PLATFORM)
    assert any("busy or unknown" in n.message for n in held.plan.notes)
    revisions = held.observed.task_definitions[f"ecs-reconciler-{PLATFORM}"]
    assert old_revision.arn in [r.arn for r in revisions], "old revision kept while in use"

    sandbox.runners.finish_job(CLUSTER, busy)  # the ephemeral runner exits with its task
    finishing = cycle(sandbox, specs)
    assert sorted(kinds(finishing)) == [
        ("delete", f"task_definition.{PLATFORM}[{old_revision.revision}]"),
    ]
    final = converge(sandbox, specs)
    assert [r.revision for r in final.observed.task_definitions[f"ecs-reconciler-{PLATFORM}"]] == [
        2
    ]


def test_deleted_spec_drains_only_with_consent_and_spares_busy(
    sandbox: Sandbox, specs: Path
) -> None:
    converged = converge(sandbox, specs)
    busy, idle = pool_tasks(converged, PLATFORM)
    sandbox.runners.set_state(busy, RunnerState.BUSY)
    (specs / "org-platform-dind.yaml").unlink()
    draining = cycle(sandbox, specs)
    [stop] = [a for a in draining.plan.actions if a.action == "stop"]
    assert stop.task_arns == (idle,) and stop.deletes_pool

    refused = apply(sandbox, specs, GuardPolicy())
    assert not refused.done and refused.skipped
    assert "pass --allow-delete" in refused.skipped[0][1]
    assert pool_tasks(cycle(sandbox, specs), PLATFORM) == sorted([busy, idle])

    assert apply(sandbox, specs).ok
    after = cycle(sandbox, specs)
    assert pool_tasks(after, PLATFORM) == [busy]
    assert any("draining" in n.message for n in after.plan.notes)
    sandbox.runners.finish_job(CLUSTER, busy)
    assert apply(sandbox, specs).ok
    gone = cycle(sandbox, specs)
    assert not gone.plan.has_changes
    assert f"ecs-reconciler-{PLATFORM}" not in gone.observed.task_definitions


def test_invalid_spec_stops_and_deletes_nothing(sandbox: Sandbox, specs: Path) -> None:
    converged = converge(sandbox, specs)
    before = pool_tasks(converged, PLATFORM)
    (specs / "org-platform-dind.yaml").write_text("kind: RunnerPool\nspec: [\n")
    result = cli(sandbox, specs, "plan")
    assert result.returncode == 1
    assert "org-platform-dind.yaml:3:1: invalid YAML" in result.stdout
    assert "nothing is deleted" in result.stdout
    as_json = json.loads(cli(sandbox, specs, "plan", "--format", "json").stdout)
    assert [a for a in as_json["actions"] if a["action"] in ("stop", "delete")] == []
    assert as_json["spec_errors"]
    applied = cli(sandbox, specs, "apply", "--auto-approve", "--allow-delete")
    assert applied.returncode == 1
    assert "the specs have errors; nothing is applied" in applied.stdout
    assert pool_tasks(cycle(sandbox, specs), PLATFORM) == before


def test_foreign_capacity_provider_stays_in_the_cluster(sandbox: Sandbox, specs: Path) -> None:
    ecs = sandbox.clients().ecs
    autoscaling = sandbox.clients().autoscaling
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["ci-runners-linux-x64"])
    group_arn = group["AutoScalingGroups"][0]["AutoScalingGroupARN"]
    ecs.create_capacity_provider(
        name="team-owned", autoScalingGroupProvider={"autoScalingGroupArn": group_arn}
    )
    ecs.put_cluster_capacity_providers(
        cluster=CLUSTER, capacityProviders=["team-owned"], defaultCapacityProviderStrategy=[]
    )
    first = cycle(sandbox, specs)
    [association] = [
        a for a in first.plan.actions if a.resource_type == "cluster_capacity_providers"
    ]
    assert "team-owned" in association.after["capacityProviders"]
    converge(sandbox, specs)
    cluster = ecs.describe_clusters(clusters=[CLUSTER])["clusters"][0]
    assert "team-owned" in cluster["capacityProviders"]
    assert len(cluster["capacityProviders"]) == 4


def test_one_pool_failing_to_place_does_not_block_the_others(sandbox: Sandbox, specs: Path) -> None:
    # sandbox instances have 7482 MiB: a 12 GiB runner cannot be placed anywhere
    edit(specs / "enterprise-linux-large.yaml", "memory: 7168", "memory: 12288")
    result = apply(sandbox, specs)
    failed = {action.address for action, _ in result.failed}
    assert failed == {"runner_tasks.enterprise-linux-large"}
    assert "started 0 of 1" in result.failed[0][1]
    done = {action.address for action, _ in result.done}
    assert {"runner_tasks.platform-linux-dind", "runner_tasks.mobile-app-arm64"} <= done


def test_deletion_policy_change_retags_in_place_and_is_obeyed(
    sandbox: Sandbox, specs: Path
) -> None:
    """Switching a pool to Orphan changes no revision content (no rollout): its tags are
    updated in place, and removing the spec afterwards leaves the runners running."""
    converged = converge(sandbox, specs)
    runners = pool_tasks(converged, PLATFORM)
    path = specs / "org-platform-dind.yaml"
    edit(path, "deletionPolicy: Drain", "deletionPolicy: Orphan")
    retag = cycle(sandbox, specs)
    assert kinds(retag) == [("update", f"task_definition.{PLATFORM}[1]")]
    assert apply(sandbox, specs).ok
    after = converge(sandbox, specs)
    assert pool_tasks(after, PLATFORM) == runners  # nothing was rolled
    path.unlink()
    orphaned = cycle(sandbox, specs)
    assert not orphaned.plan.has_changes, kinds(orphaned)
    assert any("deletionPolicy Orphan" in n.message for n in orphaned.plan.notes)
