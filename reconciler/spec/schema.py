"""JSON Schema of the spec kinds, generated from the models (the models are the truth).

`schemas/` holds the committed output: one schema per kind and one for any spec document
(kind-discriminated), which the example specs reference for editor completion.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from .models import CapacityProvider, RunnerPool

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILES = {
    "ecs-reconciler.schema.json": None,
    "runnerpool.schema.json": RunnerPool,
    "capacityprovider.schema.json": CapacityProvider,
}


def document_schema(
    kind: type[RunnerPool] | type[CapacityProvider] | None = None,
) -> dict[str, Any]:
    """The JSON Schema of one kind, or of any spec document when `kind` is None."""
    if kind is None:
        adapter: TypeAdapter[Any] = TypeAdapter(
            Annotated[RunnerPool | CapacityProvider, Field(discriminator="kind")]
        )
        schema = adapter.json_schema(by_alias=True)
        title = "ecs-reconciler spec document"
    else:
        schema = kind.model_json_schema(by_alias=True)
        title = f"ecs-reconciler {kind.__name__}"
    return {"$schema": SCHEMA_DIALECT, **schema, "title": title}


def render_schema(kind: type[RunnerPool] | type[CapacityProvider] | None = None) -> str:
    """The schema as stable, pretty-printed JSON text."""
    return json.dumps(document_schema(kind), indent=2, ensure_ascii=False) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema file into `directory`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, kind in SCHEMA_FILES.items():
        path = directory / file_name
        path.write_text(render_schema(kind), encoding="utf-8")
        written.append(path)
    return written
