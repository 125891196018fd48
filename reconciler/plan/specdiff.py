"""What a spec change will do, from the specs alone: `plan --base REF` (no AWS credentials).

Pure: two spec sets (the base revision and the working tree) in, a `Plan` out, in the same
shape the live planner produces so that the same renderers, exit codes and policies apply.
It shows pools and capacity providers added, removed and changed (an RFC 6902 patch of the
spec, each path tied to its file:line), the task-definition revisions that will be
registered, and the rollouts they trigger.
"""

from __future__ import annotations

import datetime
from typing import Any

from ..spec.loader import LoadedResource, SpecSet
from ..spec.models import RunnerPool
from .actions import (
    Action,
    Note,
    Plan,
    RegisterTaskDefinition,
    ReplaceRunners,
    RunRunners,
    SpecChange,
    UpdateTaskDefinition,
)
from .desired import render_pool
from .planner import patch_of

OFFLINE_REGION = "${AWS_REGION}"


def diff_spec_sets(base: SpecSet, head: SpecSet, now: datetime.datetime) -> Plan:
    """The changes from `base` to `head`, as a plan."""
    actions: list[Action] = []
    notes: list[Note] = []
    before = {(r.resource.kind, r.name): r for r in base.resources}
    after = {(r.resource.kind, r.name): r for r in head.resources}
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old is not None and new is not None:
            actions += _changed(old, new, now)
        elif new is not None:
            actions += _added(new, now)
        elif old is not None and head.ok:
            actions += _removed(old)
        elif old is not None:
            notes.append(
                Note(
                    "warning",
                    f"{key[0]} {key[1]} is missing, but some specs failed to load: "
                    "it is not counted as removed",
                    key[1] if key[0] == "RunnerPool" else None,
                )
            )
    if not base.ok:
        notes.append(Note("warning", "the base revision's specs have errors; compared as loaded"))
    return Plan(
        actions=tuple(sorted(actions, key=lambda a: (a.phase, a.resource_type, a.name))),
        notes=tuple(notes),
        spec_errors=tuple(str(d) for d in head.errors),
        generated_at=now.isoformat(timespec="seconds"),
    )


def _resource_type(loaded: LoadedResource) -> str:
    return "runner_pool" if isinstance(loaded.resource, RunnerPool) else "capacity_provider"


def _document(loaded: LoadedResource) -> dict[str, Any]:
    return loaded.resource.model_dump(mode="json", by_alias=True)


def _locations(loaded: LoadedResource, patch: list[dict[str, Any]]) -> dict[str, str]:
    found = {"": str(loaded.locate("metadata", "name"))}
    for operation in patch:
        path = tuple(
            int(part) if part.isdigit() else part.replace("~1", "/").replace("~0", "~")
            for part in operation["path"].split("/")[1:]
        )
        found[operation["path"]] = str(loaded.locate(*path))
    return found


def _changed(old: LoadedResource, new: LoadedResource, now: datetime.datetime) -> list[Action]:
    before, after = _document(old), _document(new)
    if before == after:
        return []
    patch = patch_of(before, after)
    kind = _resource_type(new)
    pool = new.name if kind == "runner_pool" else None
    actions: list[Action] = [
        SpecChange(
            "update",
            kind,
            new.name,
            "spec changed",
            pool=pool,
            before=before,
            after=after,
            patch=patch,
            locations=_locations(new, patch),
        )
    ]
    if isinstance(old.resource, RunnerPool) and isinstance(new.resource, RunnerPool):
        actions += _revision_change(old.resource, new.resource, now, new)
    return actions


def _revision_change(
    old: RunnerPool, new: RunnerPool, now: datetime.datetime, source: LoadedResource
) -> list[Action]:
    old_pool = render_pool(old, now, OFFLINE_REGION)
    new_pool = render_pool(new, now, OFFLINE_REGION)
    if old_pool.spec_hash == new_pool.spec_hash:
        return []
    name = new.metadata.name
    location = {"": str(source.locate("metadata", "name"))}
    return [
        UpdateTaskDefinition(
            name,
            "register a new revision: the rendered task definition changed",
            cluster=new.spec.cluster,
            pool=name,
            before=old_pool.task_definition,
            after=new_pool.task_definition,
            patch=patch_of(old_pool.task_definition, new_pool.task_definition),
            spec_hash=new_pool.spec_hash,
            locations=location,
        ),
        ReplaceRunners(
            name,
            f"rollout: idle runners move to the new revision, {new_pool.max_surge} at a time "
            "(maxSurge); busy runners finish their job first",
            cluster=new.spec.cluster,
            pool=name,
            count=new_pool.desired_count,
            spec_hash=new_pool.spec_hash,
            locations=location,
        ),
    ]


def _added(new: LoadedResource, now: datetime.datetime) -> list[Action]:
    kind = _resource_type(new)
    after = _document(new)
    pool = new.name if kind == "runner_pool" else None
    location = {"": str(new.locate("metadata", "name"))}
    actions: list[Action] = [
        SpecChange(
            "create",
            kind,
            new.name,
            "new in the specs",
            pool=pool,
            after=after,
            patch=patch_of({}, after),
            locations=location,
        )
    ]
    if isinstance(new.resource, RunnerPool):
        rendered = render_pool(new.resource, now, OFFLINE_REGION)
        actions += [
            RegisterTaskDefinition(
                new.name,
                "first revision of a new pool",
                cluster=rendered.cluster,
                pool=new.name,
                after=rendered.task_definition,
                spec_hash=rendered.spec_hash,
                locations=location,
            ),
            RunRunners(
                new.name,
                f"new pool: {rendered.count_reason}",
                cluster=rendered.cluster,
                pool=new.name,
                count=rendered.desired_count,
                spec_hash=rendered.spec_hash,
                locations=location,
            ),
        ]
    return actions


def _removed(old: LoadedResource) -> list[Action]:
    kind = _resource_type(old)
    is_pool = isinstance(old.resource, RunnerPool)
    reason = "removed from the specs"
    if isinstance(old.resource, RunnerPool):
        policy = old.resource.spec.deletion_policy
        effect = (
            "idle runners stop, busy ones finish first"
            if policy == "Drain"
            else "runners are left running"
        )
        reason += f": deletionPolicy {policy} ({effect})"
    return [
        SpecChange(
            "delete",
            kind,
            old.name,
            reason,
            pool=old.name if is_pool else None,
            before=_document(old),
            patch=[{"op": "remove", "path": ""}],
            deletes_pool=is_pool,
            locations={"": str(old.locate("metadata", "name"))},
        )
    ]
