"""A stand-in for the ECS container agent on the sandbox's Auto Scaling instances.

moto launches EC2 instances for Auto Scaling groups but nothing registers them with ECS, and
moto's RunTask (launch type EC2 or a capacity provider) only places tasks on registered container
instances. ``SimulatedEcsAgent.sync`` closes that gap, idempotently:

* every InService instance of an Auto Scaling group is registered in the cluster named by
  ``ECS_CLUSTER=`` in its launch template's user data (exactly how the real agent finds its
  cluster), with an instance identity document, total resources derived from the instance type,
  and the standard ``ecs.*`` attributes (architecture from the AMI);
* container instances whose EC2 instance is gone (terminated, shutting down, or unknown) have
  their running tasks stopped ("Host EC2 (instance i-...) terminated.", as ECS reports it) and are
  deregistered;
* a new task whose ECR image is not in the sandbox's ECR is stopped with ECS's
  ``CannotPullContainerError: ...`` reason (images of other registries always "pull": the sandbox
  is offline); a task running an image marked with ``crash_image`` is stopped on the next sync
  with "Essential container in task exited". moto keeps every container's exitCode at 0 and has
  no stopCode, so the task's stoppedReason is the only evidence, as the reconciler reads it.

moto ignores ``totalResources`` and ``attributes`` in RegisterContainerInstance (it always
registers 4096 CPU / 7482 MiB); the agent still sends them as the real agent does, and writes the
attributes with PutAttributes so that they are visible.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..verify.images import ImageReference, find_ecr_image
from .server import MOTO_ACCOUNT_ID, sandbox_client

logger = logging.getLogger(__name__)

_ECS_CLUSTER_RE = re.compile(r"ECS_CLUSTER=([A-Za-z0-9_-]+)")
_GONE_STATES = frozenset({"shutting-down", "terminated"})
#: Registered memory is below the nominal size (kernel, agent). Calibrated so that 8 GiB gives
#: 7482 MiB, the value moto hardcodes for every container instance.
_REGISTERED_MEMORY_RATIO = 7482 / 8192
_RESERVED_PORTS = ["22", "2375", "2376", "51678", "51679"]
#: What ECS reports for a task whose image is missing, and for one whose container exited.
PULL_FAILURE = (
    "CannotPullContainerError: pull image manifest has been retried 5 time(s): "
    "failed to resolve ref {image}: not found"
)
CRASH = "Essential container in task exited"
#: Capability attributes the real agent advertises that matter for runner task definitions.
_CAPABILITIES = (
    "ecs.capability.task-eni",
    "ecs.capability.container-ordering",
    "ecs.capability.execution-role-awslogs",
    "com.amazonaws.ecs.capability.privileged-container",
    "com.amazonaws.ecs.capability.logging-driver.awslogs",
    "com.amazonaws.ecs.capability.docker-remote-api.1.44",
)


@dataclass
class AgentSyncResult:
    """What one ``sync`` changed: container instance ARNs registered and deregistered."""

    registered: list[str] = field(default_factory=list)
    deregistered: list[str] = field(default_factory=list)
    stopped_tasks: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.registered or self.deregistered)


@dataclass(frozen=True)
class _Instance:
    instance_id: str
    instance_type: str
    image_id: str
    availability_zone: str
    private_ip: str
    architecture: str


class SimulatedEcsAgent:
    """Registers Auto Scaling instances as ECS container instances in the sandbox."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        *,
        auto_scaling_groups: Iterable[str] | None = None,
    ) -> None:
        """``auto_scaling_groups`` restricts registration to those groups (default: all)."""
        self.region = region
        self.auto_scaling_groups = (
            sorted(auto_scaling_groups) if auto_scaling_groups is not None else None
        )
        self._endpoint_url = endpoint_url
        self._ec2 = sandbox_client("ec2", endpoint_url, region)
        self._ecs = sandbox_client("ecs", endpoint_url, region)
        self._autoscaling = sandbox_client("autoscaling", endpoint_url, region)
        self._instance_type_cache: dict[str, tuple[int, int]] = {}
        self._architecture_cache: dict[str, str] = {}
        self._cluster_cache: dict[tuple[str, str], str | None] = {}
        self._images_cache: dict[str, list[str]] = {}
        self._ecr_by_region: dict[str, Any] = {}
        self._crashing: set[str] = set()
        self._started: set[str] = set()
        self._definitions: dict[str, str] = {}  # task ARN -> its task definition ARN

    # -- public ----------------------------------------------------------------------------------

    def sync(self) -> AgentSyncResult:
        """Register InService instances, deregister container instances whose host is gone."""
        result = AgentSyncResult()
        wanted = self._in_service_instances_by_cluster()
        registered = self._registered_container_instances(set(wanted) | set(self._clusters()))
        for cluster, instance_ids in sorted(wanted.items()):
            already = registered.get(cluster, {})
            missing = sorted(instance_ids - already.keys())
            for instance in self._describe_instances(missing).values():
                result.registered.append(self._register(cluster, instance))
        known_hosts = {
            i.instance_id
            for i in self._describe_instances(
                [iid for by_host in registered.values() for iid in by_host]
            ).values()
        }
        for cluster, by_host in sorted(registered.items()):
            for instance_id, container_instance_arn in sorted(by_host.items()):
                if instance_id not in known_hosts:
                    result.stopped_tasks += self._stop_tasks_on(
                        cluster, container_instance_arn, instance_id
                    )
                    self._ecs.deregister_container_instance(
                        cluster=cluster, containerInstance=container_instance_arn, force=True
                    )
                    logger.info(
                        "deregistered %s (host %s gone)", container_instance_arn, instance_id
                    )
                    result.deregistered.append(container_instance_arn)
        result.stopped_tasks += self._run_containers()
        return result

    def crash_image(self, image: str) -> None:
        """Make tasks using `image` exit right after they started (on the next sync)."""
        self._crashing.add(image)

    # -- discovery -------------------------------------------------------------------------------

    def _auto_scaling_groups(self) -> list[dict[str, Any]]:
        paginator = self._autoscaling.get_paginator("describe_auto_scaling_groups")
        kwargs: dict[str, Any] = {}
        if self.auto_scaling_groups is not None:
            kwargs["AutoScalingGroupNames"] = self.auto_scaling_groups
        return [g for page in paginator.paginate(**kwargs) for g in page["AutoScalingGroups"]]

    def _in_service_instances_by_cluster(self) -> dict[str, set[str]]:
        by_cluster: dict[str, set[str]] = {}
        for group in self._auto_scaling_groups():
            in_service = {
                i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService"
            }
            if not in_service:
                continue
            cluster = self._cluster_of(group)
            if cluster is None:
                logger.debug(
                    "asg %s: no ECS_CLUSTER in user data; skipped", group["AutoScalingGroupName"]
                )
                continue
            by_cluster.setdefault(cluster, set()).update(in_service)
        return by_cluster

    def _cluster_of(self, group: dict[str, Any]) -> str | None:
        """The cluster named by ECS_CLUSTER= in the group's launch template user data."""
        template = group.get("LaunchTemplate") or (group.get("MixedInstancesPolicy") or {}).get(
            "LaunchTemplate", {}
        ).get("LaunchTemplateSpecification")
        if not template:
            return None
        template_id = template.get("LaunchTemplateId")
        template_name = template.get("LaunchTemplateName")
        version = str(template.get("Version") or "$Default")
        key = (template_id or template_name or "", version)
        if key not in self._cluster_cache:
            selector = (
                {"LaunchTemplateId": template_id}
                if template_id
                else {"LaunchTemplateName": template_name}
            )
            versions = self._ec2.describe_launch_template_versions(**selector, Versions=[version])[
                "LaunchTemplateVersions"
            ]
            user_data = versions[0]["LaunchTemplateData"].get("UserData", "") if versions else ""
            self._cluster_cache[key] = _cluster_from_user_data(user_data)
        return self._cluster_cache[key]

    def _clusters(self) -> list[str]:
        paginator = self._ecs.get_paginator("list_clusters")
        arns = [arn for page in paginator.paginate() for arn in page["clusterArns"]]
        return [arn.rsplit("/", 1)[-1] for arn in arns]

    def _registered_container_instances(self, clusters: Iterable[str]) -> dict[str, dict[str, str]]:
        """cluster -> EC2 instance id -> container instance ARN."""
        registered: dict[str, dict[str, str]] = {}
        for cluster in sorted(clusters):
            paginator = self._ecs.get_paginator("list_container_instances")
            arns = [
                arn
                for page in paginator.paginate(cluster=cluster)
                for arn in page["containerInstanceArns"]
            ]
            by_host: dict[str, str] = {}
            for chunk in _chunks(arns, 100):
                described = self._ecs.describe_container_instances(
                    cluster=cluster, containerInstances=chunk
                )["containerInstances"]
                for ci in described:
                    by_host[ci["ec2InstanceId"]] = ci["containerInstanceArn"]
            registered[cluster] = by_host
        return registered

    def _describe_instances(self, instance_ids: list[str]) -> dict[str, _Instance]:
        """Live (not terminated / shutting down) instances among ``instance_ids``."""
        found: dict[str, _Instance] = {}
        for chunk in _chunks(sorted(set(instance_ids)), 200):
            reservations = self._ec2.describe_instances(
                Filters=[{"Name": "instance-id", "Values": chunk}]
            )["Reservations"]
            for reservation in reservations:
                for raw in reservation["Instances"]:
                    if raw["State"]["Name"] in _GONE_STATES:
                        continue
                    found[raw["InstanceId"]] = _Instance(
                        instance_id=raw["InstanceId"],
                        instance_type=raw["InstanceType"],
                        image_id=raw["ImageId"],
                        availability_zone=raw["Placement"]["AvailabilityZone"],
                        private_ip=raw.get("PrivateIpAddress", ""),
                        architecture=self._architecture_of(raw["ImageId"], raw.get("Architecture")),
                    )
        return found

    def _architecture_of(self, image_id: str, reported: str | None) -> str:
        if image_id not in self._architecture_cache:
            images = self._ec2.describe_images(ImageIds=[image_id])["Images"]
            self._architecture_cache[image_id] = (
                (images[0].get("Architecture") if images else None) or reported or "x86_64"
            )
        return self._architecture_cache[image_id]

    def _resources_of(self, instance_type: str) -> tuple[int, int]:
        """(CPU units, registered memory MiB) for ``instance_type``."""
        if instance_type not in self._instance_type_cache:
            info = self._ec2.describe_instance_types(InstanceTypes=[instance_type])[
                "InstanceTypes"
            ][0]
            cpu = int(info["VCpuInfo"]["DefaultVCpus"]) * 1024
            memory = int(int(info["MemoryInfo"]["SizeInMiB"]) * _REGISTERED_MEMORY_RATIO)
            self._instance_type_cache[instance_type] = (cpu, memory)
        return self._instance_type_cache[instance_type]

    # -- registration ----------------------------------------------------------------------------

    def _register(self, cluster: str, instance: _Instance) -> str:
        cpu, memory = self._resources_of(instance.instance_type)
        attributes = _attributes_for(instance)
        response = self._ecs.register_container_instance(
            cluster=cluster,
            instanceIdentityDocument=json.dumps(_identity_document(instance, self.region)),
            instanceIdentityDocumentSignature="sandbox-unsigned",
            totalResources=[
                {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
                {"name": "PORTS", "type": "STRINGSET", "stringSetValue": _RESERVED_PORTS},
                {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
            ],
            versionInfo={"agentVersion": "1.0.0-sandbox", "dockerVersion": "DockerVersion: 27.3"},
            attributes=[{"name": k, "value": v} if v else {"name": k} for k, v in attributes],
        )
        arn: str = response["containerInstance"]["containerInstanceArn"]
        reported = {
            a["name"]: a.get("value") for a in response["containerInstance"].get("attributes", [])
        }
        # moto drops the attributes sent with RegisterContainerInstance; write the missing ones.
        missing = [(k, v) for k, v in attributes if k not in reported]
        if missing:
            self._ecs.put_attributes(
                cluster=cluster,
                attributes=[
                    {"name": k, "value": v, "targetId": arn} if v else {"name": k, "targetId": arn}
                    for k, v in missing
                ],
            )
        logger.info(
            "registered %s (%s, %s) in cluster %s as %s",
            instance.instance_id,
            instance.instance_type,
            instance.architecture,
            cluster,
            arn,
        )
        return arn

    def _running_task_arns(self, cluster: str) -> list[str]:
        return [
            arn
            for page in self._ecs.get_paginator("list_tasks").paginate(
                cluster=cluster, desiredStatus="RUNNING"
            )
            for arn in page["taskArns"]
        ]

    def _running_tasks(self, cluster: str) -> list[dict[str, Any]]:
        task_arns = self._running_task_arns(cluster)
        return [
            task
            for chunk in _chunks(task_arns, 100)
            for task in self._ecs.describe_tasks(cluster=cluster, tasks=chunk)["tasks"]
        ]

    def _stop_tasks_on(
        self, cluster: str, container_instance_arn: str, instance_id: str
    ) -> list[str]:
        stopped: list[str] = []
        for task in self._running_tasks(cluster):
            if task.get("containerInstanceArn") == container_instance_arn:
                self._ecs.stop_task(
                    cluster=cluster,
                    task=task["taskArn"],
                    reason=f"Host EC2 (instance {instance_id}) terminated.",
                )
                stopped.append(task["taskArn"])
        return stopped

    # -- containers ------------------------------------------------------------------------------

    def _run_containers(self) -> list[str]:
        """Pull the images of new tasks (stop those that cannot), crash the marked ones."""
        stopped: list[str] = []
        running: set[str] = set()
        pullable: dict[str, bool] = {}
        for cluster in self._clusters():
            for arn, definition in self._running_definitions(cluster).items():
                reason = self._stop_reason(arn, self._images_of(definition), pullable)
                if reason is None:
                    running.add(arn)
                    continue
                self._ecs.stop_task(cluster=cluster, task=arn, reason=reason)
                logger.info("stopped %s: %s", arn, reason)
                stopped.append(arn)
        self._started &= running
        self._definitions = {arn: d for arn, d in self._definitions.items() if arn in running}
        return stopped

    def _running_definitions(self, cluster: str) -> dict[str, str]:
        """The task definition of each task meant to run in `cluster`: listed every sync,
        described once (a task's definition never changes; describing hundreds of tasks
        every second would load moto more than the controller under test)."""
        arns = self._running_task_arns(cluster)
        fresh = [arn for arn in arns if arn not in self._definitions]
        for chunk in _chunks(fresh, 100):
            for task in self._ecs.describe_tasks(cluster=cluster, tasks=chunk)["tasks"]:
                self._definitions[task["taskArn"]] = task["taskDefinitionArn"]
        return {arn: self._definitions[arn] for arn in arns if arn in self._definitions}

    def _stop_reason(
        self, task_arn: str, images: list[str], pullable: dict[str, bool]
    ) -> str | None:
        """Why a running task stops now: a new one cannot pull an image, a started one crashes."""
        if task_arn in self._started:
            return CRASH if self._crashing.intersection(images) else None
        missing = [image for image in images if not self._pullable(image, pullable)]
        if missing:
            return PULL_FAILURE.format(image=missing[0])
        self._started.add(task_arn)
        return None

    def _images_of(self, task_definition_arn: str) -> list[str]:
        if task_definition_arn not in self._images_cache:
            definition = self._ecs.describe_task_definition(taskDefinition=task_definition_arn)
            self._images_cache[task_definition_arn] = [
                c["image"] for c in definition["taskDefinition"]["containerDefinitions"]
            ]
        return self._images_cache[task_definition_arn]

    def _pullable(self, image: str, known: dict[str, bool]) -> bool:
        """Whether the image is in the sandbox's ECR; other registries' images always are."""
        if image not in known:
            reference = ImageReference.parse(image)
            if reference.ecr is None:
                known[image] = True
            else:
                region = reference.ecr[1]
                if region not in self._ecr_by_region:
                    self._ecr_by_region[region] = sandbox_client("ecr", self._endpoint_url, region)
                outcome = find_ecr_image(self._ecr_by_region[region], reference)
                known[image] = outcome.status == "ok"
        return known[image]


def _cluster_from_user_data(user_data_b64: str) -> str | None:
    try:
        text = base64.b64decode(user_data_b64).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        text = user_data_b64
    match = _ECS_CLUSTER_RE.search(text)
    return match.group(1) if match else None


def _identity_document(instance: _Instance, region: str) -> dict[str, Any]:
    """The fields of an EC2 instance identity document that the ECS agent sends."""
    return {
        "accountId": MOTO_ACCOUNT_ID,
        "architecture": instance.architecture,
        "availabilityZone": instance.availability_zone,
        "imageId": instance.image_id,
        "instanceId": instance.instance_id,
        "instanceType": instance.instance_type,
        "privateIp": instance.private_ip,
        "region": region,
        "version": "2017-09-30",
    }


def _attributes_for(instance: _Instance) -> list[tuple[str, str | None]]:
    return [
        ("ecs.cpu-architecture", instance.architecture),
        ("ecs.os-type", "linux"),
        ("ecs.os-family", "LINUX"),
        ("ecs.instance-type", instance.instance_type),
        ("ecs.availability-zone", instance.availability_zone),
        ("ecs.ami-id", instance.image_id),
        *((capability, None) for capability in _CAPABILITIES),
    ]


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
