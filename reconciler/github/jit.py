"""Just-in-time runner registrations, handed to their task through SSM Parameter Store.

Runner tasks are started in batches (RunTask `count` up to 10, every task identical) and
bound to their runner only once ECS has placed them: for each placed task, the executor asks
for a JIT configuration (runner group resolved by name, the pool's labels) named after the
task (`<pool>-<task id>`) and stores it as a SecureString parameter
`/ecs-reconciler/jit/<pool>/<task id>`; the task is then tagged with the runner's name and
id (`ecs-reconciler:runner-id`: every stop deletes that registration first). A task ECS did
not place costs no GitHub call and leaves nothing to clean up.

Only the parameter's *prefix* goes into the task (environment override
`RUNNER_JIT_PARAMETER_PREFIX`, the same for every task of a batch): a JIT configuration in a
container override would be readable by anyone allowed `ecs:DescribeTasks`. The runner
image's entrypoint (`deploy/runner-image/entrypoint.sh`) reads its task ARN from the ECS
task metadata endpoint, waits (bounded, `RUNNER_JIT_WAIT_SECONDS`) for
`<prefix>/<task id>`, reads it with the task role, deletes it, and starts the runner once.
The task role's policy should allow `ssm:GetParameter` and `ssm:DeleteParameter` on
`/ecs-reconciler/jit/*` only (with KMS decrypt of the key used). With `kms_key` (run
--jit-kms-key) the parameters are encrypted with that customer managed key instead of the
account's `aws/ssm` key, which every principal in the account may decrypt.

`bind` runs in the executor's worker threads: the runner-group cache is guarded by a lock.
"""

from __future__ import annotations

import contextlib
import threading
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
from ..runners import Provision, ProvisionFailed, runner_name, task_id_of
from .client import GitHubClient, GitHubError, RunnerGroupNotFound, Scope
from .registry import scope_of_tag
from .scaleset.errors import ActionsServiceError, ScaleSetNotFound
from .scaleset.messages import MessageFormatError
from .scaleset.pools import ScaleSetPools

PARAMETER_PREFIX = "/ecs-reconciler/jit"
PARAMETER_PREFIX_ENVIRONMENT = "RUNNER_JIT_PARAMETER_PREFIX"
# what tasks started by earlier versions carry: their parameter's whole name
PARAMETER_ENVIRONMENT = "RUNNER_JIT_PARAMETER"


def parameter_name(prefix: str, pool: str, task_arn: str) -> str:
    """The SSM parameter holding the JIT configuration of the runner of `task_arn`."""
    return f"{prefix.rstrip('/')}/{pool}/{task_id_of(task_arn)}"


_REGISTRATION_ERRORS = (
    GitHubError,
    RunnerGroupNotFound,
    LookupError,
    ActionsServiceError,
    MessageFormatError,
    ClientError,
    BotoCoreError,
)


class JitProvisioner:
    """Registers a JIT runner per placed task and parks its configuration in SSM."""

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
        self._lock = threading.Lock()

    def environment(self, pool: str, launch: Mapping[str, Any]) -> dict[str, str]:
        """Where every task of `pool` finds its parameter: the prefix its task id completes.

        Checks first what would fail every binding (the scope tag; for a REST pool its
        runner group: one GET, cached), so such a pool starts no task at all."""
        scope = self._scope(pool, launch)
        if self._scale_set_pool(pool) is None:
            try:
                self._group_id(scope, launch["runner"]["group"])
            except _REGISTRATION_ERRORS as error:
                raise ProvisionFailed(f"runner registration failed: {error}") from error
        return {PARAMETER_PREFIX_ENVIRONMENT: f"{self.prefix}/{pool}"}

    def bind(self, pool: str, launch: Mapping[str, Any], task_arn: str) -> Provision:
        """Create the registration of placed task `task_arn` and its parameter."""
        try:
            return self._bind(pool, launch, task_arn)
        except ScaleSetNotFound as error:
            if self.scale_sets is not None:
                self.scale_sets.forget(pool)  # deleted on GitHub: created again next time
            raise ProvisionFailed(f"runner registration failed: {error}") from error
        except _REGISTRATION_ERRORS as error:
            raise ProvisionFailed(f"runner registration failed: {error}") from error

    @staticmethod
    def _scope(pool: str, launch: Mapping[str, Any]) -> Scope:
        scope = scope_of_tag(launch["tags"].get(SCOPE_TAG, ""))
        if scope is None:
            raise ProvisionFailed(f"pool {pool}: its launch has no usable {SCOPE_TAG} tag")
        return scope

    def _scale_set_pool(self, pool: str) -> Any:
        return self.scale_sets.pool(pool) if self.scale_sets is not None else None

    def _group_id(self, scope: Scope, group: str) -> int:
        with self._lock:
            known = self._groups.get((scope, group))
        if known is None:  # two workers may both look it up once: harmless
            known = self.github.runner_group_id(scope, group)
            with self._lock:
                self._groups[(scope, group)] = known
        return known

    def _bind(self, pool: str, launch: Mapping[str, Any], task_arn: str) -> Provision:
        scope = self._scope(pool, launch)
        name = runner_name(pool, task_arn)
        scale_set_pool = self._scale_set_pool(pool)
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
            group_id = self._group_id(scope, runner["group"])
            config = self.github.create_jit_config(scope, name, group_id, runner["labels"])
            runner_id, encoded = config.runner_id, config.encoded_jit_config
            remove = ("rest", scope)
        parameter = parameter_name(self.prefix, pool, task_arn)
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
        """The task could not be bound after all: delete the parameter and the registration."""
        handles = provision.handles
        with contextlib.suppress(self.ssm.exceptions.ParameterNotFound):
            self.ssm.delete_parameter(Name=handles["parameter"])
        self._remove_runner(handles.get("remove", ("rest", handles["scope"])), handles["runner_id"])
