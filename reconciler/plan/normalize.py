"""The one place that removes AWS defaults before a comparison (no perpetual diffs).

Both the task definition rendered from a spec and the one ECS describes go through
`normalize_task_definition`; both capacity-provider settings go through
`normalize_capacity_provider_settings`. What is left is canonical: known fields only, no
empty values, no defaults that AWS fills in, lists in a stable order.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Fields of RegisterTaskDefinition that we render; everything else ECS reports is ignored.
TASK_DEFINITION_FIELDS = (
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "runtimePlatform",
)
CONTAINER_FIELDS = (
    "name",
    "image",
    "essential",
    "command",
    "environment",
    "secrets",
    "privileged",
    "mountPoints",
    "dependsOn",
    "healthCheck",
    "logConfiguration",
    "stopTimeout",
    "cpu",
    "memory",
    "memoryReservation",
)
# Defaults ECS fills in for a container definition: absent and default compare equal.
CONTAINER_DEFAULTS: dict[str, Any] = {"essential": True, "cpu": 0, "privileged": False}
HEALTH_CHECK_DEFAULTS = {"interval": 30, "timeout": 5, "retries": 3, "startPeriod": 0}


def normalize_task_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """Canonical form of a task definition (RegisterTaskDefinition input or Describe output)."""
    result: dict[str, Any] = {}
    for key in TASK_DEFINITION_FIELDS:
        value = definition.get(key)
        if key == "containerDefinitions":
            value = sorted(
                (_normalize_container(c) for c in value or []), key=lambda c: c.get("name", "")
            )
        elif key == "volumes":
            value = sorted((_normalize_volume(v) for v in value or []), key=lambda v: v["name"])
        elif key in ("cpu", "memory") and value is not None:
            value = str(value)
        elif key == "requiresCompatibilities":
            value = sorted(value or [])
        _put(result, key, value)
    return result


def _normalize_volume(volume: dict[str, Any]) -> dict[str, Any]:
    source_path = (volume.get("host") or {}).get("sourcePath")
    return {
        "name": volume["name"],
        **({"host": {"sourcePath": source_path}} if source_path else {}),
    }


def _normalize_container(container: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key in CONTAINER_FIELDS:
        value = container.get(key)
        if key in CONTAINER_DEFAULTS and value == CONTAINER_DEFAULTS[key]:
            continue
        if key in ("environment", "secrets"):
            value = sorted((dict(item) for item in value or []), key=lambda item: item["name"])
        elif key == "mountPoints":
            value = sorted(
                (
                    {
                        "sourceVolume": m["sourceVolume"],
                        "containerPath": m["containerPath"],
                        "readOnly": bool(m.get("readOnly", False)),
                    }
                    for m in value or []
                ),
                key=lambda m: m["containerPath"],
            )
        elif key == "dependsOn":
            value = sorted((dict(d) for d in value or []), key=lambda d: d["containerName"])
        elif key == "healthCheck" and value:
            value = {**HEALTH_CHECK_DEFAULTS, **value}
        elif key == "logConfiguration" and value:
            value = {
                "logDriver": value["logDriver"],
                "options": dict(sorted((value.get("options") or {}).items())),
            }
        _put(result, key, value)
    return result


def normalize_capacity_provider_settings(provider: dict[str, Any]) -> dict[str, Any]:
    """Canonical managedScaling and managedTerminationProtection of a capacity provider."""
    group = provider.get("autoScalingGroupProvider", provider)
    scaling = group.get("managedScaling") or {}
    return {
        "managedScaling": {
            "status": scaling.get("status", "ENABLED"),
            "targetCapacity": int(scaling.get("targetCapacity", 100)),
            "minimumScalingStepSize": int(scaling.get("minimumScalingStepSize", 1)),
            "maximumScalingStepSize": int(scaling.get("maximumScalingStepSize", 10_000)),
            "instanceWarmupPeriod": int(scaling.get("instanceWarmupPeriod", 300)),
        },
        "managedTerminationProtection": group.get("managedTerminationProtection", "DISABLED"),
    }


def content_hash(normalized: dict[str, Any]) -> str:
    """A short, stable hash of normalized content (what the spec-hash tag records)."""
    canonical = json.dumps(normalized, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is None or value == [] or value == {} or value == "":
        return
    target[key] = value
