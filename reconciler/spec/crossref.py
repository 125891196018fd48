"""Rules that span documents: unique names, and references between pools and providers.

Works on already validated resources (`LoadedResource`); reports `Diagnostic`s that point at
the offending field and, for duplicates, at both places.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .diagnostics import Diagnostic
from .models import CapacityProvider, RunnerPool

if TYPE_CHECKING:
    from .loader import LoadedResource


def check_references(resources: Sequence[LoadedResource]) -> list[Diagnostic]:
    """Duplicate names per kind, unknown or foreign capacity providers, shared ASGs."""
    diagnostics = _duplicate_names(resources)
    providers = {r.name: r for r in resources if isinstance(r.resource, CapacityProvider)}
    for loaded in resources:
        pool = loaded.resource
        if not isinstance(pool, RunnerPool):
            continue
        reference = pool.spec.capacity_provider
        provider = providers.get(reference)
        if provider is None:
            known = ", ".join(sorted(providers)) or "none defined"
            diagnostics.append(
                Diagnostic(
                    loaded.locate("spec", "capacityProvider"),
                    f"no CapacityProvider named {reference!r} is defined in the specs "
                    f"(known: {known})",
                    "spec.capacityProvider",
                )
            )
        elif isinstance(provider.resource, CapacityProvider) and (
            provider.resource.spec.cluster != pool.spec.cluster
        ):
            diagnostics.append(
                Diagnostic(
                    loaded.locate("spec", "capacityProvider"),
                    f"CapacityProvider {reference!r} belongs to cluster "
                    f"{provider.resource.spec.cluster!r} ({provider.locate('spec', 'cluster')}), "
                    f"not to this pool's cluster {pool.spec.cluster!r}",
                    "spec.capacityProvider",
                )
            )
        diagnostics += _spot_placement(loaded, pool, providers)
    diagnostics += _shared_auto_scaling_groups(resources)
    diagnostics += _one_access_per_runner_group(resources)
    return diagnostics


def _spot_placement(
    loaded: LoadedResource, pool: RunnerPool, providers: dict[str, LoadedResource]
) -> list[Diagnostic]:
    """A pool on a spot provider says so (`spot`), and its fallback is an on-demand provider
    of its cluster; a pool that says spot is on a spot provider."""
    primary = providers.get(pool.spec.capacity_provider)
    primary_spot = (
        primary is not None
        and isinstance(primary.resource, CapacityProvider)
        and primary.resource.spec.mixed_instances is not None
    )
    spot = pool.spec.spot
    if primary is not None and primary_spot and spot is None:
        return [
            Diagnostic(
                loaded.locate("spec", "capacityProvider"),
                f"CapacityProvider {pool.spec.capacity_provider!r} launches spot instances "
                f"(mixedInstances, {primary.locate('spec', 'mixedInstances')}): set spot."
                "fallbackCapacityProvider to an on-demand provider (spot runners can be "
                "interrupted), or use an on-demand provider",
                "spec.spot",
            )
        ]
    if spot is None:
        return []
    diagnostics = []
    if primary is not None and not primary_spot:
        diagnostics.append(
            Diagnostic(
                loaded.locate("spec", "spot"),
                f"spot is set, but CapacityProvider {pool.spec.capacity_provider!r} has no "
                "mixedInstances (it launches on-demand only): remove spot, or give the "
                "provider its group's mixed instances policy",
                "spec.spot",
            )
        )
    name = spot.fallback_capacity_provider
    fallback = providers.get(name)
    where = loaded.locate("spec", "spot", "fallbackCapacityProvider")
    field = "spec.spot.fallbackCapacityProvider"
    if fallback is None or not isinstance(fallback.resource, CapacityProvider):
        known = ", ".join(sorted(providers)) or "none defined"
        diagnostics.append(
            Diagnostic(
                where, f"no CapacityProvider named {name!r} is defined (known: {known})", field
            )
        )
    elif fallback.resource.spec.mixed_instances:
        diagnostics.append(
            Diagnostic(
                where,
                f"the fallback {name!r} launches spot instances too "
                f"({fallback.locate('spec', 'mixedInstances')}): name an on-demand provider",
                field,
            )
        )
    elif fallback.resource.spec.cluster != pool.spec.cluster:
        diagnostics.append(
            Diagnostic(
                where,
                f"the fallback {name!r} belongs to cluster {fallback.resource.spec.cluster!r}, "
                f"not to this pool's cluster {pool.spec.cluster!r}",
                field,
            )
        )
    return diagnostics


def _duplicate_names(resources: Sequence[LoadedResource]) -> list[Diagnostic]:
    by_name: dict[tuple[str, str], list[LoadedResource]] = defaultdict(list)
    for loaded in resources:
        by_name[(loaded.resource.kind, loaded.name)].append(loaded)
    diagnostics = []
    for (kind, name), same in by_name.items():
        first = same[0]
        for duplicate in same[1:]:
            diagnostics.append(
                Diagnostic(
                    duplicate.locate("metadata", "name"),
                    f"{kind} {name!r} is defined twice: here and at "
                    f"{first.locate('metadata', 'name')}; names are unique per kind",
                    "metadata.name",
                )
            )
    return diagnostics


def _shared_auto_scaling_groups(resources: Sequence[LoadedResource]) -> list[Diagnostic]:
    owner: dict[str, LoadedResource] = {}
    diagnostics = []
    for loaded in resources:
        provider = loaded.resource
        if not isinstance(provider, CapacityProvider):
            continue
        group = provider.spec.auto_scaling_group
        first = owner.setdefault(group, loaded)
        if first is not loaded and first.name != loaded.name:
            diagnostics.append(
                Diagnostic(
                    loaded.locate("spec", "autoScalingGroup"),
                    f"Auto Scaling group {group!r} is already used by CapacityProvider "
                    f"{first.name!r} ({first.locate('spec', 'autoScalingGroup')}); "
                    "ECS allows one capacity provider per group",
                    "spec.autoScalingGroup",
                )
            )
    return diagnostics


def _one_access_per_runner_group(resources: Sequence[LoadedResource]) -> list[Diagnostic]:
    """Pools in one runner group (same scope and group name) state the same access: GitHub
    keeps one repository (or organization) access list per group."""
    first_of: dict[tuple[str, str, str], LoadedResource] = {}
    diagnostics = []
    for loaded in resources:
        pool = loaded.resource
        if not isinstance(pool, RunnerPool) or pool.spec.scope.repository:
            continue
        spec = pool.spec
        key = (spec.scope.kind, spec.scope.target.lower(), spec.runner_group.lower())
        first = first_of.setdefault(key, loaded)
        if first is loaded or not isinstance(first.resource, RunnerPool):
            continue
        if _access(first.resource) != _access(pool):
            diagnostics.append(
                Diagnostic(
                    loaded.locate("spec", "runnerGroupAccess")
                    if spec.runner_group_access
                    else loaded.locate("spec", "runnerGroup"),
                    f"runner group {spec.runner_group!r} of {spec.scope.target} is also used by "
                    f"RunnerPool {first.name!r} ({first.locate('spec', 'runnerGroup')}) with "
                    "another runnerGroupAccess; a group has one access list: state the same "
                    "access in both, or use another group",
                    "spec.runnerGroupAccess",
                )
            )
    return diagnostics


def _access(pool: RunnerPool) -> tuple[frozenset[str], frozenset[str]] | None:
    access = pool.spec.runner_group_access
    if access is None:
        return None
    return (
        frozenset(name.lower() for name in access.repositories or ()),
        frozenset(name.lower() for name in access.organizations or ()),
    )
