"""Refresh tests/fixtures/github/: the parts of GitHub's published descriptions we check against.

GitHub publishes its REST API (`@octokit/openapi`: api.github.com, GHEC, GHES), its webhook
payloads (`@octokit/openapi-webhooks`) and real example payloads (`@octokit/webhooks-examples`)
as npm packages. The conformance tests (tests/test_github_conformance.py) need a few dozen
operations and one event of those hundreds of megabytes, so this script `npm pack`s the pinned
versions into a temporary directory and writes a small, offline extract:

- `rest/<description>.json`: the operations in `OPERATIONS` (dereferenced, examples removed),
  for each description that has them;
- `webhooks/<description>.json`: the `workflow_job` webhooks' payload schemas and every
  component they reference (`$ref`s kept, so the file stays small);
- `examples/workflow_job.json`: every `workflow_job` example payload of every GitHub edition;
- `versions.json`: the package versions and npm integrity hashes the extract came from.

Bump a version in `PACKAGES`, run `python tools/refresh_github_schemas.py`, and review the diff.
Needs `npm` and the npm registry; the tests never do.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

PACKAGES = {
    "@octokit/openapi": "23.0.2",
    "@octokit/openapi-webhooks": "12.1.0",
    "@octokit/webhooks-examples": "7.6.1",
}
#: the REST descriptions checked: github.com, GitHub Enterprise Cloud, each GHES in the package
DESCRIPTIONS = ("api.github.com", "ghec", "ghes-3.17", "ghes-3.18", "ghes-3.19")
HOOKS = ("/app/hook", "/orgs/{org}/hooks/{hook_id}", "/repos/{owner}/{repo}/hooks/{hook_id}")
_SCOPES = ("/enterprises/{enterprise}", "/orgs/{org}", "/repos/{owner}/{repo}")
#: (method, path) of every operation the client calls or the simulated GitHub serves
OPERATIONS: tuple[tuple[str, str], ...] = (
    *(("get", f"{scope}/actions/runners") for scope in _SCOPES),
    *(("post", f"{scope}/actions/runners/generate-jitconfig") for scope in _SCOPES),
    *(("delete", f"{scope}/actions/runners/{{runner_id}}") for scope in _SCOPES),
    ("get", "/enterprises/{enterprise}/actions/runner-groups"),
    ("get", "/orgs/{org}/actions/runner-groups"),
    # a selected runner group's members (runner group access drift)
    ("get", "/enterprises/{enterprise}/actions/runner-groups/{runner_group_id}/organizations"),
    ("get", "/orgs/{org}/actions/runner-groups/{runner_group_id}/repositories"),
    ("get", "/repos/{owner}/{repo}/releases"),
    ("get", "/repos/{owner}/{repo}/actions/jobs/{job_id}"),
    ("post", "/app/installations/{installation_id}/access_tokens"),
    # webhook deliveries: listing and redelivery (GitHub App, organization, repository hooks)
    *(
        (method, f"{hook}/deliveries{tail}")
        for hook in HOOKS
        for method, tail in (
            ("get", ""),
            ("get", "/{delivery_id}"),
            ("post", "/{delivery_id}/attempts"),
        )
    ),
)
WEBHOOKS = tuple(
    f"workflow-job-{action}" for action in ("queued", "waiting", "in-progress", "completed")
)
#: OpenAPI keywords the tests do not need (dropped outside `properties`, where they are names)
DROPPED = ("example", "examples", "description", "summary", "x-github")
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "github"


def npm_pack(package: str, version: str, into: Path) -> tuple[Path, str]:
    """`npm pack` one package version into `into`; returns the unpacked dir and its integrity."""
    result = subprocess.run(
        ["npm", "pack", "--json", f"{package}@{version}"],
        cwd=into,
        check=True,
        capture_output=True,
        text=True,
    )
    packed = json.loads(result.stdout)[0]
    target = into / package.replace("/", "+")
    with tarfile.open(into / packed["filename"]) as archive:
        archive.extractall(target, filter="data")
    return target / "package", str(packed["integrity"])


def without_examples(node: Any, under_properties: bool = False) -> Any:
    """A copy without examples, descriptions, summaries, x-github (property names of those kept)."""
    if isinstance(node, list):
        return [without_examples(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        key: without_examples(value, key == "properties" and not under_properties)
        for key, value in node.items()
        if under_properties or key not in DROPPED
    }


def rest_extract(description: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path in OPERATIONS:
        operation = description["paths"].get(path, {}).get(method)
        if operation is not None:
            paths.setdefault(path, {})[method] = without_examples(operation)
    return {
        "openapi": description["openapi"],
        "info": {key: description["info"][key] for key in ("title", "version")},
        "paths": paths,
    }


def referenced(node: Any, components: dict[str, Any], found: dict[str, Any]) -> None:
    """Collect every `#/components/schemas/...` reachable from `node` into `found`."""
    if isinstance(node, list):
        for item in node:
            referenced(item, components, found)
    elif isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in found:
                found[name] = without_examples(components[name])
                referenced(components[name], components, found)
        for value in node.values():
            referenced(value, components, found)


def webhook_extract(description: dict[str, Any]) -> dict[str, Any]:
    webhooks = {}
    for name in WEBHOOKS:
        body = description["webhooks"][name]["post"]["requestBody"]["content"]["application/json"]
        webhooks[name] = body["schema"]
    schemas: dict[str, Any] = {}
    referenced(webhooks, description["components"]["schemas"], schemas)
    return {
        "openapi": description["openapi"],
        "info": {key: description["info"][key] for key in ("title", "version")},
        "webhooks": webhooks,
        "components": {"schemas": dict(sorted(schemas.items()))},
    }


def examples_extract(package: Path) -> list[dict[str, Any]]:
    """Every distinct `workflow_job` example, with the edition it comes from."""
    seen: set[str] = set()
    examples = []
    for index in sorted(package.glob("*/index.json")):
        for event in json.loads(index.read_text()):
            if event["name"] != "workflow_job":
                continue
            for example in event["examples"]:
                key = json.dumps(example, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    examples.append({"edition": index.parent.name, "payload": example})
    return examples


def write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        unpacked, versions = {}, {}
        for package, version in PACKAGES.items():
            unpacked[package], integrity = npm_pack(package, version, Path(work))
            versions[package] = {"version": version, "integrity": integrity}
        rest = unpacked["@octokit/openapi"] / "generated"
        hooks = unpacked["@octokit/openapi-webhooks"] / "generated"
        for name in DESCRIPTIONS:
            description = json.loads((rest / f"{name}.deref.json").read_text())
            write(args.out / "rest" / f"{name}.json", rest_extract(description))
            description = json.loads((hooks / f"{name}.json").read_text())
            write(args.out / "webhooks" / f"{name}.json", webhook_extract(description))
        examples = examples_extract(unpacked["@octokit/webhooks-examples"])
        write(args.out / "examples" / "workflow_job.json", examples)
        write(args.out / "versions.json", versions)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
