"""`ecs-reconciler validate` and `schema` as a user runs them: exit codes and output formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import CAPACITY_PROVIDER, POOL
from .conftest import run_cli as cli

pytestmark = pytest.mark.e2e  # starts servers or processes

REPO = Path(__file__).resolve().parent.parent


def test_validate_examples_exits_zero():
    result = cli("validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 RunnerPools, 3 CapacityProviders: valid" in result.stdout


def test_validate_bad_specs_exit_one_with_locations_and_no_traceback(spec_dir):
    root = spec_dir(
        {
            "pool.yaml": POOL.replace("max: 10", "max: many"),
            "providers.yaml": CAPACITY_PROVIDER,
            "broken.yaml": b"a: [\n\xff",
        }
    )
    result = cli("validate", "specs", cwd=root.parent)
    assert result.returncode == 1
    assert "specs/pool.yaml:25:5: spec.scaling.max: expected a valid integer" in result.stdout
    assert "specs/broken.yaml:2:1: file is not valid UTF-8" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert "2 errors" in result.stdout


def test_validate_github_annotations(spec_dir):
    root = spec_dir(
        {"pool.yaml": POOL.replace("idle: 1", "idle: 50%"), "p.yaml": CAPACITY_PROVIDER}
    )
    result = cli("validate", "--format", "github", "specs", cwd=root.parent)
    assert result.returncode == 1
    assert result.stdout.startswith(
        "::error file=specs/pool.yaml,line=26,col=5,title=spec.scaling.idle::expected a valid"
    )


def test_validate_json(spec_dir):
    root = spec_dir({"pool.yaml": POOL})
    result = cli("validate", "--format", "json", "specs", cwd=root.parent)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    [problem] = report["diagnostics"]
    assert problem["file"] == "specs/pool.yaml"
    assert problem["line"] == 22
    assert problem["field"] == "spec.capacityProvider"


def test_schema_prints_json():
    result = cli("schema", "--kind", "RunnerPool")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "ecs-reconciler RunnerPool"


def test_unknown_option_is_a_usage_error():
    result = cli("validate", "--format", "yaml")
    assert result.returncode == 1  # 2 is reserved for "changes present"
    assert "invalid choice" in result.stderr
