"""The plan as a pull-request comment: summary first, deletions loud, details collapsed.

Always fits GitHub's 65,536-character comment limit: the summary, the policy verdict and
every deletion are kept; the rest is cut with a note saying how much was left out.
"""

from __future__ import annotations

from typing import Any

from .actions import Plan
from .render_text import detail_lines, headline, note_line

GITHUB_COMMENT_LIMIT = 65_536
MARKER = "<!-- ecs-reconciler-plan -->"
RESERVED = 200  # room for the closing fence and tags
NOTE_ROOM = 100  # room for a "... more not shown" note
FENCE = "`" * 3
ADDRESSES_PER_LINE = 8


def render_markdown(
    plan: Plan, limit: int = GITHUB_COMMENT_LIMIT, policy: dict[str, Any] | None = None
) -> str:
    """The Markdown comment, at most `limit` characters.

    The summary, the policy verdict, spec errors and every deletion come first and are kept;
    warnings, holds, the pool table and the collapsed details follow, each cut (with a
    note) when the budget runs out.
    """
    essential = [MARKER, "### ecs-reconciler plan", "", f"**{plan.summary_line()}**", ""]
    if policy is not None and policy["passed"]:
        essential += [f"Policy `{policy['name']}`: **passed**.", ""]
    elif policy is not None:
        essential += ["> [!CAUTION]", f"> Policy `{policy['name']}` **failed**:"]
        essential += [f"> - {_text(violation)}" for violation in policy["violations"]] + [""]
    if plan.spec_errors:
        essential += ["> [!CAUTION]", "> Some specs do not validate; nothing is applied from them:"]
        essential += [f"> - `{_code(error)}`" for error in plan.spec_errors] + [""]
    budget = limit - RESERVED
    essential += _deletion_lines(plan, budget // 2)
    out = _take(essential, budget, "line(s) of the summary")
    for section in _optional_sections(plan):
        out += _take(section, budget - _size(out), "line(s)")
    return "\n".join(out) + "\n"


def _deletion_lines(plan: Plan, room: int) -> list[str]:
    """Every deletion, one a line; grouped by reason, addresses only, when that would not fit."""
    deletions = [a for a in plan.actions if a.action == "delete" or a.deletes_pool]
    if not deletions:
        return []
    lines = ["> [!CAUTION]", f"> **{len(deletions)} deletion(s):**"]
    full = [f"> - `{_code(a.address)}`: {_text(a.reason)}" for a in deletions]
    if _size(full) <= room:
        return [*lines, *full, ""]
    by_reason: dict[str, list[str]] = {}
    for action in deletions:
        by_reason.setdefault(action.reason, []).append(f"`{_code(action.address)}`")
    for reason, addresses in by_reason.items():
        lines.append(f"> - {_text(reason)} ({len(addresses)}):")
        lines += [
            ">   " + ", ".join(addresses[start : start + ADDRESSES_PER_LINE])
            for start in range(0, len(addresses), ADDRESSES_PER_LINE)
        ]
    return [*lines, ""]


def _optional_sections(plan: Plan) -> list[list[str]]:
    warnings = [n for n in plan.notes if n.severity != "info"]
    held = [n for n in plan.notes if n.severity == "info"]
    sections: list[list[str]] = []
    if warnings:
        sections.append(["> [!WARNING]", *(f"> - {_text(note_line(n))}" for n in warnings), ""])
    if held:
        lines = [f"- {_text(note_line(n))}" for n in held]
        sections.append(["Busy-safe holds and information:", "", *lines, ""])
    if plan.pools:
        table = [
            "| pool | desired | running | busy | idle | outdated | changes |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for pool in plan.pools:
            changes = ", ".join(headline(a).split(": ", 1)[-1] for a in plan.for_pool(pool.name))
            table.append(
                f"| `{pool.name}` | {pool.desired} | {pool.running} | {pool.busy} | {pool.idle} "
                f"| {pool.outdated} | {_text(changes) or '-'} |"
            )
        sections.append([*table, ""])
    if plan.actions:
        details = [f"<details><summary>Details ({len(plan.actions)} actions)</summary>", ""]
        details.append(FENCE + "diff")
        for action in plan.actions:
            block = [headline(action), *(f"    {line}" for line in detail_lines(action)), ""]
            details += [line.replace(FENCE, "'''") for line in block]
        sections.append(details)
    return sections


def _take(lines: list[str], budget: int, what: str) -> list[str]:
    """As many of `lines` as fit in `budget` characters, with a note when some are left out."""
    taken: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        if used + len(line) + 1 > budget - NOTE_ROOM:
            taken.append(f"... {len(lines) - index} more {what} not shown: see the JSON plan")
            break
        taken.append(line)
        used += len(line) + 1
    if sum(line.startswith(FENCE) for line in taken) % 2:
        taken.append(FENCE)  # close a code block the cut left open
    if taken and taken[0].startswith("<details>"):
        taken += ["</details>", ""]
    return taken


def _size(lines: list[str]) -> int:
    return sum(len(line) + 1 for line in lines)


def _code(text: str) -> str:
    return text.replace("`", "'")


def _text(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")
