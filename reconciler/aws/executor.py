"""Executing a `Plan` against AWS, action by action, in the plan's order.

The executor does what the plan says and nothing else. It isolates failures: an action that
fails skips the rest of its pool (and the pools that depend on a failed capacity provider or
cluster association), while other pools proceed. Before stopping a runner it asks the runner
state source once more, so a runner that took a job since the plan was made keeps running.

Each action class (`plan.actions`) has one handler, registered with `@handles`; every
action passes one wrapper, `Executor._execute` -> `_issuing`, which is where fencing and
expectations are applied (the re-binding of unbound tasks passes `_issuing` too).

Correct when things go wrong:
- Fencing: with a lease `fence`, every handler runs inside `fencing.fenced` (and the work it
  hands to other threads inside `Executor.fenced`), so every mutating AWS or GitHub request
  made on its behalf (here, in the provisioner, in the runner state source) is checked
  against the lease first; `LeaseLost` ends the apply at once, the rest is skipped. The
  lease epoch is tagged on every task started and on every Auto Scaling group resized.
- Expectations: a handler notes every start and stop it issues (`Issued`); the wrapper
  records them (`plan.expectations`) as of when they were issued, however the handler ends,
  so the next cycles count them until the listing shows them. RunTask's client token is
  deterministic per (pool, revision, start slot, epoch). After a RunTask that failed
  without a clear answer, the task is looked up by its runner name before anything is given
  back; if it is not found, its registration is kept (the janitor removes it if no task
  ever carries it).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from .. import fencing
from ..fencing import Fence, LeaseLost
from ..plan.actions import (
    Action,
    AssociateCapacityProviders,
    CreateCapacityProvider,
    DeleteCapacityProvider,
    DeregisterTaskDefinition,
    Plan,
    RegisterTaskDefinition,
    ReplaceCapacityProvider,
    ReplaceRunners,
    RunRunners,
    SetDesiredCapacity,
    StopRunners,
    TerminateInstances,
    UpdateCapacityProvider,
    UpdateTaskDefinition,
)
from ..plan.desired import RUNNER_CONTAINER
from ..plan.expectations import Expectations, start_token
from ..plan.state import (
    LEASE_EPOCH_TAG,
    MANAGED_BY_TAG,
    MANAGED_BY_VALUE,
    RUNNER_ID_TAG,
    RUNNER_NAME_TAG,
    SCOPE_TAG,
    START_TOKEN_TAG,
    STARTED_BY,
    DesiredPool,
    ObservedState,
)
from ..runners import (
    NamingProvisioner,
    ProvisionFailed,
    RunnerProvisioner,
    RunnerStateSource,
    Unbound,
    runner_name,
)
from .clients import AwsClients
from .observe import batches, tag_dict

log = logging.getLogger(__name__)
AWS_ERRORS = (ClientError, BotoCoreError)
RUN_TASK_MAX_COUNT = 10  # RunTask's `count`: "You can specify up to 10 tasks for each call"
DEFAULT_BIND_WORKERS = 8  # GitHub and SSM calls in flight at once while binding runners
# RunTask calls of one run action in flight at once: a 400-runner burst is 40 batches, and
# each waits for its answer (ECS's RunTask rate: a burst of 100, 40 a second refilled, per
# account and Region: "Amazon ECS API request throttling", Amazon ECS API Reference)
RUN_TASK_CONCURRENCY = 4
NOT_SENT = "not sent: an earlier batch was not filled"
T = TypeVar("T")


class ActionFailed(Exception):
    """An action could not be completed; the message says what happened."""


@dataclass
class ApplyResult:
    """What happened to each action."""

    done: list[tuple[Action, str]] = field(default_factory=list)
    failed: list[tuple[Action, str]] = field(default_factory=list)
    skipped: list[tuple[Action, str]] = field(default_factory=list)
    lease_lost: str = ""  # why the apply stopped early: the lease was lost

    @property
    def ok(self) -> bool:
        """True when nothing failed or was skipped."""
        return not self.failed and not self.skipped


def _environment_override(environment: dict[str, str]) -> dict[str, Any]:
    if not environment:
        return {}
    variables = [{"name": k, "value": v} for k, v in sorted(environment.items())]
    return {"containerOverrides": [{"name": RUNNER_CONTAINER, "environment": variables}]}


def _aws_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


def revision_arns(observed: ObservedState) -> dict[str, str]:
    """ARN of our revision for each spec hash (the latest when several match)."""
    return {
        revision.tagged_hash: revision.arn
        for revisions in observed.task_definitions.values()
        for revision in sorted(revisions, key=lambda r: r.revision)
        if revision.owned and revision.tagged_hash == revision.content_hash
    }


def placement(launch: dict[str, Any]) -> dict[str, Any]:
    """RunTask's capacity provider and awsvpc network for a planned launch."""
    network = launch["network"]
    return {
        "capacityProviderStrategy": [{"capacityProvider": launch["capacityProvider"], "weight": 1}],
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": network["subnets"],
                "securityGroups": network["securityGroups"],
            }
        },
    }


@dataclass(frozen=True)
class _IssuedStart:
    pool: str
    cluster: str
    token: str
    task_arn: str
    at: float


class Issued:
    """The starts and stops one action issued, noted when issued; `Executor._issuing`
    records them as expectations (`plan.expectations`) in one place when the action ends.
    Used only from the applying thread."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._starts: list[_IssuedStart] = []
        self._stops: list[tuple[str, str, float]] = []  # (pool, task ARN, when)

    def starts(self, count: int, pool: str, cluster: str, token: str, task_arn: str = "") -> None:
        """`count` tasks of the RunTask batch `token` (one known `task_arn`, or unknown)."""
        self._starts += [_IssuedStart(pool, cluster, token, task_arn, self.clock())] * count

    def stop(self, pool: str, task_arn: str) -> None:
        """A StopTask of `task_arn`."""
        self._stops.append((pool, task_arn, self.clock()))

    def record(self, expectations: Expectations) -> None:
        """Record every start and stop noted, as of when it was issued."""
        for start in self._starts:
            expectations.expect_start(
                start.pool, "", start.task_arn, start.cluster, start.token, at=start.at
            )
        for pool, task_arn, at in self._stops:
            expectations.expect_stop(pool, task_arn, at=at)
        self._starts, self._stops = [], []


Handler = TypeVar("Handler", bound=Callable[..., str])
# action class -> the Executor method that performs it (`handles`)
HANDLERS: dict[type[Action], Callable[[Executor, Any, Issued], str]] = {}


def handles(kind: type[Action]) -> Callable[[Handler], Handler]:
    """Register the decorated Executor method as the handler of actions of class `kind`."""

    def register(method: Handler) -> Handler:
        if kind in HANDLERS:
            raise TypeError(f"{kind.__name__} has two handlers")
        HANDLERS[kind] = method
        return method

    return register


class Executor:
    """Applies plans with a set of AWS clients and a runner-state source."""

    def __init__(
        self,
        clients: AwsClients,
        observed: ObservedState,
        runner_states: RunnerStateSource,
        progress: Callable[[str], None] = lambda _: None,
        provisioner: RunnerProvisioner | None = None,
        fence: Fence | None = None,
        expectations: Expectations | None = None,
        bind_workers: int = DEFAULT_BIND_WORKERS,
        bindings: Bindings | None = None,
    ) -> None:
        """`fence`: the lease (None: a single replica, nothing to fence). `expectations`:
        the controller's, kept across cycles (default: this apply's own). `bind_workers`:
        runners bound to their placed tasks at once. `bindings`: the controller's, kept
        across cycles: runners are bound in the background and the apply does not wait for
        them (default: each run action binds its tasks and waits)."""
        self.bindings = bindings
        if bind_workers < 1:
            raise ValueError(f"bind_workers must be at least 1, not {bind_workers}")
        self.bind_workers = bind_workers
        self.clients = clients
        self.observed = observed
        self.runner_states = runner_states
        self.provisioner = provisioner or NamingProvisioner()
        self.progress = progress
        self.fence = fence
        self.epoch = fence.epoch if fence is not None else 0
        self.expectations = expectations if expectations is not None else Expectations()
        self._revisions = revision_arns(observed)
        self._tasks = {task.arn: task for task in observed.tasks}

    def apply(
        self,
        plan: Plan,
        refused: dict[Action, str] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ApplyResult:
        """Execute every action of `plan` except the refused ones; never raises for AWS errors.

        `should_stop` is asked before each action: when it turns true (SIGTERM), the action
        in flight has finished and the rest are skipped, so nothing is left half-applied.
        When the fence refuses a call (the lease is lost), the action in flight fails there
        and every later one is skipped.
        """
        return self._apply(plan, refused or {}, should_stop)

    def _apply(
        self, plan: Plan, refused: dict[Action, str], should_stop: Callable[[], bool]
    ) -> ApplyResult:
        result = ApplyResult()
        failed_pools: set[str] = set()
        failed_providers: set[str] = set()
        failed_clusters: set[str] = set()
        for action in plan.actions:
            if result.lease_lost:
                self._record(result.skipped, action, "skipped: the lease was lost")
                continue
            if should_stop():
                self._record(result.skipped, action, "skipped: shutting down")
                continue
            if action in refused:
                self._record(result.skipped, action, f"refused: {refused[action]}")
                continue
            blocker = self._blocked_by(action, failed_pools, failed_providers, failed_clusters)
            if blocker:
                self._record(result.skipped, action, blocker)
                continue
            try:
                outcome = self._execute(action)
            except LeaseLost as error:
                log.warning("apply stopped: %s", error)
                result.lease_lost = str(error)
                self._record(result.failed, action, f"lease lost: {error}")
                continue
            except (ActionFailed, *AWS_ERRORS) as error:
                self._record(result.failed, action, str(error))
                if action.pool:
                    failed_pools.add(action.pool)
                if action.resource_type == "capacity_provider":
                    failed_providers.add(action.name)
                if action.resource_type == "cluster_capacity_providers":
                    failed_clusters.add(action.name)
                continue
            self._record(result.done, action, outcome)
        return result

    def _record(self, bucket: list[tuple[Action, str]], action: Action, message: str) -> None:
        bucket.append((action, message))
        self.progress(f"{action.address}: {message}")

    @staticmethod
    def _blocked_by(
        action: Action, pools: set[str], providers: set[str], clusters: set[str]
    ) -> str:
        if action.pool and action.pool in pools:
            return f"skipped: an earlier action of pool {action.pool} failed"
        launch = action.after if isinstance(action.after, dict) else {}
        if launch.get("capacityProvider") in providers:
            return f"skipped: capacity provider {launch['capacityProvider']} failed"
        if action.resource_type == "runner_tasks" and action.cluster in clusters:
            return f"skipped: the capacity providers of cluster {action.cluster} failed"
        return ""

    def _execute(self, action: Action) -> str:
        """The one place every action passes: its handler (`HANDLERS`, by the action's class)
        runs inside the lease fence, and the starts and stops it issued are recorded as
        expectations however it ends (done, failed, or the lease lost)."""
        handler = HANDLERS.get(type(action))
        if handler is None:
            raise ActionFailed(f"no handler for {type(action).__name__} ({action.address})")
        with self._issuing() as issued:
            return handler(self, action, issued)

    @contextlib.contextmanager
    def _issuing(self) -> Iterator[Issued]:
        """Fence every mutating call of the block (`fencing.fenced`) and record the starts
        and stops it issued as expectations when it ends, whatever way it ends."""
        issued = Issued(self.expectations.clock)
        try:
            with fencing.fenced(self.fence):
                yield issued
        finally:
            issued.record(self.expectations)

    # ----------------------------------------------------------- capacity providers

    @handles(CreateCapacityProvider)
    def _create_capacity_provider(
        self, action: CreateCapacityProvider | ReplaceCapacityProvider, _: Issued
    ) -> str:
        after = action.after
        self.clients.ecs.create_capacity_provider(
            name=action.name,
            autoScalingGroupProvider={
                "autoScalingGroupArn": after["autoScalingGroupArn"],
                "managedScaling": after["managedScaling"],
                "managedTerminationProtection": after["managedTerminationProtection"],
            },
            tags=_aws_tags(self._provider_tags(after)),
        )
        return "created"

    @staticmethod
    def _provider_tags(document: dict[str, Any]) -> dict[str, str]:
        return {**document.get("tags", {}), MANAGED_BY_TAG: MANAGED_BY_VALUE}

    @handles(UpdateCapacityProvider)
    def _update_capacity_provider(self, action: UpdateCapacityProvider, _: Issued) -> str:
        before, after = action.before, action.after
        if (before["managedScaling"], before["managedTerminationProtection"]) != (
            after["managedScaling"],
            after["managedTerminationProtection"],
        ):
            self.clients.ecs.update_capacity_provider(
                name=action.name,
                autoScalingGroupProvider={
                    "managedScaling": after["managedScaling"],
                    "managedTerminationProtection": after["managedTerminationProtection"],
                },
            )
        arn = self.observed.capacity_providers[action.name].arn
        self._retag(arn, before.get("tags", {}), after.get("tags", {}))
        return "updated"

    def _retag(self, arn: str, old_tags: dict[str, str], new_tags: dict[str, str]) -> None:
        removed = sorted(set(old_tags) - set(new_tags))
        if removed:
            self.clients.ecs.untag_resource(resourceArn=arn, tagKeys=removed)
        changed = {k: v for k, v in new_tags.items() if old_tags.get(k) != v}
        if changed:
            self.clients.ecs.tag_resource(resourceArn=arn, tags=_aws_tags(changed))

    @handles(ReplaceCapacityProvider)
    def _replace_capacity_provider(self, action: ReplaceCapacityProvider, issued: Issued) -> str:
        cluster = self.observed.clusters.get(action.cluster)
        associated = list(cluster.capacity_providers) if cluster else []
        if action.name in associated:
            self._put_association(action.cluster, [n for n in associated if n != action.name])
        self.clients.ecs.delete_capacity_provider(capacityProvider=action.name)
        self._create_capacity_provider(action, issued)
        if action.name in associated:
            self._put_association(action.cluster, associated)
        return "replaced (detached, deleted, created, attached again)"

    @handles(DeleteCapacityProvider)
    def _delete_capacity_provider(self, action: DeleteCapacityProvider, _: Issued) -> str:
        self.clients.ecs.delete_capacity_provider(capacityProvider=action.name)
        return "deleted"

    @handles(AssociateCapacityProviders)
    def _associate(self, action: AssociateCapacityProviders, _: Issued) -> str:
        self._put_association(action.name, action.after["capacityProviders"])
        return f"capacity providers now {', '.join(action.after['capacityProviders'])}"

    def _put_association(self, cluster_name: str, providers: list[str]) -> None:
        cluster = self.observed.clusters.get(cluster_name)
        strategy = [
            item
            for item in (cluster.default_strategy if cluster else ())
            if item.get("capacityProvider") in providers
        ]
        self.clients.ecs.put_cluster_capacity_providers(
            cluster=cluster_name,
            capacityProviders=providers,
            defaultCapacityProviderStrategy=strategy,
        )

    # ----------------------------------------------------------- instances (autoscaler)

    @handles(SetDesiredCapacity)
    def _set_desired_capacity(self, action: SetDesiredCapacity, _: Issued) -> str:
        count = action.after["desiredCapacity"]
        autoscaling = self.clients.autoscaling
        autoscaling.set_desired_capacity(
            AutoScalingGroupName=action.name, DesiredCapacity=count, HonorCooldown=False
        )
        autoscaling.create_or_update_tags(  # which term set this absolute value
            Tags=[
                {
                    "ResourceId": action.name,
                    "ResourceType": "auto-scaling-group",
                    "Key": LEASE_EPOCH_TAG,
                    "Value": str(self.epoch),
                    "PropagateAtLaunch": False,
                }
            ]
        )
        before = action.before["desiredCapacity"]
        return f"desired capacity {before} -> {count} (epoch {self.epoch})"

    @handles(TerminateInstances)
    def _drain_and_terminate(self, action: TerminateInstances, _: Issued) -> str:
        """DRAINING first (no task can land any more), then terminate exactly the instances
        still running nothing; one that got a task in between goes back to ACTIVE."""
        ecs, cluster = self.clients.ecs, action.cluster
        by_arn = {i["containerInstanceArn"]: i["instanceId"] for i in action.after["instances"]}
        ecs.update_container_instances_state(
            cluster=cluster, containerInstances=list(by_arn), status="DRAINING"
        )
        described = ecs.describe_container_instances(
            cluster=cluster, containerInstances=list(by_arn)
        )["containerInstances"]
        empty = [
            i["containerInstanceArn"]
            for i in described
            if not i.get("runningTasksCount", 0) + i.get("pendingTasksCount", 0)
        ]
        kept = sorted(set(by_arn) - set(empty))
        if kept:
            ecs.update_container_instances_state(
                cluster=cluster, containerInstances=kept, status="ACTIVE"
            )
        for arn in empty:
            self.clients.autoscaling.terminate_instance_in_auto_scaling_group(
                InstanceId=by_arn[arn], ShouldDecrementDesiredCapacity=True
            )
        suffix = f"; {len(kept)} kept (a task landed on it)" if kept else ""
        return f"terminated {len(empty)} empty instance(s){suffix}"

    # ----------------------------------------------------------- task definitions

    @handles(RegisterTaskDefinition)
    def _register(self, action: RegisterTaskDefinition | UpdateTaskDefinition, _: Issued) -> str:
        definition = {k: v for k, v in action.after.items() if k != "tags"}
        response = self.clients.ecs.register_task_definition(
            **definition, tags=_aws_tags(action.after["tags"])
        )
        arn = response["taskDefinition"]["taskDefinitionArn"]
        self._revisions[action.spec_hash] = arn
        return f"registered {arn.rsplit('/', 1)[-1]}"

    @handles(UpdateTaskDefinition)
    def _update_task_definition(self, action: UpdateTaskDefinition, issued: Issued) -> str:
        """A new revision for a content change; tags of an existing one are changed in place."""
        if "containerDefinitions" in action.after:
            return self._register(action, issued)
        arn = action.after["taskDefinitionArn"]
        self._retag(arn, action.before["tags"], action.after["tags"])
        return f"retagged {arn.rsplit('/', 1)[-1]}"

    @handles(DeregisterTaskDefinition)
    def _deregister(self, action: DeregisterTaskDefinition, _: Issued) -> str:
        arn = action.before["taskDefinitionArn"]
        self.clients.ecs.deregister_task_definition(taskDefinition=arn)
        return f"deregistered {arn.rsplit('/', 1)[-1]}"

    # ----------------------------------------------------------- runner tasks

    @handles(RunRunners)
    def _run(self, action: RunRunners | ReplaceRunners, issued: Issued) -> str:
        """Start `count` runners in batches of up to 10 identical tasks a RunTask, and bind
        each task ECS placed to its own runner (registration, parameter, tags) on the worker
        pool while the next batch is requested. A shortfall stops the batches; tasks not
        placed cost nothing (no registration was made for them)."""
        arn = self._revisions.get(action.spec_hash)
        if arn is None:
            raise ActionFailed(f"no registered revision with spec hash {action.spec_hash}")
        launch = action.after
        pool = action.pool or action.name
        try:
            environment = self.provisioner.environment(pool, launch)
        except ProvisionFailed as error:
            raise ActionFailed(f"started 0 of {action.count} runner(s): {error}") from error
        placed, shortfall, unclear, refused = 0, "", "", ""
        with (
            Binder(self, pool, launch, action.cluster, issued) as binder,
            ThreadPoolExecutor(RUN_TASK_CONCURRENCY, "run-task") as requests,
        ):
            batches: list[tuple[int, str, Future[tuple[list[str], str]]]] = []
            full = threading.Event()  # a batch was not filled: the others are not sent
            for first in range(0, action.count, RUN_TASK_MAX_COUNT):
                count = min(RUN_TASK_MAX_COUNT, action.count - first)
                slot = self.expectations.next_slot(pool, self.epoch, count)
                token = start_token(
                    pool, arn, self.epoch, slot, self.expectations.incarnation, count
                )
                batch = self.fenced(
                    self._run_batch_unless, full, action, arn, environment, count, token
                )
                batches.append((count, token, requests.submit(batch)))
            for count, token, future in batches:  # in order: a shortfall stops the rest
                if (shortfall or unclear or refused) and future.cancel():
                    continue  # not sent (those sent already are settled: they may have placed)
                try:
                    tasks, problem = future.result()
                    if problem == NOT_SENT:
                        continue
                except LeaseLost:
                    # nothing more may be sent: these starts may have happened; the next
                    # leader sees them listed (unbound: it binds them, or they give up)
                    for batch_in_flight in batches:
                        batch_in_flight[2].cancel()
                    issued.starts(count, pool, action.cluster, token)
                    raise
                except AWS_ERRORS as error:  # refused (4xx): surely not started
                    refused = refused or str(error)
                    continue
                if problem.startswith("unclear:") and not tasks:
                    # counted as starting until listed or expired
                    issued.starts(count, pool, action.cluster, token)
                for task_arn in tasks:
                    issued.starts(1, pool, action.cluster, token, task_arn)
                binder.submit(tasks)
                placed += len(tasks)
                if problem.startswith("unclear:"):
                    unclear = unclear or problem.removeprefix("unclear:")
                elif (problem or len(tasks) < count) and not shortfall:
                    shortfall = problem or "ECS placed fewer tasks than asked"
            binder.wait()  # LeaseLost from a worker ends the apply here
        bound = binder.summary()
        if refused:
            raise ActionFailed(f"started {placed} of {action.count} runner(s){bound}; {refused}")
        if unclear:
            raise ActionFailed(f"started {placed} of {action.count} runner(s){bound}; {unclear}")
        if shortfall:
            if launch.get("capacityPending"):  # the plan is adding the instances for these
                return (
                    f"started {placed} of {action.count} runner(s){bound}; "
                    f"{action.count - placed} wait for the instances being added"
                )
            raise ActionFailed(
                f"started {placed} of {action.count} runner(s){bound}; ECS placed no more "
                f"({shortfall})"
            )
        if binder.failed:
            raise ActionFailed(f"started {placed} of {action.count} runner(s){bound}")
        return f"started {action.count} runner(s){bound}"

    def fenced(self, work: Callable[..., T], *args: Any) -> Callable[[], T]:
        """`work(*args)` for another thread (a RunTask request, a runner's binding), inside
        this executor's fence, as `_issuing` puts the applying thread: each of its mutating
        calls passes the same choke point (`fencing.check`)."""

        def fenced_work() -> T:
            with fencing.fenced(self.fence):
                return work(*args)

        return fenced_work

    def _run_batch_unless(
        self,
        full: threading.Event,
        action: Action,
        arn: str,
        environment: dict[str, str],
        count: int,
        token: str,
    ) -> tuple[list[str], str]:
        """`_run_batch`, unless an earlier batch was not filled (`full` set; then nothing is
        sent: ([], NOT_SENT)); sets `full` when this one is not, so that no other request
        thread sends its batch after a shortfall (at most those in flight meanwhile)."""
        if full.is_set():
            return [], NOT_SENT
        try:
            tasks, problem = self._run_batch(action, arn, environment, count, token)
        except BaseException:  # refused, or the lease lost: send no more either
            full.set()
            raise
        if problem or len(tasks) < count:
            full.set()
        return tasks, problem

    def _run_batch(
        self, action: Action, arn: str, environment: dict[str, str], count: int, token: str
    ) -> tuple[list[str], str]:
        """One RunTask of `count` identical tasks: the task ARNs ECS placed, and why not all
        ("" when all were; "unclear: ..." when RunTask failed without a clear answer). Runs
        on a request thread: touches no expectations."""
        launch = action.after
        try:
            response = self.clients.ecs.run_task(
                cluster=action.cluster,
                taskDefinition=arn,
                count=count,
                **placement(launch),
                overrides=_environment_override(environment),
                startedBy=STARTED_BY,
                tags=_aws_tags(
                    {**launch["tags"], LEASE_EPOCH_TAG: str(self.epoch), START_TOKEN_TAG: token}
                ),
                enableECSManagedTags=True,
                clientToken=token,
            )
        except ClientError as error:
            if _rejected(error):
                raise  # surely not started; nothing was created for it
            return self._unclear_batch(action, count, token, error)
        except BotoCoreError as error:
            return self._unclear_batch(action, count, token, error)
        tasks = [task["taskArn"] for task in response.get("tasks", [])]
        reasons = sorted({f.get("reason", "unknown") for f in response.get("failures", [])})
        return tasks, ", ".join(reasons) if len(tasks) < count else ""

    def _unclear_batch(
        self, action: Action, count: int, token: str, error: Exception
    ) -> tuple[list[str], str]:
        """RunTask failed without saying whether its tasks exist: look them up by the
        batch's token tag. Those found started (and are bound); when none is listed (ECS
        lists new tasks late), the batch counts as `count` starts of that token until its
        tasks are listed or the expectation expires (recorded by `_run`)."""
        found = self._find_tasks(action.cluster, token)
        if found:
            log.warning("RunTask failed (%s), but %d task(s) of its batch exist", error, len(found))
            return found, ""
        return [], (
            f"unclear:RunTask of {count} failed without a clear answer and no task of its "
            f"batch is listed ({error}): counted as starting until listed or expired"
        )

    def _find_tasks(self, cluster: str, token: str) -> list[str]:
        """Our tasks in `cluster` started by the batch of `token` (none when unreadable)."""
        ecs, found = self.clients.ecs, []
        try:
            pages = ecs.get_paginator("list_tasks").paginate(cluster=cluster, startedBy=STARTED_BY)
            arns = [arn for page in pages for arn in page.get("taskArns", [])]
            for chunk in batches(arns, 100):
                described = ecs.describe_tasks(cluster=cluster, tasks=list(chunk), include=["TAGS"])
                found += [
                    str(task["taskArn"])
                    for task in described.get("tasks", [])
                    if tag_dict(task.get("tags")).get(START_TOKEN_TAG) == token
                ]
        except AWS_ERRORS as error:
            log.warning("could not look up the tasks of batch %s: %s", token, error)
        return found

    def _bind(self, pool: str, launch: dict[str, Any], cluster: str, task_arn: str) -> str:
        """In a worker: bind one placed task to its runner, and tag it so. A task that cannot
        be bound is stopped at once (its runner would only wait and exit); returns "" when
        bound, else why not."""
        try:
            provision = self.provisioner.bind(pool, launch, task_arn)
        except ProvisionFailed as error:
            self._stop_unbound(cluster, task_arn, str(error))
            return str(error)
        try:
            self.clients.ecs.tag_resource(resourceArn=task_arn, tags=_aws_tags(provision.tags))
        except AWS_ERRORS as error:
            self.provisioner.abandon(provision)
            self._stop_unbound(cluster, task_arn, f"tagging failed: {error}")
            return f"task {task_arn.rsplit('/', 1)[-1]} not tagged: {error}"
        return ""

    def _stop_unbound(self, cluster: str, task_arn: str, why: str) -> None:
        self.clients.ecs.stop_task(
            cluster=cluster, task=task_arn, reason=f"ecs-reconciler: not bound: {why}"[:255]
        )

    def rebind(self, unbound: Unbound, pools: Mapping[str, DesiredPool]) -> list[str]:
        """Tasks that lost their binding (`runners.unbound_tasks`): a task whose runner is
        registered after all (its binding was cut off before the tag) is tagged with it; the
        others are bound now (`unbound.bind`, on the worker pool) or stopped (`unbound.stop`:
        too old, their runner is giving up). Fenced like `apply`: `LeaseLost` ends it at once.
        Returns one line per task."""
        with self._issuing() as issued:
            return self._rebind(unbound, pools, issued)

    def _rebind(
        self, unbound: Unbound, pools: Mapping[str, DesiredPool], issued: Issued
    ) -> list[str]:
        done: list[str] = []
        to_bind: dict[tuple[str, str, str], list[str]] = {}
        for task in (*unbound.bind, *unbound.stop):
            name = runner_name(task.pool, task.arn)
            runner_id = self.runner_states.registered(task, name)
            try:
                if runner_id is not None:
                    tags = {RUNNER_NAME_TAG: name, RUNNER_ID_TAG: str(runner_id)}
                    self.clients.ecs.tag_resource(resourceArn=task.arn, tags=_aws_tags(tags))
                    done.append(f"task {task.task_id}: its runner {name} was registered; tagged")
                elif task in unbound.bind:
                    group = (task.pool, task.cluster, task.tags.get(SCOPE_TAG, ""))
                    to_bind.setdefault(group, []).append(task.arn)
                else:
                    self._stop_unbound(task.cluster, task.arn, "too old to bind")
                    issued.stop(task.pool, task.arn)
                    done.append(f"task {task.task_id}: never bound and too old to bind; stopped")
            except AWS_ERRORS as error:  # the next cycle sees it unbound again
                done.append(f"task {task.task_id}: not re-bound: {error}")
        for (pool, cluster, scope), arns in sorted(to_bind.items()):
            desired = pools[pool]
            launch = {
                "tags": {SCOPE_TAG: scope},
                "runner": {"labels": list(desired.labels), "group": desired.runner_group},
            }
            with Binder(self, pool, launch, cluster, issued) as binder:
                binder.submit(arns)
                binder.wait()
            done.append(f"pool {pool}: binding {len(arns)} unbound task(s){binder.summary()}")
        for line in done:
            log.info("re-binding: %s", line)
        return done

    @handles(StopRunners)
    def _stop(self, action: StopRunners | ReplaceRunners, issued: Issued) -> str:
        stopped, kept = 0, 0
        pool = action.pool or action.name
        for arn in action.task_arns:
            task = self._tasks[arn]  # every task a plan stops was observed
            if not self.runner_states.confirm_stoppable(task):
                kept += 1
                continue
            self.clients.ecs.stop_task(
                cluster=task.cluster,
                task=arn,
                reason=f"ecs-reconciler: {action.reason}"[:255],
            )
            issued.stop(pool, arn)
            stopped += 1
        suffix = f"; {kept} kept (no longer idle)" if kept else ""
        return f"stopped {stopped} runner(s){suffix}"

    @handles(ReplaceRunners)
    def _replace_tasks(self, action: ReplaceRunners, issued: Issued) -> str:
        started = self._run(action, issued)
        stopped = self._stop(action, issued)
        return f"{started}, {stopped}"


class Binder:
    """Binds the tasks of one run action to their runners on a small worker pool, so the
    GitHub and SSM calls of many runners are in flight at once (at most `bind_workers`;
    GitHub's client pauses every worker when GitHub asks it to wait).

    Every worker runs inside the apply's fence, so each of its mutating calls passes the
    same choke point as the apply's own (`fencing.check`); a `LeaseLost` in any worker
    cancels the bindings not begun and ends the apply from `wait`. The stops of failed
    bindings are reported to the action's `Issued` only from the applying thread (`wait`)."""

    def __init__(
        self,
        executor: Executor,
        pool: str,
        launch: dict[str, Any],
        cluster: str,
        issued: Issued,
    ):
        self.executor, self.pool, self.launch, self.cluster = executor, pool, launch, cluster
        self.issued = issued  # the stops of failed bindings
        self.shared = executor.bindings  # the controller's: binds in the background
        self._workers = (
            ThreadPoolExecutor(max_workers=executor.bind_workers, thread_name_prefix="bind-runner")
            if self.shared is None
            else None
        )
        self._futures: dict[Future[str], str] = {}
        self.bound = 0
        self.failed: list[str] = []

    def __enter__(self) -> Binder:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._workers is not None:
            self._workers.shutdown(wait=True, cancel_futures=True)

    def submit(self, task_arns: list[str]) -> None:
        """Bind these placed tasks (in the background)."""
        if self.shared is not None:
            self.shared.submit(self.executor, self.pool, self.launch, self.cluster, task_arns)
            return
        assert self._workers is not None
        for task_arn in task_arns:
            work = self.executor.fenced(
                self.executor._bind, self.pool, self.launch, self.cluster, task_arn
            )
            self._futures[self._workers.submit(work)] = task_arn

    def wait(self) -> None:
        """Wait for every binding; raise `LeaseLost` if a worker's call was refused. (With
        the controller's shared bindings: nothing to wait for, `Bindings.collect` settles.)"""
        lost: LeaseLost | None = None
        for future in as_completed(self._futures):
            if future.cancelled():
                continue
            settled = _settle(future, self._futures[future])
            if settled.lost is not None:
                lost = lost or settled.lost
                for other in self._futures:
                    other.cancel()
            elif settled.failure:
                self.failed.append(settled.failure)
                if settled.stopped:
                    self.issued.stop(self.pool, self._futures[future])
            else:
                self.bound += 1
        if lost is not None:
            raise lost

    def summary(self) -> str:
        """ ", N bound to their runners" and the failures, for the action's outcome."""
        if self.shared is not None:
            return "; binding them in the background"
        if not self.failed:
            return ""
        shown = "; ".join(self.failed[:3]) + ("; ..." if len(self.failed) > 3 else "")
        return f" ({self.bound} bound; {len(self.failed)} not bound and stopped: {shown})"


@dataclass(frozen=True)
class _Settled:
    """How one binding ended: bound (no failure), failed (stopped or not), or lease lost."""

    failure: str = ""
    stopped: bool = False
    lost: LeaseLost | None = None


def _settle(future: Future[str], task_arn: str) -> _Settled:
    """The outcome of a finished binding of `task_arn` (never raises)."""
    task_id = task_arn.rsplit("/", 1)[-1]
    try:
        why = future.result()
    except LeaseLost as error:
        return _Settled(lost=error)
    except Exception as error:  # a worker's failure is this task's, not the apply's
        log.warning("runner task %s: binding failed: %s", task_id, error)
        return _Settled(failure=f"{task_id}: {error}")
    return _Settled(failure=f"{task_id}: {why}", stopped=True) if why else _Settled()


@dataclass
class Collected:
    """The bindings `Bindings.collect` found finished: bound, failed by pool, lease lost."""

    bound: int = 0
    failed: dict[str, list[str]] = field(default_factory=dict)
    lease_lost: int = 0


class Bindings:
    """The controller's runner bindings, in flight across cycles on one worker pool.

    A cycle's run actions only request the tasks (RunTask) and hand each placed task here;
    the next cycle need not wait for GitHub and SSM, so demand that arrives while a burst is
    being bound is requested at once. Each binding runs inside the fence of the apply that
    placed its task. The controller's thread calls `collect` each cycle: failed bindings
    (their task was stopped) become expected stops and back their pool off, as a failed
    action does. `pending` says which tasks are still being bound, so that they are not
    taken for tasks that lost their binding."""

    def __init__(self, workers: int = DEFAULT_BIND_WORKERS) -> None:
        if workers < 1:
            raise ValueError(f"bind workers must be at least 1, not {workers}")
        self._workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bind-runner")
        self._lock = threading.Lock()
        self._futures: dict[Future[str], tuple[str, str]] = {}  # -> (pool, task ARN)

    def submit(
        self,
        executor: Executor,
        pool: str,
        launch: dict[str, Any],
        cluster: str,
        task_arns: list[str],
    ) -> None:
        """Bind these placed tasks in the background."""
        for task_arn in task_arns:
            work = executor.fenced(executor._bind, pool, launch, cluster, task_arn)
            with self._lock:
                self._futures[self._workers.submit(work)] = (pool, task_arn)

    def pending(self) -> set[str]:
        """The task ARNs still being bound."""
        with self._lock:
            return {arn for future, (_, arn) in self._futures.items() if not future.done()}

    def collect(self, expectations: Expectations) -> Collected:
        """Settle the bindings that finished since the last call."""
        with self._lock:
            finished = {f: key for f, key in self._futures.items() if f.done()}
            for future in finished:
                del self._futures[future]
        collected = Collected()
        for future, (pool, task_arn) in finished.items():
            if future.cancelled():
                continue
            settled = _settle(future, task_arn)
            if settled.lost is not None:
                collected.lease_lost += 1  # unbound: the next leader binds it or stops it
            elif settled.failure:
                collected.failed.setdefault(pool, []).append(settled.failure)
                if settled.stopped:
                    expectations.expect_stop(pool, task_arn)
            else:
                collected.bound += 1
        return collected

    def close(self) -> None:
        """Finish the bindings begun, cancel the others (their tasks are re-bound later)."""
        self._workers.shutdown(wait=True, cancel_futures=True)


def _rejected(error: ClientError) -> bool:
    """True when AWS surely did not perform the request: a 4xx answer (invalid, denied,
    throttled after every retry). A 5xx may come after the work was done."""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
    return bool(400 <= status < 500)
