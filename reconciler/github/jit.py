"""Just-in-time runner registrations, handed to their task through SSM Parameter Store.

For each task it starts, the executor asks for a JIT configuration (runner group resolved
by name, the pool's labels) and stores it as a SecureString parameter
`/ecs-reconciler/jit/<pool>/<runner>`. The task is tagged with the runner's name and id
(`ecs-reconciler:runner-id`: every stop deletes that registration first). Only the
parameter's *name* goes into the task
(environment override `RUNNER_JIT_PARAMETER`): a JIT configuration in a container override
would be readable by anyone allowed `ecs:DescribeTasks`. The runner image's entrypoint
(`deploy/runner-image/entrypoint.sh`) reads the parameter with the task role, deletes it, and
starts the runner once. The task role's policy should allow `ssm:GetParameter` and
`ssm:DeleteParameter` on `/ecs-reconciler/jit/*` only (with KMS decrypt of the key used).
With `kms_key` (run --jit-kms-key) the parameters are encrypted with that customer managed key
instead of the account's `aws/ssm` key, which every principal in the account may decrypt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..plan.state import (
    MANAGED_BY_TAG,
    MANAGED_BY_VALUE,
    RUNNER_ID_TAG,
    RUNNER_NAME_TAG,
    SCOPE_TAG,
)
from ..runners import Provision, ProvisionFailed, runner_name
from .client import GitHubClient, GitHubError, RunnerGroupNotFound, Scope
from .registry import scope_of_tag
from .scaleset.errors import ActionsServiceError, ScaleSetNotFound
from .scaleset.messages import MessageFormatError
from .scaleset.pools import ScaleSetPools

PARAMETER_PREFIX = "/ecs-reconciler/jit"
PARAMETER_ENVIRONMENT = "RUNNER_JIT_PARAMETER"


class JitProvisioner:
    """Registers a JIT runner per task and parks its configuration in SSM."""

    def __init__(
        self,
        github: GitHubClient,
        ssm: Any,
        prefix: str = PARAMETER_PREFIX,
        kms_key: str | None = None,
        scale_sets: ScaleSetPools | None = None,
    ) -> None:
        self.github = github
        self.scale_sets = scale_sets
        self.ssm = ssm
        self.prefix = prefix.rstrip("/")
        self.kms_key = kms_key
        self._groups: dict[tuple[Scope, str], int] = {}

    def prepare(self, pool: str, launch: Mapping[str, Any]) -> Provision:
        """Create the registration and its parameter; the task gets the parameter's name."""
        try:
            return self._prepare(pool, launch)
        except ScaleSetNotFound as error:
            if self.scale_sets is not None:
                self.scale_sets.forget(pool)  # deleted on GitHub: created again next time
            raise ProvisionFailed(f"runner registration failed: {error}") from error
        except (
            GitHubError,
            RunnerGroupNotFound,
            LookupError,
            ActionsServiceError,
            MessageFormatError,
            ClientError,
            BotoCoreError,
        ) as error:
            raise ProvisionFailed(f"runner registration failed: {error}") from error

    def _prepare(self, pool: str, launch: Mapping[str, Any]) -> Provision:
        scope = scope_of_tag(launch["tags"].get(SCOPE_TAG, ""))
        if scope is None:
            raise ProvisionFailed(f"pool {pool}: its launch has no usable {SCOPE_TAG} tag")
        name = runner_name(pool)
        scale_set_pool = self.scale_sets.pool(pool) if self.scale_sets is not None else None
        remove: Any
        if scale_set_pool is not None and self.scale_sets is not None:
            # a scale set's runner: its JIT config comes from the scale set (generatejitconfig)
            client = self.scale_sets.client(scale_set_pool.scope)
            scale_set = self.scale_sets.scale_set(scale_set_pool)
            jit = client.generate_jit_config(scale_set.id, name)
            runner_id, encoded = jit.runner.id, jit.encoded_jit_config
            remove = ("scale-set", scale_set_pool.scope)
        else:
            runner = launch["runner"]
            key = (scope, runner["group"])
            if key not in self._groups:
                self._groups[key] = self.github.runner_group_id(scope, runner["group"])
            config = self.github.create_jit_config(scope, name, self._groups[key], runner["labels"])
            runner_id, encoded = config.runner_id, config.encoded_jit_config
            remove = ("rest", scope)
        parameter = f"{self.prefix}/{pool}/{name}"
        try:
            self.ssm.put_parameter(
                Name=parameter,
                Value=encoded,
                Type="SecureString",
                **({"KeyId": self.kms_key} if self.kms_key else {}),
                Tags=[
                    {"Key": MANAGED_BY_TAG, "Value": MANAGED_BY_VALUE},
                    {"Key": RUNNER_NAME_TAG, "Value": name},
                ],
            )
        except Exception:
            self._remove_runner(remove, runner_id)
            raise
        return Provision(
            pool,
            name,
            tags={RUNNER_NAME_TAG: name, RUNNER_ID_TAG: str(runner_id)},
            environment={PARAMETER_ENVIRONMENT: parameter},
            handles={
                "scope": scope,
                "runner_id": runner_id,
                "parameter": parameter,
                "remove": remove,
            },
        )

    def _remove_runner(self, remove: Any, runner_id: int) -> None:
        kind, scope = remove
        if kind == "scale-set" and self.scale_sets is not None:
            self.scale_sets.client(scope).remove_runner(runner_id)
        else:
            self.github.delete_runner(scope, runner_id)

    def abandon(self, provision: Provision) -> None:
        """The task did not start: delete the parameter and the registration."""
        handles = provision.handles
        with contextlib.suppress(self.ssm.exceptions.ParameterNotFound):
            self.ssm.delete_parameter(Name=handles["parameter"])
        self._remove_runner(handles.get("remove", ("rest", handles["scope"])), handles["runner_id"])
