"""The blast-radius guard: which parts of a plan apply must refuse without explicit consent.

Pure. A pool's actions are refused as a whole when they would stop more than the allowed
share of its runners, or remove the pool; a capacity provider's deletion is refused unless
deletions are allowed. Other pools proceed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .actions import Action, Plan

DEFAULT_MAX_STOP_SHARE = 0.5


@dataclass(frozen=True)
class GuardPolicy:
    """What the operator allows: the share of a pool's runners one apply may stop, deletions."""

    max_stop_share: float = DEFAULT_MAX_STOP_SHARE
    allow_delete: bool = False


def refused_actions(plan: Plan, policy: GuardPolicy) -> dict[Action, str]:
    """Actions apply must not execute under `policy`, each with the reason."""
    refused: dict[Action, str] = {}
    running = {summary.name: summary.running for summary in plan.pools}
    pools = sorted({a.pool for a in plan.actions if a.pool})
    for pool in pools:
        actions = plan.for_pool(pool)
        reason = ""
        if any(a.deletes_pool for a in actions) and not policy.allow_delete:
            reason = f"would remove pool {pool}; pass --allow-delete to allow it"
        else:
            stops = sum(a.stops for a in actions)
            allowed = max(1, int(policy.max_stop_share * running.get(pool, stops)))
            if stops > allowed:
                reason = (
                    f"would stop {stops} of {running.get(pool, stops)} runners of pool {pool} "
                    f"(limit {policy.max_stop_share:.0%}, at most {allowed}); pass "
                    "--max-stop-share 1 to allow it"
                )
        if reason:
            refused.update({action: reason for action in actions})
    for action in plan.actions:
        if action.pool is None and action.action == "delete" and not policy.allow_delete:
            refused[action] = f"would delete {action.address}; pass --allow-delete to allow it"
    return refused
