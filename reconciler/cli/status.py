"""`ecs-reconciler status`: show a running controller's pools and conditions.

Reads `/status` from the controller's listener. Exit 0 when every pool is Ready, 2 when
some are progressing, 1 when the controller cannot be reached or a pool is Degraded. A stale
runner version (RunnerVersionStale) is printed under its pool and does not change the code.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from .common import EXIT_CHANGES, EXIT_ERROR, EXIT_OK


def register(verbs: Any) -> None:
    """Add the `status` sub-command."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "status",
        help="show a running controller's pools and conditions",
        description="Read /status from a running controller and print it.",
    )
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the controller's listener")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Fetch and print the status."""
    try:
        with urllib.request.urlopen(f"{args.url.rstrip('/')}/status", timeout=10) as response:
            status = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"error: cannot read {args.url}/status: {error}", file=sys.stderr)
        return EXIT_ERROR
    if args.format == "json":
        print(json.dumps(status, indent=2))
    else:
        print(render(status))
    conditions = [{c["type"]: c for c in pool["conditions"]} for pool in status["pools"].values()]
    if any(c["Degraded"]["status"] for c in conditions):
        return EXIT_ERROR
    return EXIT_OK if all(c["Ready"]["status"] for c in conditions) else EXIT_CHANGES


def render(status: dict[str, Any]) -> str:
    """A terminal table of the controller and its pools."""
    controller = status["controller"]
    lines = [
        f"leader: {controller['leader']}   cycles: {controller['cycles']}   last cycle: "
        f"{controller['lastCycleAt']} ({controller['lastCycleReason']})",
        f"revision: applied {controller['lastAppliedRevision']}, "
        f"attempted {controller['lastAttemptedRevision']}",
        "",
        f"{'pool':<32} {'desired':>7} {'running':>7} {'busy':>5} {'idle':>5}  state",
    ]
    for name, pool in status["pools"].items():
        conditions = {c["type"]: c for c in pool["conditions"]}
        if conditions["Degraded"]["status"]:
            state = (
                f"Degraded: {conditions['Degraded']['reason']}: {conditions['Degraded']['message']}"
            )
        elif conditions["Ready"]["status"]:
            state = "Ready"
        else:
            state = f"Progressing: {conditions['Progressing']['message']}"
        lines.append(
            f"{name:<32} {pool['desired']:>7} {pool['running']:>7} {pool['busy']:>5} "
            f"{pool['idle']:>5}  {state[:120]}"
        )
        stale = conditions.get("RunnerVersionStale")
        if stale and stale["status"]:
            lines.append(f"  RunnerVersionStale: {stale['message']}")
    for error in controller["specErrors"]:
        lines.append(f"spec error: {error}")
    return "\n".join(lines)
