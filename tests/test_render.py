"""Renderers of a plan: terminal text, versioned JSON, the pull-request Markdown comment."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.plan.actions import (
    FORMAT_VERSION,
    TYPED_ACTIONS,
    Action,
    Phase,
    Plan,
    RunRunners,
    SpecChange,
    action_from_json,
    plan_from_json,
)
from reconciler.plan.planner import plan
from reconciler.plan.render_markdown import GITHUB_COMMENT_LIMIT, render_markdown
from reconciler.plan.render_text import render_text
from reconciler.plan.state import DesiredState, ObservedCluster

from .test_planner import (
    GROUPS,
    NOW,
    converged,
    desired_of,
    empty_cluster,
    pool_spec,
    provider_of,
    provider_spec,
    revision_of,
    states_of,
)

FENCE = "`" * 3
NO_CHANGES = "No changes. ECS matches the specs."


def _create(tmp_path: Path) -> Plan:
    desired = desired_of(tmp_path, pool_spec(idle=3), provider_spec())
    return plan(desired, empty_cluster(desired), {}, now=NOW)


def _drift_and_removal(tmp_path: Path) -> Plan:
    """targetCapacity changed by hand, a provider of ours left the specs, 4 idle runners for 2."""
    desired = desired_of(tmp_path, pool_spec(idle=2), provider_spec())
    observed = converged(desired, "iiii")
    linux = observed.capacity_providers["linux"]
    settings = {**linux.settings, "managedScaling": {**linux.settings["managedScaling"]}}
    settings["managedScaling"]["targetCapacity"] = 50
    observed = dataclasses.replace(
        observed,
        capacity_providers={
            "linux": dataclasses.replace(linux, settings=settings),
            "old": provider_of("old", "ci-old"),
        },
        clusters={"ci": ObservedCluster("ci", "ACTIVE", ("linux", "old"))},
    )
    return plan(desired, observed, states_of(observed), now=NOW)


def _rollout_and_replacement(tmp_path: Path) -> Plan:
    """An image bump rolls 2 idle runners; a spare provider moved to another group."""
    old = desired_of(tmp_path, pool_spec(idle=2), provider_spec(), provider_spec("spare", "ci-old"))
    observed = converged(old)
    new = desired_of(
        tmp_path,
        pool_spec(idle=2, version="2.329.0", extra="  rollout: {maxSurge: 2, canary: 0}\n"),
        provider_spec(),
        provider_spec("spare", "ci-linux-v2"),
    )
    return plan(new, observed, states_of(observed), now=NOW)


TEXT_CASES = [
    # (scenario, lines the text must contain)
    pytest.param(
        _create,
        [
            "  + capacity_provider.linux will be created",
            "  ~ cluster_capacity_providers.ci will be updated in place",
            "  + task_definition.pool-a will be created",
            "  + runner_tasks.pool-a: start 3 runner(s)",
            "Plan: 2 to create, 1 to update, 0 to replace, 0 to delete; "
            "runners: 3 to start, 0 to stop.",
        ],
        id="create",
    ),
    pytest.param(
        _drift_and_removal,
        [
            "  ~ capacity_provider.linux will be updated in place",
            "        ~ /managedScaling/targetCapacity = 100 (was 50)",
            "  ~ cluster_capacity_providers.ci will be updated in place",
            "        - /capacityProviders/1",
            "  - runner_tasks.pool-a: stop 2 idle runner(s)",
            "        - task pool-a-000",
            "  - capacity_provider.old will be deleted",
            "Plan: 0 to create, 2 to update, 0 to replace, 1 to delete; "
            "runners: 0 to start, 2 to stop.",
        ],
        id="update, stop, delete",
    ),
    pytest.param(
        _rollout_and_replacement,
        [
            "  -/+ capacity_provider.spare must be replaced",
            f"        ~ /autoScalingGroupArn = {json.dumps(GROUPS['ci-linux-v2'])} "
            f"(was {json.dumps(GROUPS['ci-old'])})",
            "  ~ task_definition.pool-a will be updated in place",
            "  -/+ runner_tasks.pool-a: replace 2 outdated idle runner(s) with 2 new",
            "Plan: 0 to create, 1 to update, 1 to replace, 0 to delete; "
            "runners: 2 to start, 2 to stop.",
        ],
        id="replace",
    ),
]


@pytest.mark.parametrize(("scenario", "expected"), TEXT_CASES)
def test_text_shows_symbols_patches_and_summary(
    tmp_path: Path, scenario: Callable[[Path], Plan], expected: list[str]
) -> None:
    result = scenario(tmp_path)
    text = render_text(result)
    lines = text.splitlines()
    for line in expected:
        assert line in lines, f"{line!r} not in:\n{text}"
    assert lines[-1] == result.summary_line()
    assert text.startswith("ecs-reconciler will perform the following actions:")


def test_text_of_an_empty_plan_says_no_changes(tmp_path: Path) -> None:
    desired = desired_of(tmp_path, pool_spec(), provider_spec())
    observed = converged(desired)
    text = render_text(plan(desired, observed, states_of(observed), now=NOW))
    assert text.splitlines()[-1] == NO_CHANGES
    assert "will perform" not in text
    assert "pool-a" in text  # the pool table is still shown
    assert render_text(Plan()) == NO_CHANGES + "\n"


def test_text_shows_spec_errors_and_notes(tmp_path: Path) -> None:
    desired = desired_of(tmp_path, pool_spec(subnet="ci-private"), provider_spec(), "kind: [\n")
    result = plan(
        desired, converged(desired, ""), {}, spec_errors=("specs/x.yaml:1:7: bad",), now=NOW
    )
    text = render_text(result)
    assert "Spec errors (nothing is deleted on account of these files):" in text
    assert "  specs/x.yaml:1:7: bad" in text
    assert "  x pool pool-a: network references not found (by ID or Name tag): ci-private" in text
    assert "  ! the spec set has errors" in text


def test_text_shows_a_renamed_tag_with_its_value(tmp_path: Path) -> None:
    """A tag key renamed in a spec makes jsonpatch emit a `move`: it must not show as null."""
    desired = desired_of(tmp_path, pool_spec(), provider_spec(extra="  tags: {owner: ci}\n"))
    observed = converged(desired)
    linux = observed.capacity_providers["linux"]
    renamed = dataclasses.replace(
        linux, tags={**{k: v for k, v in linux.tags.items() if k != "owner"}, "team": "ci"}
    )
    result = plan(
        desired,
        dataclasses.replace(observed, capacity_providers={"linux": renamed}),
        states_of(observed),
        now=NOW,
    )
    [update] = result.actions
    assert update.address == "capacity_provider.linux"
    text = render_text(result)
    assert '/tags/owner = "ci"' in text, text
    assert "/tags/team" in text, "the tag that goes away is not shown"
    assert "null" not in text


# ---------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    "scenario", [_create, _drift_and_removal, _rollout_and_replacement], ids=["c", "u", "r"]
)
def test_json_is_versioned_and_complete(tmp_path: Path, scenario: Callable[[Path], Plan]) -> None:
    result = scenario(tmp_path)
    document = json.loads(json.dumps(result.to_json()))
    assert document["format_version"] == FORMAT_VERSION == "1.0"
    assert document["has_changes"] is True
    assert document["summary"]["line"] == result.summary_line()
    assert len(document["actions"]) == len(result.actions)
    for action, data in zip(result.actions, document["actions"], strict=True):
        assert {"action", "address", "before", "after", "patch", "reason", "phase"} <= set(data)
        assert (data["action"], data["address"]) == (action.action, action.address)
        if action.resource_type == "runner_tasks":
            assert data["count"] == action.count
            assert data["stop_task_arns"] == list(action.task_arns)
        else:
            assert isinstance(data["patch"], list) and data["patch"]
    assert [p["name"] for p in document["pools"]] == ["pool-a"]


@pytest.mark.parametrize(
    "scenario", [_create, _drift_and_removal, _rollout_and_replacement], ids=["c", "u", "r"]
)
def test_json_reads_back_as_the_same_typed_actions(
    tmp_path: Path, scenario: Callable[[Path], Plan]
) -> None:
    result = scenario(tmp_path)
    document = json.loads(json.dumps(result.to_json()))
    again = plan_from_json(document)
    assert again.to_json() == document
    assert [type(a) for a in again.actions] == [type(a) for a in result.actions]
    assert Action not in {type(a) for a in result.actions}  # the planner builds typed ones
    assert render_text(again) == render_text(result)


def test_every_action_kind_round_trips_with_its_kind_and_phase() -> None:
    actions = [
        cls("x", "why", cluster="ci", pool="x", after={"a": 1}, count=2, task_arns=("t",))
        for cls in TYPED_ACTIONS
    ] + [SpecChange("update", "runner_pool", "x", "spec changed", patch=[{"op": "add"}])]
    kinds = {(a.resource_type, a.action) for a in actions[:-1]}
    assert len(kinds) == len(TYPED_ACTIONS)  # one class per kind
    for action in actions:
        again = action_from_json(json.loads(json.dumps(action.to_json())))
        assert type(again) is type(action)
        assert again.to_json() == action.to_json()
    assert actions[-1].phase is Phase.SPECS


def test_a_malformed_plan_document_is_refused_clearly(tmp_path: Path) -> None:
    data = RunRunners("x", "scale out", count=1).to_json()
    with pytest.raises(ValueError, match="unknown plan action 'launch' of 'runner_tasks'"):
        action_from_json({**data, "action": "launch"})
    with pytest.raises(ValueError, match="phase clean_up is not its phase"):
        action_from_json({**data, "phase": "clean_up"})
    with pytest.raises(ValueError, match="unknown phase 'later'"):
        action_from_json({**data, "phase": "later"})
    with pytest.raises(ValueError, match="needs the field 'reason'"):
        action_from_json({k: v for k, v in data.items() if k != "reason"})
    document = _create(tmp_path).to_json()
    with pytest.raises(ValueError, match=r"plan format '2\.0' is not '1\.0'"):
        plan_from_json({**document, "format_version": "2.0"})
    with pytest.raises(ValueError, match="not a plan: 'notes'"):
        plan_from_json({k: v for k, v in document.items() if k != "notes"})


def test_json_of_no_changes(tmp_path: Path) -> None:
    desired = desired_of(tmp_path, pool_spec(), provider_spec())
    observed = converged(desired)
    document = plan(desired, observed, states_of(observed), now=NOW).to_json()
    assert document["has_changes"] is False
    assert document["actions"] == []
    assert document["summary"]["line"] == NO_CHANGES


# ---------------------------------------------------------------------------- Markdown


@pytest.fixture(scope="module")
def three_hundred(tmp_path_factory: pytest.TempPathFactory) -> DesiredState:
    """300 pools and one capacity provider (loaded once: it is the slowest part)."""
    pools = [pool_spec(f"pool-{n:03d}") for n in range(300)]
    return desired_of(tmp_path_factory.mktemp("many"), provider_spec(), *pools)


def _assert_well_formed(markdown: str, limit: int = GITHUB_COMMENT_LIMIT) -> None:
    assert len(markdown) <= limit
    assert markdown.count(FENCE) % 2 == 0, "a code block is left open"
    assert markdown.count("<details>") == markdown.count("</details>")


def test_markdown_of_300_new_pools_fits_a_comment(three_hundred: DesiredState) -> None:
    result = plan(three_hundred, empty_cluster(three_hundred), {}, now=NOW)
    assert len(result.actions) == 602
    markdown = render_markdown(result)
    _assert_well_formed(markdown)
    assert f"**{result.summary_line()}**" in markdown
    assert "not shown: see the JSON plan" in markdown
    assert "[!CAUTION]" not in markdown


@pytest.mark.parametrize("revisions", [1, 2], ids=["1 revision each", "2 revisions each"])
def test_markdown_lists_every_deletion_even_when_details_are_cut(
    tmp_path: Path, three_hundred: DesiredState, revisions: int
) -> None:
    """All 300 pools leave the specs: each stops its runner and deregisters its revisions."""
    observed = converged(three_hundred)
    observed = dataclasses.replace(
        observed,
        task_definitions={
            pool.family: [revision_of(three_hundred, name, n) for n in range(1, revisions + 1)]
            for name, pool in three_hundred.pools.items()
        },
    )
    after = desired_of(tmp_path, provider_spec())
    result = plan(after, observed, states_of(observed), now=NOW)
    deletions = [a for a in result.actions if a.action == "delete" or a.deletes_pool]
    assert len(deletions) == 300 * (1 + revisions)
    markdown = render_markdown(result)
    _assert_well_formed(markdown)
    assert f"**{result.summary_line()}**" in markdown
    caution = markdown.split("> [!CAUTION]", 1)[1].split("\n\n", 1)[0]
    assert f"{len(deletions)} deletion(s)" in caution
    missing = [a.address for a in deletions if f"`{a.address}`" not in caution]
    assert not missing, f"{len(missing)} deletion(s) not listed, first {missing[:3]}"
    assert "not shown: see the JSON plan" in markdown  # the details were cut


def test_markdown_without_changes(tmp_path: Path) -> None:
    desired = desired_of(tmp_path, pool_spec(), provider_spec())
    observed = converged(desired)
    markdown = render_markdown(plan(desired, observed, states_of(observed), now=NOW))
    _assert_well_formed(markdown)
    assert f"**{NO_CHANGES}**" in markdown
    assert "[!CAUTION]" not in markdown and "<details>" not in markdown


def test_markdown_shows_deletions_warnings_and_details(tmp_path: Path) -> None:
    result = _drift_and_removal(tmp_path)
    markdown = render_markdown(result)
    _assert_well_formed(markdown)
    assert "> **1 deletion(s):**" in markdown
    assert "> - `capacity_provider.old`: no longer in the specs" in markdown
    assert f"<details><summary>Details ({len(result.actions)} actions)</summary>" in markdown
    assert "~ /managedScaling/targetCapacity = 100 (was 50)" in markdown
    assert "| `pool-a` | 2 | 4 | 0 | 4 | 0 | stop 2 idle runner(s) |" in markdown


def test_markdown_respects_a_smaller_limit(tmp_path: Path) -> None:
    result = _create(tmp_path)
    markdown = render_markdown(result, limit=600)
    _assert_well_formed(markdown, limit=600)
    assert f"**{result.summary_line()}**" in markdown
