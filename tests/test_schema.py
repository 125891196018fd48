"""The committed JSON Schema is current, and every example spec satisfies it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from reconciler.spec.schema import SCHEMA_FILES, render_schema

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "specs").rglob("*.yaml"))


@pytest.mark.parametrize("file_name", sorted(SCHEMA_FILES))
def test_committed_schema_is_current(file_name):
    committed = (REPO / "schemas" / file_name).read_text(encoding="utf-8")
    assert committed == render_schema(SCHEMA_FILES[file_name]), (
        f"schemas/{file_name} is stale: run `make schema` and commit the result"
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate_against_the_schema(path):
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("# yaml-language-server: $schema=")
    schema_path = (path.parent / first_line.split("$schema=", 1)[1]).resolve()
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    documents = [d for d in YAML(typ="safe").load_all(path.read_text()) if d is not None]
    assert documents
    for document in documents:
        errors = [e.message for e in validator.iter_errors(document)]
        assert errors == []


def test_schema_rejects_what_the_loader_rejects():
    schema = json.loads((REPO / "schemas" / "runnerpool.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    document = YAML(typ="safe").load((REPO / "specs" / "repo-mobile-arm64.yaml").read_text())
    document["spec"]["scaling"]["mxa"] = 3
    document["spec"]["scope"] = {"organization": "a", "enterprise": "b"}
    messages = " | ".join(e.message for e in validator.iter_errors(document))
    assert "'mxa' was unexpected" in messages
    assert "has too many properties" in messages
