"""Where moto's ECS differs from ECS in a way the reconciler depends on, corrected for the sandbox.

moto's RunTask places a task on any ACTIVE container instance of the cluster with room, whatever
the capacity provider strategy says. ECS places a task run with a capacity provider strategy
only on container instances of that provider's Auto Scaling group ("Capacity provider
strategies", Amazon ECS Developer Guide: tasks are placed on the instances of the capacity
provider's Auto Scaling group). Without this, one pool's tasks take another pool's room in the
sandbox and the demo fails to converge depending on which pools want most at the hour.

`apply()` wraps moto's `run_task`: with a (non-Fargate) capacity provider strategy, only
instances of the first provider's group are candidates (the reconciler gives one provider per
pool; weighted strategies across several providers are not simulated). It is applied inside the
moto server process (`python -m reconciler.sandbox.moto_fidelity` starts moto with it) or, in
thread mode, in the process that hosts moto. It changes moto, the simulated AWS, never the
reconciler.

Auto Scaling scaling activities: moto's DescribeScalingActivities always answers an empty
list, and its groups always launch. `apply()` also makes every instance launch of a group
record an activity (Amazon EC2 Auto Scaling API Reference, `Activity`: ActivityId,
AutoScalingGroupName, Description "Launching a new EC2 instance: i-...", Cause, StartTime,
EndTime, StatusCode Successful | Failed ..., StatusMessage, Progress), newest first as
DescribeScalingActivities lists them, and lets the sandbox take a group's spot capacity away:
while the group carries the tag `SPOT_SHORTAGE_TAG`, its launches fail (no instance, desired
capacity kept, one `Failed` activity whose message is EC2's InsufficientInstanceCapacity for
spot: "There is no Spot capacity available that matches your request", EC2 API error codes).
Auto Scaling keeps retrying a failed launch by itself; moto launches only when the desired
capacity is set, so the sandbox sets it again (same value) after removing the tag.

Concurrent requests: moto's DescribeTasks turns `include=["TAGS"]` into an entry of a response
transformer table that lives on the response *class*, shared by every request thread of the
server. A DescribeTasks without TAGS answered at the same moment (the simulated agent's) strips
the tags from the other's answer: our tasks would seem untagged, not ours. ECS answers each
request by its own parameters, so `apply()` gives each request its own copy of the table.

Cost: every test's sandbox deploys the stack into a reset account, and two of moto's ways spent
a third of that deployment's CPU without changing any answer: each KMS key (moto creates one
for EBS's and DynamoDB's default encryption) generated an RSA private key that only
Sign/Verify/GetPublicKey use, templates were parsed by PyYAML's pure-Python parser, and SSM
decoded its JSON of AWS's public parameters again after every reset. `apply()` generates a key's
private key when first used, parses templates with libyaml (the same constructors and resolver,
so the same document) and keeps SSM's decoded public parameters (read, never changed). And
every request: moto's server found the service of each request by trying the URL patterns of
all its services in turn (1 ms, under a lock every request thread takes); the service of a
host name never changes, so `apply()` remembers it.
"""

from __future__ import annotations

import inspect
import json
import sys
import threading
import uuid
from typing import Any

_FARGATE = frozenset({"FARGATE", "FARGATE_SPOT"})
_ACTIVITIES_KEPT = 1000  # per group, newest first (Auto Scaling keeps six weeks of them)
#: sandbox control (never set on real groups): while present, the group's launches fail
SPOT_SHORTAGE_TAG = "ecs-reconciler-sandbox:spot-shortage"
SPOT_SHORTAGE_MESSAGE = (
    "Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot "
    "capacity available that matches your request. Launching EC2 instance failed."
)
_applied = False
_candidates = threading.local()


def apply() -> None:
    """Make moto's RunTask honour capacity provider strategies (idempotent)."""
    global _applied
    if _applied:
        return
    from moto.ecs.models import EC2ContainerServiceBackend

    run_task = EC2ContainerServiceBackend.run_task
    can_be_placed = EC2ContainerServiceBackend._can_be_placed
    signature = inspect.signature(run_task)  # moto's handler passes arguments by position

    def run_task_on_provider_instances(
        self: Any, cluster_str: str, *args: Any, **kwargs: Any
    ) -> Any:
        given = signature.bind(self, cluster_str, *args, **kwargs).arguments
        strategy = given.get("capacity_provider_strategy")
        if not strategy and not given.get("launch_type"):
            strategy = self._get_cluster(cluster_str).default_capacity_provider_strategy
        provider = strategy[0]["capacityProvider"] if strategy else None
        _candidates.instances = (
            _instances_of_provider(self, provider)
            if provider and provider not in _FARGATE
            else None
        )
        try:
            return run_task(self, cluster_str, *args, **kwargs)
        finally:
            _candidates.instances = None

    def can_be_placed_on_candidate(container_instance: Any, requirements: dict[str, Any]) -> bool:
        allowed = getattr(_candidates, "instances", None)
        if allowed is not None and container_instance.ec2_instance_id not in allowed:
            return False
        return bool(can_be_placed(container_instance, requirements))

    EC2ContainerServiceBackend.run_task = run_task_on_provider_instances  # type: ignore[method-assign]
    EC2ContainerServiceBackend._can_be_placed = staticmethod(can_be_placed_on_candidate)  # type: ignore[method-assign,assignment]
    _record_launch_activities()
    _answer_each_request_by_its_own_parameters()
    _same_answers_for_less_cpu()
    _remember_the_service_of_each_host()
    _applied = True


def _answer_each_request_by_its_own_parameters() -> None:
    """moto's include/exclude switches write to a class-level table; write to a per-request
    copy instead (moto makes one response object per request)."""
    from moto.core.responses import BaseResponse, never_return

    def own_table(response: Any) -> dict[str, Any]:
        table = vars(response).get("RESPONSE_KEY_PATH_TO_TRANSFORMER")
        if table is None:
            table = dict(type(response).RESPONSE_KEY_PATH_TO_TRANSFORMER)
            response.RESPONSE_KEY_PATH_TO_TRANSFORMER = table
        return table

    def include_in_response(self: Any, response_key_path: str) -> None:
        own_table(self)[response_key_path] = lambda value: value

    def exclude_from_response(self: Any, response_key_path: str) -> None:
        own_table(self)[response_key_path] = never_return

    BaseResponse._include_in_response = include_in_response  # type: ignore[method-assign]
    BaseResponse._exclude_from_response = exclude_from_response  # type: ignore[method-assign]


def _same_answers_for_less_cpu() -> None:
    """KMS private keys made when first used; CloudFormation templates parsed by libyaml; SSM's
    public parameters decoded once."""
    import functools

    import yaml  # type: ignore[import-untyped]
    from moto.cloudformation import models as cloudformation
    from moto.cloudformation.utils import yaml_tag_constructor
    from moto.kms import models as kms
    from moto.ssm import models as ssm

    ssm.load_resource = functools.cache(ssm.load_resource)

    make_private_key = kms.generate_private_key

    class PrivateKeyWhenUsed:
        def __init__(self, key_spec: str) -> None:
            self._key_spec = key_spec
            self._key: Any = None

        def __getattr__(self, name: str) -> Any:
            if self._key is None:
                self._key = make_private_key(self._key_spec)
            return getattr(self._key, name)

    kms.generate_private_key = PrivateKeyWhenUsed  # type: ignore[assignment]

    if not getattr(yaml, "__with_libyaml__", False):
        return

    class TemplateLoader(yaml.CLoader):
        """moto's loader (yaml.Loader: Constructor, Resolver, its tag constructor), C parser."""

    TemplateLoader.add_multi_constructor("", yaml_tag_constructor)

    def parse_template(template: str) -> dict[str, Any]:
        try:
            parsed: dict[str, Any] = yaml.load(template, Loader=TemplateLoader)
        except (yaml.parser.ParserError, yaml.scanner.ScannerError):
            parsed = json.loads(template)
        return parsed

    cloudformation.Stack.parse_template = staticmethod(parse_template)  # type: ignore[method-assign]


def _remember_the_service_of_each_host() -> None:
    """moto's server tries every service's URL patterns per request; a host's service is fixed."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    find = DomainDispatcherApplication.get_backend_for_host
    known: dict[str, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        if host is None:
            return None
        if host not in known:
            known[host] = find(self, host)
        return known[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]


def _record_launch_activities() -> None:
    """Launches record scaling activities; a group tagged SPOT_SHORTAGE_TAG fails them;
    DescribeScalingActivities answers with what was recorded."""
    from moto.autoscaling.models import FakeAutoScalingGroup
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow

    launch = FakeAutoScalingGroup.replace_autoscaling_group_instances

    def launch_or_fail(self: Any, count_needed: int, propagated_tags: dict[str, str]) -> None:
        activities = self.__dict__.setdefault("_sandbox_activities", [])
        cause = (
            f"At {utcnow():%Y-%m-%dT%H:%M:%SZ} an instance was started in response to a "
            f"difference between desired and actual capacity, increasing the capacity from "
            f"{len(self.instance_states)} to {len(self.instance_states) + count_needed}."
        )
        del activities[_ACTIVITIES_KEPT:]
        if any(tag.get("Key") == SPOT_SHORTAGE_TAG for tag in self.tags):
            activities.insert(
                0,
                _activity(
                    self,
                    f"Launching a new EC2 instance.  Status Reason: {SPOT_SHORTAGE_MESSAGE}",
                    cause,
                    "Failed",
                    SPOT_SHORTAGE_MESSAGE,
                    utcnow(),
                ),
            )
            return
        before = {state.instance.id for state in self.instance_states}
        launch(self, count_needed, propagated_tags)
        for state in self.instance_states:
            if state.instance.id not in before:
                description = f"Launching a new EC2 instance: {state.instance.id}"
                activity = _activity(self, description, cause, "Successful", "", utcnow())
                activities.insert(0, activity)

    def describe_scaling_activities(self: Any) -> Any:
        name = self._get_param("AutoScalingGroupName")
        limit = min(int(self._get_param("MaxRecords") or 100), 100)
        groups = self.autoscaling_backend.autoscaling_groups
        chosen = [groups[name]] if name in groups else ([] if name else list(groups.values()))
        found = [a for group in chosen for a in group.__dict__.get("_sandbox_activities", [])]
        found.sort(key=lambda a: a["StartTime"], reverse=True)
        return ActionResult({"Activities": found[:limit]})

    FakeAutoScalingGroup.replace_autoscaling_group_instances = launch_or_fail  # type: ignore[method-assign]
    AutoScalingResponse.describe_scaling_activities = describe_scaling_activities  # type: ignore[method-assign]


def _activity(
    group: Any, description: str, cause: str, status: str, message: str, now: Any
) -> dict[str, Any]:
    """One scaling activity, in the shape of the API's `Activity`."""
    activity: dict[str, Any] = {
        "ActivityId": str(uuid.uuid4()),
        "AutoScalingGroupName": group.name,
        "AutoScalingGroupARN": group.arn,
        "Description": description,
        "Cause": cause,
        "StartTime": now,
        "EndTime": now,
        "StatusCode": status,
        "Progress": 100,
    }
    if message:
        activity["StatusMessage"] = message
    return activity


def _instances_of_provider(ecs_backend: Any, provider_name: str) -> set[str]:
    """EC2 instance ids of the Auto Scaling group behind a capacity provider (empty if none)."""
    from moto.autoscaling.models import autoscaling_backends

    provider = ecs_backend.capacity_providers.get(provider_name)
    if provider is None:
        return set()
    arn = provider.auto_scaling_group_provider.get("autoScalingGroupArn", "")
    group_name = arn.rsplit("autoScalingGroupName/", 1)[-1]
    groups = autoscaling_backends[ecs_backend.account_id][ecs_backend.region_name]
    group = groups.autoscaling_groups.get(group_name)
    if group is None:
        return set()
    return {state.instance.id for state in group.instance_states}


def main(argv: list[str] | None = None) -> None:
    """`python -m reconciler.sandbox.moto_fidelity ARGS`: moto's server, with `apply()` done.

    Without a line per request on its output (werkzeug's access log took a seventh of the
    server's CPU, and a soak's log grew without bound); startup errors are still printed."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    apply()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
