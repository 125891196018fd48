"""Typed models of the spec kinds (apiVersion ecs-reconciler/v1alpha1).

This module owns the shape and the single-document rules of `RunnerPool` and
`CapacityProvider`. It knows nothing about files or line numbers (see `loader`) nor about
rules that span documents (see `crossref`). Field names in YAML are camelCase; every model
forbids unknown fields, and every default is written here, once.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated, ClassVar, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

API_VERSION = "ecs-reconciler/v1alpha1"

# A DNS label: what Kubernetes calls a name, and what fits an ECS family, a tag and a log stream.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
IAM_ROLE_ARN = r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}$"
SECRET_ARN = (
    r"^arn:aws[a-z-]*:(secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9_/+=.@:-]+"
    r"|ssm:[a-z0-9-]+:\d{12}:parameter/[A-Za-z0-9_/+=.@-]+)$"
)
ORGANIZATION_NAME = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$"
REPOSITORY_NAME = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$"  # owner/name
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,254}$"
RUNNER_VERSION = r"^\d+\.\d+\.\d+$"
# repo[:tag][@sha256:digest], with an optional registry host[:port] in front.
IMAGE_REFERENCE = re.compile(
    r"^(?P<repository>(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
# Subnets and security groups are given by ID or by their Name tag (resolved when observed).
SUBNET_REF = r"^(subnet-[0-9a-f]{8,17}|[A-Za-z0-9_.:/=+@ -]{1,255})$"
SECURITY_GROUP_REF = r"^(sg-[0-9a-f]{8,17}|[A-Za-z0-9_.:/=+@ -]{1,255})$"
# Environment variables the reconciler sets on every runner container itself.
RESERVED_ENVIRONMENT = frozenset(
    {"DOCKER_HOST", "RUNNER_POOL", "RUNNER_LABELS", "RUNNER_SCOPE", "RUNNER_GROUP"}
)
RESERVED_TAG_PREFIXES = ("aws:", "ecs-reconciler:")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# ECS on EC2: a task asks for 0.125 to 192 vCPU.
TASK_CPU_RANGE = (128, 196_608)
RUNNER_MIN_MEMORY = 512
DIND_MIN_MEMORY = 512

Name = Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=63)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Enabled = Literal["ENABLED", "DISABLED"]


class FieldProblem(ValueError):
    """A rule broken by one field of a model: `path` (YAML keys) is relative to that model."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


class SpecModel(BaseModel):
    """Base of every spec model: camelCase in YAML, unknown fields rejected, no coercion."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        frozen=True,
    )


def parse_image_reference(reference: str) -> tuple[str, str | None, str | None]:
    """Split `repo[:tag][@digest]` into (repository, tag, digest); ValueError when malformed."""
    match = IMAGE_REFERENCE.match(reference)
    if not match or not (match["tag"] or match["digest"]):
        raise ValueError(
            f"{reference!r} is not an image reference of the form "
            "registry/repository:tag@sha256:<64 hex> (tag or digest required)"
        )
    return match["repository"], match["tag"], match["digest"]


def _image_reference(value: str) -> str:
    parse_image_reference(value)
    return value


class Metadata(SpecModel):
    """Identity of a document: its name is unique per kind across all spec files."""

    name: Name = Field(description="DNS label (lowercase letters, digits, '-'), max 63.")


class Scope(SpecModel):
    """Where runners register: exactly one of enterprise, organization or repository."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    enterprise: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,99}$", description="Enterprise slug."
    )
    organization: str | None = Field(
        default=None, pattern=ORGANIZATION_NAME, description="Organization."
    )
    repository: str | None = Field(default=None, pattern=REPOSITORY_NAME, description="owner/name.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Scope:
        given = [k for k in ("enterprise", "organization", "repository") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of enterprise, organization or repository"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        """'enterprise', 'organization' or 'repository'."""
        return next(k for k in ("enterprise", "organization", "repository") if getattr(self, k))

    @property
    def target(self) -> str:
        """The enterprise slug, organization name or owner/repository."""
        return str(getattr(self, self.kind))


class Runner(SpecModel):
    """The actions/runner release and the image that contains it."""

    version: str = Field(pattern=RUNNER_VERSION, description="actions/runner version, x.y.z.")
    image: str = Field(description="Runner image: registry/repository:tag@sha256:digest.")

    _check_image = field_validator("image")(_image_reference)


class Docker(SpecModel):
    """Docker for jobs: `none`, or `dind`: a privileged Docker daemon sidecar per task."""

    mode: Literal["none", "dind"] = Field(default="none")
    image: str | None = Field(default=None, description="dind image; required with mode dind.")

    @field_validator("image")
    @classmethod
    def _check_image(cls, value: str | None) -> str | None:
        return None if value is None else _image_reference(value)

    @model_validator(mode="after")
    def _image_matches_mode(self) -> Docker:
        if self.mode == "dind" and not self.image:
            raise FieldProblem(
                ("image",), "mode dind needs an image, for example docker:27-dind@sha256:..."
            )
        if self.mode == "none" and self.image:
            raise FieldProblem(
                ("image",), "image is only used with mode dind; remove it or set mode: dind"
            )
        return self


class Resources(SpecModel):
    """Task-level CPU units (1024 = 1 vCPU) and memory in MiB."""

    cpu: int = Field(ge=TASK_CPU_RANGE[0], le=TASK_CPU_RANGE[1])
    memory: int = Field(ge=RUNNER_MIN_MEMORY, le=3_145_728)


class Network(SpecModel):
    """awsvpc networking: each task (so each job) gets its own ENI."""

    subnets: list[Annotated[str, StringConstraints(pattern=SUBNET_REF)]] = Field(
        min_length=1, max_length=16, description="Subnet IDs or Name tags."
    )
    security_groups: list[Annotated[str, StringConstraints(pattern=SECURITY_GROUP_REF)]] = Field(
        min_length=1, max_length=5, description="Security group IDs or Name tags."
    )

    @field_validator("subnets", "security_groups")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        return _unique_items(values)


class Iam(SpecModel):
    """Roles of the runner task. The execution role pulls images, writes logs, reads secrets."""

    execution_role_arn: str | None = Field(default=None, pattern=IAM_ROLE_ARN)
    task_role_arn: str | None = Field(default=None, pattern=IAM_ROLE_ARN)


class Logging(SpecModel):
    """CloudWatch Logs (awslogs driver); streams are prefixed with the pool name."""

    log_group: str = Field(
        default="/ecs-reconciler/runners", pattern=r"^[A-Za-z0-9_#/.-]{1,512}$", max_length=512
    )


class WeeklyWindow(SpecModel):
    """Given days between `from` and `to`, in a time zone's local wall time ([from, to))."""

    _noun: ClassVar[str] = "windows"  # what a window across midnight is split into

    days: list[Weekday] = Field(min_length=1, max_length=7)
    from_: str = Field(alias="from", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM")
    to: str = Field(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$", description="HH:MM or 24:00")
    timezone: str = Field(description="IANA time zone, for example Asia/Tokyo.")

    @field_validator("days")
    @classmethod
    def _unique_days(cls, values: list[str]) -> list[str]:
        return _unique_items(values)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return _known_timezone(value)

    @model_validator(mode="after")
    def _window_not_empty(self) -> Self:
        if self.from_ >= self.to:
            raise FieldProblem(
                ("to",),
                f"window {self.from_}-{self.to} is empty: 'to' must be after 'from' "
                f"(split a window across midnight into two {self._noun}, ending at 24:00)",
            )
        return self

    def covers(self, now: datetime.datetime) -> bool:
        """Whether `now` (aware) falls inside the window, on the zone's local wall clock (so
        a daylight-saving change moves the window with the local hours)."""
        local = now.astimezone(ZoneInfo(self.timezone))
        return WEEKDAYS[local.weekday()] in self.days and (
            self.from_ <= local.strftime("%H:%M") < self.to
        )


class IdleSchedule(WeeklyWindow):
    """More warm idle runners on given days between `from` and `to` (local time, [from, to))."""

    _noun: ClassVar[str] = "schedules"

    idle: int = Field(ge=0)


DURATION = r"^[1-9]\d{0,5}(s|m)$"


def duration_seconds(value: str) -> int:
    """Seconds of a duration like `30s` or `2m` (validated by DURATION)."""
    return int(value[:-1]) * (60 if value.endswith("m") else 1)


class SloWindow(WeeklyWindow):
    """When the queue-wait objective applies (local time, [from, to)); outside, floors only."""


class RunnerStartup(SpecModel):
    """How long a runner takes from the decision to online (webhook, cycle, pull, start,
    registration): on an instance that has room, and when a new instance must boot first."""

    warm_instance: str = Field(default="25s", pattern=DURATION, description="e.g. 25s")
    new_instance: str = Field(default="95s", pattern=DURATION, description="e.g. 95s or 2m")

    @model_validator(mode="after")
    def _ordered(self) -> RunnerStartup:
        if duration_seconds(self.new_instance) < duration_seconds(self.warm_instance):
            raise FieldProblem(
                ("newInstance",),
                f"newInstance ({self.new_instance}) must be >= warmInstance "
                f"({self.warm_instance}): a new instance adds its boot to the start",
            )
        return self


class QueueWaitSlo(SpecModel):
    """Size the warm pool so that a job waits at most `queueWait` with `percentile`% chance,
    from the arrival rate learned per 5-minute slot of the week (`reconciler.plan.slo`)."""

    queue_wait: str = Field(pattern=DURATION, description="Target queue wait, e.g. 30s.")
    percentile: float = Field(
        default=90, ge=50, le=99.9, description="Share of jobs (%) within queueWait."
    )
    windows: list[SloWindow] = Field(
        default_factory=list, max_length=50, description="When it applies; empty: always."
    )
    startup: RunnerStartup = Field(default_factory=RunnerStartup)
    decay: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Weight of each older week's arrivals relative to the next (1: equal).",
    )
    large_runs: bool = Field(
        default=True,
        description="Keep instance room for the learned large runs (matrices of 20+ jobs), so "
        "the objective holds for their jobs too; false: on the pool's jobs as a whole, which "
        "costs less where matrices come at random times but lets them wait for new instances.",
    )

    @field_validator("percentile", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def queue_wait_seconds(self) -> int:
        """The target in seconds."""
        return duration_seconds(self.queue_wait)


class Scaling(SpecModel):
    """Pool size bounds, warm idle runners, and the per-repository fairness cap."""

    min: int = Field(default=0, ge=0, description="Runners kept even with no demand.")
    max: int = Field(ge=1, le=5000, description="Hard cap on the pool's runner tasks.")
    idle: int = Field(default=0, ge=0, description="Warm idle runners outside schedules.")
    schedules: list[IdleSchedule] = Field(default_factory=list, max_length=50)
    max_per_repository: int | None = Field(
        default=None, ge=1, description="Pending jobs of one repository counted at most."
    )
    slo: QueueWaitSlo | None = Field(
        default=None,
        description="Queue-wait objective: warm runners sized from learned arrivals; "
        "idle and schedules remain floors.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> Scaling:
        if self.min > self.max:
            raise FieldProblem(("max",), f"must be >= min ({self.min})")
        if self.idle > self.max:
            raise FieldProblem(("idle",), f"idle ({self.idle}) must be <= max ({self.max})")
        for index, schedule in enumerate(self.schedules):
            if schedule.idle > self.max:
                raise FieldProblem(
                    ("schedules", index, "idle"),
                    f"schedules[{index}].idle ({schedule.idle}) must be <= max ({self.max})",
                )
        return self


class Rollout(SpecModel):
    """How fast outdated idle runners are replaced: a count or a percentage of the pool."""

    max_surge: Annotated[
        int | str,
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "integer", "minimum": 1},
                    {"type": "string", "pattern": r"^([1-9]\d?|100)%$"},
                ]
            }
        ),
    ] = Field(
        default="25%",
        description="Runners replaced at a time: a count like 3 or a percentage like '25%'"
        " of the pool (rounded up).",
    )
    canary: int = Field(
        default=1,
        ge=0,
        le=100,
        description="A new revision first gets this many runners; the rest of the pool is "
        "replaced (at maxSurge) only once they have come online. 0: no canary.",
    )
    max_failures: int = Field(
        default=3,
        ge=1,
        le=28,
        description="Runners of a new revision that may fail (pull error, crash before doing "
        "a job, boot timeout) before its rollout halts: the previous revision keeps serving "
        "and the pool is Degraded (RolloutHalted) until the spec changes again.",
    )

    @field_validator("max_surge")
    @classmethod
    def _count_or_percentage(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value >= 1:
            return value
        if isinstance(value, str) and re.fullmatch(r"([1-9]\d?|100)%", value):
            return value
        raise ValueError(f"{value!r}: give a count of at least 1 or a percentage from 1% to 100%")

    def surge_for(self, pool_size: int) -> int:
        """Number of runners that may be replaced at once for a pool of `pool_size`."""
        if isinstance(self.max_surge, int):
            return self.max_surge
        percent = int(self.max_surge.rstrip("%"))
        return max(1, -(-pool_size * percent // 100))


class SecretReference(SpecModel):
    """An environment variable filled by ECS from Secrets Manager or SSM: ARN only, no value."""

    name: str = Field(pattern=ENV_NAME)
    value_from: str = Field(pattern=SECRET_ARN, description="Secrets Manager or SSM ARN.")


class SpotPlacement(SpecModel):
    """The pool may run on spot capacity (its capacityProvider's group launches spot instances)
    and names where its runners go while spot cannot launch."""

    fallback_capacity_provider: str = Field(
        min_length=1,
        max_length=255,
        description="An on-demand CapacityProvider of the same cluster: new runners are placed "
        "there while the spot group's launches fail (Auto Scaling activities), and on spot "
        "again once it launches or retryAfter has passed.",
    )
    retry_after: str = Field(
        default="10m",
        pattern=DURATION,
        description="How long after the last failed spot launch new runners go back to spot "
        "without a successful launch seen (a bounded back-off), e.g. 10m.",
    )

    @property
    def retry_after_seconds(self) -> int:
        """The back-off in seconds."""
        return duration_seconds(self.retry_after)


class RunnerGroupAccess(SpecModel):
    """Who may use the pool's runner group, as the group is set in GitHub (its visibility
    `selected`; GitHub docs, "Managing access to self-hosted runners using groups"): an
    organization's group admits selected repositories, an enterprise's group selected
    organizations. GitHub hands a group's runners only to jobs it admits, so the pool's
    demand counts only those jobs. Left out: the group admits every repository of the scope
    (visibility `all`). GitHub has no exclusion list: to keep one repository out, list the
    others (and give that one a group of its own)."""

    repositories: list[Annotated[str, StringConstraints(pattern=REPOSITORY_NAME)]] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="owner/name of each repository the organization's runner group admits "
        "(every owner is the pool's organization).",
    )
    organizations: list[Annotated[str, StringConstraints(pattern=ORGANIZATION_NAME)]] | None = (
        Field(
            default=None,
            min_length=1,
            max_length=1000,
            description="Each organization the enterprise's runner group is shared with.",
        )
    )

    @field_validator("repositories", "organizations")
    @classmethod
    def _unique_names(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _unique_items(values, case_insensitive=True)

    @model_validator(mode="after")
    def _one_list(self) -> RunnerGroupAccess:
        if (self.repositories is None) == (self.organizations is None):
            raise ValueError(
                "give exactly one of repositories (an organization's group) or organizations "
                "(an enterprise's group)"
            )
        return self


class Demand(SpecModel):
    """Where the pool learns which jobs wait for it."""

    source: Literal["webhook", "scaleSet"] = Field(
        default="webhook",
        description="webhook: workflow_job webhooks (GitHub must reach the controller). "
        "scaleSet: a GitHub runner scale set named after the pool, with its labels and "
        "runner group; the leader long-polls its message queue (outbound HTTPS only) and "
        "sizes the pool on its statistics (GitHub.com, GHES 3.10+; labels other than the "
        "pool's name need GHES 3.18+).",
    )


class RunnerPoolSpec(SpecModel):
    """Desired state of one pool of ephemeral runners."""

    cluster: Name
    scope: Scope
    runner_group: str = Field(default="Default", min_length=1, max_length=100)
    runner_group_access: RunnerGroupAccess | None = Field(
        default=None,
        description="The repositories (organization scope) or organizations (enterprise "
        "scope) the runner group admits, as set in GitHub; left out: all of the scope. Jobs "
        "the group does not admit are not this pool's demand.",
    )
    labels: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,100}$")]] = Field(
        min_length=1, max_length=50
    )
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    runner: Runner
    docker: Docker = Field(default_factory=lambda: Docker())
    resources: Resources
    network: Network
    capacity_provider: str = Field(min_length=1, max_length=255)
    spot: SpotPlacement | None = Field(
        default=None,
        description="Set when the pool may run on spot: capacityProvider is then a spot "
        "provider (mixedInstances), and the fallback takes its runners while spot cannot "
        "launch. Left out: the pool runs on on-demand capacity only.",
    )
    iam: Iam = Field(default_factory=lambda: Iam())
    logging: Logging = Field(default_factory=lambda: Logging())
    stop_timeout: int = Field(default=30, ge=2, le=120, description="Seconds before SIGKILL.")
    scaling: Scaling
    rollout: Rollout = Field(default_factory=lambda: Rollout())
    deletion_policy: Literal["Drain", "Orphan"] = "Drain"
    demand: Demand = Field(default_factory=lambda: Demand())
    environment: dict[Annotated[str, StringConstraints(pattern=ENV_NAME)], str] = Field(
        default_factory=dict, max_length=200
    )
    secrets: list[SecretReference] = Field(default_factory=list, max_length=100)
    tags: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=128)],
        Annotated[str, StringConstraints(max_length=256)],
    ] = Field(default_factory=dict, max_length=40)

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, values: list[str]) -> list[str]:
        return _unique_items(values, case_insensitive=True)

    @field_validator("environment")
    @classmethod
    def _no_reserved_environment(cls, values: dict[str, str]) -> dict[str, str]:
        reserved = sorted(RESERVED_ENVIRONMENT.intersection(values))
        if reserved:
            raise ValueError(f"{', '.join(reserved)} is set by the reconciler; remove it")
        return values

    @field_validator("tags")
    @classmethod
    def _no_reserved_tags(cls, values: dict[str, str]) -> dict[str, str]:
        return _check_tags(values)

    @model_validator(mode="after")
    def _consistent(self) -> RunnerPoolSpec:
        if self.capacity_provider in ("FARGATE", "FARGATE_SPOT"):
            raise FieldProblem(
                ("capacityProvider",),
                "Fargate is not supported; runners need EC2 capacity "
                "(docker-in-docker needs privileged containers). Name a CapacityProvider spec.",
            )
        if self.docker.mode == "dind" and self.resources.memory < (
            RUNNER_MIN_MEMORY + DIND_MIN_MEMORY
        ):
            raise FieldProblem(
                ("resources", "memory"),
                f"resources.memory ({self.resources.memory}) is too small for a runner and a "
                f"dind sidecar: give at least {RUNNER_MIN_MEMORY + DIND_MIN_MEMORY} MiB",
            )
        taken = set(self.environment) | RESERVED_ENVIRONMENT
        for index, secret in enumerate(self.secrets):
            if secret.name in taken:
                raise FieldProblem(
                    ("secrets", index, "name"),
                    f"{secret.name} is already set (environment or an earlier secret)",
                )
            taken.add(secret.name)
        if self.secrets and not self.iam.execution_role_arn:
            raise FieldProblem(
                ("iam", "executionRoleArn"),
                "secrets need iam.executionRoleArn (ECS reads them with that role)",
            )
        if self.spot and self.spot.fallback_capacity_provider == self.capacity_provider:
            raise FieldProblem(
                ("spot", "fallbackCapacityProvider"),
                f"the fallback must be another (on-demand) capacity provider than "
                f"capacityProvider ({self.capacity_provider})",
            )
        if self.demand.source == "scaleSet" and self.scaling.max_per_repository is not None:
            raise FieldProblem(
                ("scaling", "maxPerRepository"),
                "maxPerRepository needs webhook demand: a scale set's statistics do not say "
                "which repository waits; remove it or use demand.source webhook",
            )
        if self.scope.repository and self.scaling.max_per_repository is not None:
            raise FieldProblem(
                ("scaling", "maxPerRepository"),
                "maxPerRepository has no effect on a repository-scoped pool; remove it",
            )
        self._check_group_access()
        return self

    def _check_group_access(self) -> None:
        """The access list fits the scope: repositories of the pool's organization, or
        organizations for an enterprise's group; a repository's runners have no group."""
        access, scope = self.runner_group_access, self.scope
        if access is None:
            return
        if scope.repository:
            raise FieldProblem(
                ("runnerGroupAccess",),
                "a repository's runners have no runner group to restrict (GitHub has runner "
                "groups for organizations and enterprises); remove runnerGroupAccess",
            )
        if scope.organization and access.repositories is None:
            raise FieldProblem(
                ("runnerGroupAccess", "organizations"),
                "an organization's runner group admits repositories, not organizations: "
                "give runnerGroupAccess.repositories (owner/name)",
            )
        if scope.enterprise and access.organizations is None:
            raise FieldProblem(
                ("runnerGroupAccess", "repositories"),
                "an enterprise's runner group is shared with organizations, not repositories: "
                "give runnerGroupAccess.organizations",
            )
        for index, name in enumerate(access.repositories or ()):
            owner = name.split("/")[0]
            if scope.organization and owner.lower() != scope.organization.lower():
                raise FieldProblem(
                    ("runnerGroupAccess", "repositories", index),
                    f"{name} is not a repository of the pool's organization "
                    f"{scope.organization}: its group cannot admit it",
                )


class ManagedScaling(SpecModel):
    """ECS managed scaling of the Auto Scaling group (AWS defaults written out)."""

    status: Enabled = "ENABLED"
    target_capacity: int = Field(default=100, ge=1, le=100)
    minimum_scaling_step_size: int = Field(default=1, ge=1, le=10_000)
    maximum_scaling_step_size: int = Field(default=10_000, ge=1, le=10_000)
    instance_warmup_period: int = Field(default=300, ge=0, le=10_000)

    @model_validator(mode="after")
    def _steps(self) -> ManagedScaling:
        if self.minimum_scaling_step_size > self.maximum_scaling_step_size:
            raise FieldProblem(("minimumScalingStepSize",), "must be <= maximumScalingStepSize")
        return self


class MixedInstances(SpecModel):
    """The Auto Scaling group's mixed instances policy: several instance types, spot above an
    on-demand base (the names of the group's `InstancesDistribution`). The group is
    infrastructure; the reconciler checks it against this and treats the provider as spot."""

    instance_types: list[
        Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")]
    ] = Field(
        min_length=2,
        max_length=40,
        description="Instance types of similar size (launch template overrides), in "
        "priority order: several, so one type's shortage does not stop launches.",
    )
    on_demand_base_capacity: int = Field(
        default=0, ge=0, le=10_000, description="Instances always launched on-demand first."
    )
    on_demand_percentage_above_base_capacity: int = Field(
        default=0,
        ge=0,
        le=99,
        description="Share (%) of on-demand instances above the base; the rest is spot "
        "(below 100, or the group launches no spot at all).",
    )
    spot_allocation_strategy: Literal[
        "price-capacity-optimized",
        "capacity-optimized",
        "capacity-optimized-prioritized",
        "lowest-price",
    ] = "price-capacity-optimized"

    @field_validator("instance_types")
    @classmethod
    def _unique_types(cls, values: list[str]) -> list[str]:
        return _unique_items(values)

    @field_validator("on_demand_percentage_above_base_capacity", mode="before")
    @classmethod
    def _some_spot(cls, value: object) -> object:
        if value == 100:
            raise ValueError(
                "100% on-demand above the base launches no spot: leave mixedInstances out "
                "for an on-demand provider"
            )
        return value


class CapacityProviderSpec(SpecModel):
    """An ECS capacity provider over an existing Auto Scaling group, attached to a cluster."""

    cluster: Name
    auto_scaling_group: str = Field(
        min_length=1, max_length=1600, pattern=r"^[^\x00-\x1f]+$", description="Name or ARN."
    )
    scaling: Literal["managed", "reconciler"] = Field(
        default="managed",
        description="Who sets the Auto Scaling group's desired capacity: ECS managed scaling "
        "(`managed`), or the reconciler from the pools' desired tasks by bin packing "
        "(`reconciler`: reacts within one cycle; ECS managed scaling is then turned off, and the "
        "group must carry the tag ecs-reconciler:managed-by=ecs-reconciler).",
    )
    min_instance_lifetime: int = Field(
        default=600,
        ge=0,
        le=86_400,
        description="scaling: reconciler: seconds an instance stays registered before it may "
        "be removed when empty, so a burst that follows soon finds it warm (boots take minutes).",
    )
    mixed_instances: MixedInstances | None = Field(
        default=None,
        description="Set when the group launches spot instances (a mixed instances policy); "
        "pools on it must say spot (with an on-demand fallback). Left out: on-demand.",
    )
    managed_scaling: ManagedScaling = Field(default_factory=lambda: ManagedScaling())
    managed_termination_protection: Enabled = "DISABLED"
    tags: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=128)],
        Annotated[str, StringConstraints(max_length=256)],
    ] = Field(default_factory=dict, max_length=40)

    @field_validator("tags")
    @classmethod
    def _no_reserved_tags(cls, values: dict[str, str]) -> dict[str, str]:
        return _check_tags(values)

    @model_validator(mode="after")
    def _one_scaler(self) -> CapacityProviderSpec:
        if (
            self.scaling == "reconciler"
            and "managed_scaling" in self.model_fields_set
            and self.managed_scaling.status == "ENABLED"
        ):
            raise FieldProblem(
                ("managedScaling", "status"),
                "must be DISABLED (or managedScaling left out) with scaling: reconciler: the "
                "reconciler sets the group's desired capacity, and two scalers would fight",
            )
        return self


class RunnerPool(SpecModel):
    """A pool of ephemeral GitHub Actions runners, one ECS task per job."""

    api_version: Literal["ecs-reconciler/v1alpha1"]
    kind: Literal["RunnerPool"]
    metadata: Metadata
    spec: RunnerPoolSpec


class CapacityProvider(SpecModel):
    """An ECS capacity provider that pools place their tasks on."""

    api_version: Literal["ecs-reconciler/v1alpha1"]
    kind: Literal["CapacityProvider"]
    metadata: Metadata
    spec: CapacityProviderSpec

    @model_validator(mode="after")
    def _name_allowed_by_ecs(self) -> CapacityProvider:
        if self.metadata.name.startswith(("aws", "ecs", "fargate")):
            raise FieldProblem(
                ("metadata", "name"),
                "ECS refuses capacity provider names starting with 'aws', 'ecs' or 'fargate'",
            )
        return self


Resource = RunnerPool | CapacityProvider
KINDS: dict[str, type[RunnerPool] | type[CapacityProvider]] = {
    "RunnerPool": RunnerPool,
    "CapacityProvider": CapacityProvider,
}


def _known_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not an IANA time zone (for example Asia/Tokyo, Europe/Berlin, UTC)"
        ) from None
    return value


def _unique_items(values: list[str], case_insensitive: bool = False) -> list[str]:
    seen: set[str] = set()
    for value in values:
        key = value.lower() if case_insensitive else value
        if key in seen:
            raise ValueError(f"{value!r} is listed twice")
        seen.add(key)
    return values


def _check_tags(values: dict[str, str]) -> dict[str, str]:
    for key in values:
        if key.lower().startswith(RESERVED_TAG_PREFIXES):
            raise ValueError(f"tag key {key!r} uses a reserved prefix (aws:, ecs-reconciler:)")
    return values
