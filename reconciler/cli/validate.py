"""`ecs-reconciler validate [PATH ...]`: load and check specs, print diagnostics.

Exit 0 when the specs are valid, 1 when any error was found.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..spec.diagnostics import render_github, render_json, render_text
from ..spec.loader import SpecSet, load_specs
from ..spec.models import RunnerPool

RENDERERS = {"text": render_text, "json": render_json, "github": render_github}


def register(verbs: Any) -> None:
    """Add the `validate` sub-command."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "validate",
        help="check spec files and report every problem with its file:line:col",
        description="Load spec files (directories recursively) and report every problem.",
    )
    parser.add_argument("paths", nargs="*", default=["specs"], metavar="PATH")
    parser.add_argument("--format", choices=sorted(RENDERERS), default="text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Validate the given paths; print diagnostics in the chosen format."""
    spec_set = load_specs(args.paths)
    sys.stdout.write(RENDERERS[args.format](spec_set.diagnostics))
    if args.format == "text":
        print(summary(spec_set))
        for pool in spec_set.pools:
            print(f"  {describe_pool(pool)}")
    return 0 if spec_set.ok else 1


def summary(spec_set: SpecSet) -> str:
    """One line saying what was loaded and whether it is valid."""
    pools = len(spec_set.pools)
    providers = len(spec_set.capacity_providers)
    errors = len(spec_set.errors)
    verdict = "valid" if not errors else f"{errors} error{'s' if errors != 1 else ''}"
    return (
        f"{len(spec_set.files)} file{'s' if len(spec_set.files) != 1 else ''}, "
        f"{pools} RunnerPool{'s' if pools != 1 else ''}, "
        f"{providers} CapacityProvider{'s' if providers != 1 else ''}: {verdict}"
    )


def describe_pool(pool: RunnerPool) -> str:
    """A one-line description of a pool for summaries."""
    spec = pool.spec
    return (
        f"{pool.metadata.name}: {spec.scope.kind} {spec.scope.target}, "
        f"labels {','.join(spec.labels)}, {spec.architecture}, docker {spec.docker.mode}, "
        f"runners {spec.scaling.min}..{spec.scaling.max} (idle {spec.scaling.idle}"
        f"{', scheduled' if spec.scaling.schedules else ''})"
    )
