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
    diagnostics += _shared_auto_scaling_groups(resources)
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
