"""The plan as a pull-request comment: summary first, deletions loud, details collapsed.

Always fits GitHub's 65,536-character comment limit: the summary, every deletion and the
notes are kept; the collapsed details are cut with a note saying how many were left out.
"""

from __future__ import annotations

from typing import Any

from .actions import Plan
from .render_text import detail_lines, headline, note_line

GITHUB_COMMENT_LIMIT = 65_536
MARKER = "<!-- ecs-reconciler-plan -->"


def render_markdown(
    plan: Plan, limit: int = GITHUB_COMMENT_LIMIT, policy: dict[str, Any] | None = None
) -> str:
    """The Markdown comment, at most `limit` characters."""
    head = [MARKER, "### ecs-reconciler plan", "", f"**{plan.summary_line()}**", ""]
    if policy is not None and policy["passed"]:
        head += [f"Policy `{policy['name']}`: **passed**.", ""]
    elif policy is not None:
        head += ["> [!CAUTION]", f"> Policy `{policy['name']}` **failed**:"]
        head += [f"> - {_text(violation)}" for violation in policy["violations"]] + [""]
    if plan.spec_errors:
        head += ["> [!CAUTION]", "> Some specs do not validate; nothing is applied from them:"]
        head += [f"> - `{_code(error)}`" for error in plan.spec_errors]
        head.append("")
    deletions = [a for a in plan.actions if a.action == "delete" or a.deletes_pool]
    if deletions:
        head += ["> [!CAUTION]", f"> **{len(deletions)} deletion(s):**"]
        head += [f"> - `{_code(a.address)}`: {a.reason}" for a in deletions]
        head.append("")
    warnings = [n for n in plan.notes if n.severity != "info"]
    held = [n for n in plan.notes if n.severity == "info"]
    if warnings:
        head += ["> [!WARNING]"] + [f"> - {_text(note_line(n))}" for n in warnings] + [""]
    if held:
        head += ["Busy-safe holds and information:", ""]
        head += [f"- {_text(note_line(n))}" for n in held] + [""]
    if plan.pools:
        head += [
            "| pool | desired | running | busy | idle | outdated | changes |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for pool in plan.pools:
            changes = ", ".join(headline(a).split(": ", 1)[-1] for a in plan.for_pool(pool.name))
            head.append(
                f"| `{pool.name}` | {pool.desired} | {pool.running} | {pool.busy} | {pool.idle} "
                f"| {pool.outdated} | {_text(changes) or '-'} |"
            )
        head.append("")
    tail = ["</details>", ""]
    body = "\n".join(head)
    if not plan.actions:
        return _fit(body, limit)
    opening = f"<details><summary>Details ({len(plan.actions)} actions)</summary>\n\n```diff\n"
    closing = "```\n" + "\n".join(tail)
    budget = limit - len(body) - len(opening) - len(closing) - 200
    blocks: list[str] = []
    used = 0
    for index, action in enumerate(plan.actions):
        block = "\n".join([headline(action), *(f"    {x}" for x in detail_lines(action))]) + "\n\n"
        block = block.replace("```", "'''")
        if used + len(block) > budget:
            left = len(plan.actions) - index
            blocks.append(
                f"# ... {left} more action(s) not shown: see the JSON plan (--format json)\n"
            )
            break
        blocks.append(block)
        used += len(block)
    return _fit(body + "\n" + opening + "".join(blocks) + closing, limit)


def _code(text: str) -> str:
    return text.replace("`", "'")


def _text(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def _fit(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    note = "\n\n_(truncated to fit GitHub's comment limit; see the JSON plan)_\n"
    return text[: limit - len(note)] + note
