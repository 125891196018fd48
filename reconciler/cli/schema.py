"""`ecs-reconciler schema`: print the JSON Schema of the spec kinds, or write `schemas/`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..spec.models import KINDS
from ..spec.schema import render_schema, write_schemas


def register(verbs: Any) -> None:
    """Add the `schema` sub-command."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "schema",
        help="print the JSON Schema of spec documents",
        description="Print the JSON Schema generated from the models, or write every file.",
    )
    parser.add_argument(
        "--kind", choices=sorted(KINDS), help="one kind only (default: any spec document)"
    )
    parser.add_argument("--write", metavar="DIR", help="write all schema files into DIR")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print or write the schemas."""
    if args.write:
        for path in write_schemas(Path(args.write)):
            print(f"wrote {path}")
        return 0
    sys.stdout.write(render_schema(KINDS[args.kind] if args.kind else None))
    return 0
