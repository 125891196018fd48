"""The plan as terminal text, in the manner of `terraform plan` (+ ~ -/+ -, one summary line).

Only reads a `Plan`. Also provides the per-action symbols and patch lines that the Markdown
renderer reuses.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch

from .actions import Action, Note, Plan

SYMBOLS = {"create": "+", "update": "~", "replace": "-/+", "delete": "-", "run": "+", "stop": "-"}
NOTE_MARKS = {"info": "i", "warning": "!", "error": "x"}
VALUE_WIDTH = 200


def headline(action: Action) -> str:
    """`+ runner_tasks.pool: start 2 runner(s)` and similar."""
    symbol = SYMBOLS[action.action]
    if action.resource_type == "runner_tasks":
        what = {
            "run": f"start {action.count} runner(s)",
            "stop": f"stop {action.stops} idle runner(s)",
            "replace": f"replace {action.stops} outdated idle runner(s) with {action.count} new"
            if action.task_arns
            else f"roll {action.count} runner(s) to the new revision",
        }[action.action]
        return f"{symbol} {action.address}: {what}"
    if action.resource_type == "auto_scaling_group":
        before, after = action.before["desiredCapacity"], action.after["desiredCapacity"]
        return f"{symbol} {action.address}: desired capacity {before} -> {after}"
    if action.resource_type == "instances":
        count = len(action.after["instances"])
        return f"{symbol} {action.address}: drain and terminate {count} empty instance(s)"
    verb = {
        "create": "will be created",
        "update": "will be updated in place",
        "replace": "must be replaced",
        "delete": "will be deleted",
    }[action.action]
    return f"{symbol} {action.address} {verb}"


def detail_lines(action: Action) -> list[str]:
    """The body of an action: reason, patch operations, tasks to stop."""
    lines = [f"# {action.reason}"]
    if action.resource_type == "runner_tasks":
        if action.count and isinstance(action.after, dict):
            network = action.after.get("network") or {}
            lines.append(
                f"  task definition {action.after['taskDefinition']}, capacity provider "
                f"{action.after['capacityProvider']}, subnets "
                f"{', '.join(network.get('subnets', []))}"
            )
        lines += [f"  - task {arn.rsplit('/', 1)[-1]}" for arn in action.task_arns]
        return lines
    if action.resource_type == "instances":
        return lines + [f"  - instance {i['instanceId']}" for i in action.after["instances"]]
    document = copy.deepcopy(action.before)
    for operation in action.patch:
        lines.append("  " + patch_line(operation, document))
        if operation.get("path") and document is not None:
            # later operations see the document as the earlier ones left it
            document = jsonpatch.apply_patch(document, [operation])
    return lines


def patch_line(operation: dict[str, Any], before: Any) -> str:
    """One RFC 6902 operation against `before`, the document it applies to.

    `+ /path = value`, `~ /path = new (was old)`, `- /path`, and for a renamed key
    (`move`) `~ /path = value (moved from /old)`.
    """
    path = operation.get("path", "") or "(whole resource)"
    op = operation["op"]
    if op == "remove":
        return f"- {path}"
    if op in ("move", "copy"):
        value = _short(_resolve(before, operation["from"]))
        verb = "moved" if op == "move" else "copied"
        return f"~ {path} = {value} ({verb} from {operation['from']})"
    value = _short(operation.get("value"))
    if op == "replace":
        return f"~ {path} = {value} (was {_short(_resolve(before, operation['path']))})"
    return f"+ {path} = {value}"


def _resolve(document: Any, pointer: str) -> Any:
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(document, list):
            document = document[int(part)] if part.isdigit() and int(part) < len(document) else None
        elif isinstance(document, dict):
            document = document.get(part)
        else:
            return None
    return document


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 3] + "..."


def note_line(note: Note) -> str:
    """`! pool x: message`"""
    scope = f"pool {note.pool}: " if note.pool else ""
    return f"{NOTE_MARKS[note.severity]} {scope}{note.message}"


def render_text(plan: Plan) -> str:
    """The whole plan as text."""
    out: list[str] = []
    if plan.spec_errors:
        out.append("Spec errors (nothing is deleted on account of these files):")
        out += [f"  {error}" for error in plan.spec_errors]
        out.append("")
    if plan.actions:
        out.append("ecs-reconciler will perform the following actions:")
        for action in plan.actions:
            out.append("")
            out.append(f"  {headline(action)}")
            out += [f"      {line}" for line in detail_lines(action)]
        out.append("")
    if plan.pools:
        out.append("Runner pools (observed):")
        out.append(
            f"  {'pool':<32} {'desired':>7} {'running':>7} {'busy':>5} {'idle':>5} {'outdated':>8}"
        )
        for pool in plan.pools:
            out.append(
                f"  {pool.name:<32} {pool.desired:>7} {pool.running:>7} {pool.busy:>5} "
                f"{pool.idle:>5} {pool.outdated:>8}"
            )
        out.append("")
    if plan.notes:
        out.append("Notes:")
        out += [f"  {note_line(note)}" for note in plan.notes]
        out.append("")
    out.append(plan.summary_line())
    return "\n".join(out) + "\n"
