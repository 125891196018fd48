"""Verification of a spec set (`ecs-reconciler verify`) and of a plan's new revisions.

`Verifier.spec_set` walks every document and asks the image and environment verifiers what
it needs; `verify_new_images` checks the images of every task-definition revision a plan would
register and adds a note per problem: an error (the plan must not be applied) for a missing
ECR image, a warning for any other image that is missing or could not be checked.
"""

from __future__ import annotations

from collections import Counter

from ..aws.clients import AwsClients
from ..plan.actions import Action, Note, Plan
from ..spec.loader import LoadedResource, SpecSet
from ..spec.models import CapacityProvider, RunnerPool
from .environment import EnvironmentVerifier
from .images import ImageReference, ImageVerifier
from .registry import RegistryClient
from .results import Check, Outcome, Report, ResourceChecks


class Verifier:
    """Checks with one shared cache: each image, role, log group... is looked up once."""

    def __init__(self, clients: AwsClients, registry: RegistryClient | None = None) -> None:
        self.clients = clients
        self.images = ImageVerifier(clients, registry)
        self.environment = EnvironmentVerifier(clients)

    def close(self) -> None:
        """Release the registry connections."""
        self.images.registry.close()

    def calls(self) -> dict[str, int]:
        """AWS calls (`service:Operation`) and registry requests (`registry:host`) so far."""
        counted = Counter(self.clients.calls)
        counted.update({f"registry:{h}": n for h, n in self.images.registry.requests.items()})
        return dict(counted)

    def spec_set(self, spec_set: SpecSet) -> Report:
        """The result tree for every valid document of the spec set."""
        defined = {p.metadata.name for p in spec_set.capacity_providers}
        pools = spec_set.pools
        subnets, groups = self.environment.network(
            {s for p in pools for s in p.spec.network.subnets},
            {g for p in pools for g in p.spec.network.security_groups},
        )
        resources: list[ResourceChecks] = []
        for loaded in spec_set.resources:
            if isinstance(loaded.resource, RunnerPool):
                checks = self._pool(loaded.resource, defined, subnets, groups)
            else:
                checks = self._capacity_provider(loaded.resource)
            resources.append(
                ResourceChecks(loaded.resource.kind, loaded.name, _source(loaded), tuple(checks))
            )
        return Report(tuple(resources), tuple(str(e) for e in spec_set.errors), calls=self.calls())

    def _pool(
        self,
        pool: RunnerPool,
        defined_providers: set[str],
        subnets: dict[str, Outcome],
        groups: dict[str, Outcome],
    ) -> list[Check]:
        spec, env = pool.spec, self.environment
        checks = [Check("Cluster", spec.cluster, env.cluster(spec.cluster))]
        images = {"runner": spec.runner.image, "dind": spec.docker.image}
        checks += [
            Check("Image", f"{container}: {image}", self.images.check(image))
            for container, image in images.items()
            if image
        ]
        roles = {"ExecutionRole": spec.iam.execution_role_arn, "TaskRole": spec.iam.task_role_arn}
        checks += [Check(kind, arn, env.role(arn)) for kind, arn in roles.items() if arn]
        checks.append(
            Check("LogGroup", spec.logging.log_group, env.log_group(spec.logging.log_group))
        )
        checks += [
            Check("Secret", f"{s.name}: {s.value_from}", env.secret(s.value_from))
            for s in spec.secrets
        ]
        provider = spec.capacity_provider
        checks.append(
            Check(
                "CapacityProvider",
                provider,
                Outcome("ok", "described by a CapacityProvider spec")
                if provider in defined_providers
                else env.capacity_provider(provider),
            )
        )
        checks += [Check("Subnet", s, subnets[s]) for s in spec.network.subnets]
        checks += [Check("SecurityGroup", g, groups[g]) for g in spec.network.security_groups]
        return checks

    def _capacity_provider(self, provider: CapacityProvider) -> list[Check]:
        spec = provider.spec
        return [
            Check("Cluster", spec.cluster, self.environment.cluster(spec.cluster)),
            Check(
                "AutoScalingGroup",
                spec.auto_scaling_group,
                self.environment.auto_scaling_group(spec.auto_scaling_group),
            ),
        ]

    def plan_notes(self, plan: Plan) -> list[Note]:
        """A note per image of a new revision that is missing or could not be checked.

        Only ECR answers are authoritative enough to refuse (error): a registry asked without
        credentials may answer 404 for a private image, so its "not found" is a warning, like
        an unreachable registry.
        """
        notes: list[Note] = []
        for action in plan.actions:
            for container, image in registered_images(action):
                outcome = self.images.check(image)
                if outcome.status == "ok":
                    continue
                if outcome.status == "failed" and ImageReference.parse(image).ecr:
                    message = f"{outcome.detail}; refusing to roll out the new revision"
                    notes.append(
                        Note("error", f"image {image} ({container}): {message}", action.pool)
                    )
                else:
                    notes.append(
                        Note(
                            "warning", f"image {image} ({container}): {outcome.detail}", action.pool
                        )
                    )
        return notes


def registered_images(action: Action) -> list[tuple[str, str]]:
    """(container, image) of the revision an action registers; none for other actions."""
    if action.resource_type != "task_definition" or action.action not in ("create", "update"):
        return []
    containers = (action.after or {}).get("containerDefinitions", [])
    return [(c["name"], c["image"]) for c in containers if c.get("image")]


def verify_new_images(plan: Plan, clients: AwsClients) -> list[Note]:
    """A note for every missing (error) or unverifiable (warning) image of a new revision."""
    verifier = Verifier(clients)
    try:
        return verifier.plan_notes(plan)
    finally:
        verifier.close()


def _source(loaded: LoadedResource) -> str:
    return str(loaded.locate()).rsplit(":", 1)[0]
