"""Does what a pool runs on exist? Cluster, roles, log group, secrets, capacity, network.

Read-only AWS calls, each answer kept for the verifier's lifetime so a role or a log group
shared by ten pools is looked up once. What the reconciler itself creates (capacity providers
described by a `CapacityProvider` spec) is checked through what it needs (the Auto Scaling
group), not for existence. Secrets are described, never read: whether the execution role may
read them is IAM's call, not simulated here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..aws.clients import AwsClients
from ..aws.observe import Observer
from .results import Outcome

AWS_ERRORS = (ClientError, BotoCoreError)
ECS_TASKS = "ecs-tasks.amazonaws.com"
ASSUME_ACTIONS = frozenset({"sts:AssumeRole", "sts:*", "*"})


class EnvironmentVerifier:
    """One method per kind of thing a pool needs; each answers an `Outcome`, memoized."""

    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients
        self._outcomes: dict[tuple[str, str], Outcome] = {}
        self._iam: Any = None
        self._logs: Any = None

    def _memo(self, kind: str, key: str, check: Callable[[], Outcome]) -> Outcome:
        if (kind, key) not in self._outcomes:
            try:
                self._outcomes[(kind, key)] = check()
            except AWS_ERRORS as error:
                self._outcomes[(kind, key)] = Outcome("failed", f"cannot check: {error}")
        return self._outcomes[(kind, key)]

    def cluster(self, name: str) -> Outcome:
        """The ECS cluster exists and is ACTIVE."""

        def check() -> Outcome:
            found = self.clients.ecs.describe_clusters(clusters=[name]).get("clusters", [])
            if any(c.get("status") == "ACTIVE" for c in found):
                return Outcome("ok")
            return Outcome("failed", f"ECS cluster {name} does not exist (or is not ACTIVE)")

        return self._memo("cluster", name, check)

    def role(self, arn: str) -> Outcome:
        """The IAM role exists and trusts ecs-tasks.amazonaws.com with sts:AssumeRole."""

        def check() -> Outcome:
            if self._iam is None:
                self._iam = self.clients.client("iam")
            iam = self._iam
            try:
                role = iam.get_role(RoleName=arn.rsplit("/", 1)[-1])["Role"]
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "NoSuchEntity":
                    return Outcome("failed", f"IAM role {arn} does not exist")
                raise
            if role["Arn"] != arn:
                return Outcome("failed", f"IAM role {arn} does not exist (found {role['Arn']})")
            if not _trusts_ecs_tasks(role.get("AssumeRolePolicyDocument", {})):
                return Outcome(
                    "failed",
                    f"IAM role {arn} cannot be assumed by ECS tasks: its trust policy does not "
                    f"allow sts:AssumeRole to {ECS_TASKS}",
                )
            return Outcome("ok")

        return self._memo("role", arn, check)

    def log_group(self, name: str) -> Outcome:
        """The CloudWatch Logs group exists (the awslogs driver does not create it)."""

        def check() -> Outcome:
            if self._logs is None:
                self._logs = self.clients.client("logs")
            logs = self._logs
            pages = logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name)
            if any(g["logGroupName"] == name for page in pages for g in page["logGroups"]):
                return Outcome("ok")
            return Outcome("failed", f"CloudWatch log group {name} does not exist")

        return self._memo("log-group", name, check)

    def secret(self, arn: str) -> Outcome:
        """The Secrets Manager secret or SSM parameter exists (its value is never read)."""

        def check() -> Outcome:
            region = arn.split(":")[3]
            if ":secretsmanager:" in arn:
                secretsmanager = self.clients.client("secretsmanager", region=region)
                try:
                    secret = secretsmanager.describe_secret(SecretId=arn)
                except ClientError as error:
                    if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                        return Outcome("failed", f"secret {arn} does not exist")
                    raise
                if secret.get("DeletedDate"):
                    return Outcome("failed", f"secret {arn} is scheduled for deletion")
                return Outcome("ok")
            ssm = self.clients.client("ssm", region=region)
            name = ssm_parameter_name(arn)
            found = ssm.describe_parameters(
                ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
            )["Parameters"]
            if found:
                return Outcome("ok")
            return Outcome("failed", f"SSM parameter {name} does not exist in {region}")

        return self._memo("secret", arn, check)

    def auto_scaling_group(self, name: str) -> Outcome:
        """The Auto Scaling group a capacity provider spec names exists."""

        def check() -> Outcome:
            group = name.split(":autoScalingGroupName/", 1)[-1]
            found = self.clients.autoscaling.describe_auto_scaling_groups(
                AutoScalingGroupNames=[group]
            )["AutoScalingGroups"]
            if found:
                return Outcome("ok")
            return Outcome("failed", f"Auto Scaling group {group} does not exist")

        return self._memo("auto-scaling-group", name, check)

    def capacity_provider(self, name: str) -> Outcome:
        """A capacity provider that no spec describes exists in ECS."""

        def check() -> Outcome:
            found = self.clients.ecs.describe_capacity_providers(capacityProviders=[name]).get(
                "capacityProviders", []
            )
            if any(p.get("status") == "ACTIVE" for p in found):
                return Outcome("ok", "exists in ECS")
            return Outcome(
                "failed",
                f"capacity provider {name} is neither in ECS nor described by a "
                "CapacityProvider spec",
            )

        return self._memo("capacity-provider", name, check)

    def network(
        self, subnets: set[str], security_groups: set[str]
    ) -> tuple[dict[str, Outcome], dict[str, Outcome]]:
        """Outcomes per subnet and per security group reference (ID or unique Name tag).

        Every reference not asked before is looked up in one pass (two EC2 calls at most).
        """
        wanted = {"subnet": subnets, "security group": security_groups}
        new = {
            what: {r for r in refs if (what, r) not in self._outcomes}
            for what, refs in wanted.items()
        }
        if new["subnet"] or new["security group"]:
            try:
                found = Observer(self.clients).resolve_network(new["subnet"], new["security group"])
            except AWS_ERRORS as error:
                for what, refs in new.items():
                    for ref in refs:
                        self._outcomes[(what, ref)] = Outcome("failed", f"cannot check: {error}")
            else:
                for (what, refs), ids in zip(new.items(), found, strict=True):
                    for ref in refs:
                        self._outcomes[(what, ref)] = _resolved(what, ref, ids.get(ref))
        subnet_outcomes, group_outcomes = (
            {ref: self._outcomes[(what, ref)] for ref in refs} for what, refs in wanted.items()
        )
        return subnet_outcomes, group_outcomes


def _resolved(what: str, reference: str, found: str | None) -> Outcome:
    if found is None:
        return Outcome("failed", f"no {what} has the ID or the (unique) Name tag {reference!r}")
    return Outcome("ok", "" if found == reference else found)


def _trusts_ecs_tasks(document: Any) -> bool:
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    for statement in [statements] if isinstance(statements, dict) else statements:
        actions = statement.get("Action", [])
        services = statement.get("Principal", {}).get("Service", [])
        if (
            statement.get("Effect") == "Allow"
            and ASSUME_ACTIONS.intersection([actions] if isinstance(actions, str) else actions)
            and ECS_TASKS in ([services] if isinstance(services, str) else services)
        ):
            return True
    return False


def ssm_parameter_name(arn: str) -> str:
    """`arn:...:parameter/ci/token` -> `/ci/token`; `...:parameter/token` -> `token`."""
    path = arn.split(":parameter/", 1)[1]
    return f"/{path}" if "/" in path else path
