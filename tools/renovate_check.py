"""Check that Renovate finds every dependency pinned in the spec files.

Runs the real Renovate offline in extract mode (via ``renovate-extract``) on this checkout, or
reads its JSON output from ``--extract-json FILE``, then scans every spec file under ``specs/``
independently and checks that, for every RunnerPool document, Renovate extracted:

* the runner version (``runner.version``, annotated ``# renovate: datasource=github-releases
  depName=actions/runner``),
* the runner image (``runner.image: REPO:TAG@sha256:DIGEST``),
* the Docker-in-Docker image (``docker.image``) when ``docker.mode`` is ``dind``,

plus any other value annotated with a ``# renovate:`` comment. It also fails when Renovate
reported configuration problems.

Stdlib only (no project imports, no PyYAML) so it runs without the project's virtualenv.

Usage: python tools/renovate_check.py [--extract-json FILE]
The extractor defaults to ``<repo root>/../shared/tools/renovate-extract`` (override with the
environment variable RENOVATE_EXTRACT). Renovate only sees files tracked by git.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPECS_DIR = "specs"
DEFAULT_EXTRACTOR = ROOT.parent / "shared" / "tools" / "renovate-extract"

# Warnings that come from the offline sandbox, not from the configuration.
BENIGN_WARNINGS = (
    re.compile(r"^RE2 not usable, falling back to RegExp$"),  # optional native module missing
    re.compile(r"^GitHub token is required for some dependencies$"),  # offline: no token
    # pyproject's requires-python is extracted as a dependency `python` that no lock file
    # pins; every package the lock pins is checked by name below (lock_problems)
    re.compile(r"^pip-compile: dependency not found in lock file$"),
)
LOCK_DIR = "requirements"
PINNED = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")

# Options that Renovate silently migrates (it only logs this at debug level, so it never shows
# up in the extractor's warnings). Checked directly in renovate.json.
DEPRECATED_OPTIONS = {
    "fileMatch": "managerFilePatterns",
    "regexManagers": "customManagers",
    "stabilityDays": "minimumReleaseAge",
    "matchPaths": "matchFileNames",
    "matchPackagePatterns": "matchPackageNames",
    "matchPackagePrefixes": "matchPackageNames",
    "excludePackageNames": "matchPackageNames",
    "excludePackagePatterns": "matchPackageNames",
    "excludePackagePrefixes": "matchPackageNames",
    "matchDepPatterns": "matchDepNames",
    "matchDepPrefixes": "matchDepNames",
    "excludeDepNames": "matchDepNames",
    "excludeDepPatterns": "matchDepNames",
    "baseBranches": "baseBranchPatterns",
}

RENOVATE_COMMENT = re.compile(
    r"^\s*#\s*renovate:\s*datasource=(?P<datasource>\S+)\s+depName=(?P<depName>\S+)"
)
KEY_LINE = re.compile(
    r"""^(?P<indent>[ ]*)(?P<q>["']?)(?P<key>[A-Za-z0-9_.-]+)(?P=q)[ \t]*:"""
    r"""(?:[ \t]+(?P<value>.*))?$"""
)
DOC_SEPARATOR = re.compile(r"^(---|\.\.\.)(\s.*)?$")
IMAGE_REF = re.compile(
    r"^(?P<repo>[^\s@]+?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]*))?(?:@(?P<digest>sha256:\S+))?$"
)


Values = dict[tuple[str, ...], tuple[str, int]]  # key path -> (scalar value, line number)
Annotation = tuple[str, str, str | None, int]  # datasource, depName, annotated value, line
Extract = dict[str, Any]  # renovate-extract's JSON output


@dataclass(frozen=True)
class Dep:
    """One dependency as Renovate reports it (only the fields we compare)."""

    datasource: str | None
    depName: str | None
    currentValue: str | None
    currentDigest: str | None = None


@dataclass(frozen=True)
class Expected:
    label: str  # "runner version", "runner image", "dind image", "annotated value"
    dep: Dep
    line: int

    def describe(self) -> str:
        d = self.dep
        if d.datasource == "docker":
            ref = d.depName or ""
            if d.currentValue:
                ref += f":{d.currentValue}"
            if d.currentDigest:
                ref += f"@{d.currentDigest}"
            return f"{self.label} {ref}"
        return f"{self.label} {d.depName} {d.currentValue} ({d.datasource})"


def scalar(raw: str | None) -> str | None:
    """The value of a plain or quoted single-line YAML scalar (trailing comment removed)."""
    if raw is None:
        return None
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        end = raw.find(raw[0], 1)
        return raw[1:end] if end > 0 else raw[1:]
    return re.sub(r"\s+#.*$", "", raw).strip() or None


def flow_mapping(raw: str) -> dict[str, str] | None:
    """A one-line flow mapping such as ``{version: 2.3.0, image: x:y@sha256:...}``."""
    raw = re.sub(r"\s+#.*$", "", raw.strip())
    if not (raw.startswith("{") and raw.endswith("}")):
        return None
    out: dict[str, str] = {}
    for item in raw[1:-1].split(","):
        key, sep, value = item.partition(": ")
        if sep:
            out[key.strip().strip("\"'")] = scalar(value) or ""
    return out


def image_dep(ref: str) -> Dep:
    m = IMAGE_REF.match(ref)
    if not m:
        return Dep("docker", ref, None, None)
    return Dep("docker", m["repo"], m["tag"], m["digest"])


def parse_documents(text: str) -> list[tuple[Values, list[Annotation]]]:
    """Split a multi-document YAML file and index its block-mapping scalars.

    Returns, per document, a map from key path (e.g. ``("spec", "runner", "image")``) to
    (value, line number) and the list of ``# renovate:`` annotations with the value that follows.
    """
    docs: list[tuple[Values, list[Annotation]]] = []
    values: Values = {}
    annotations: list[Annotation] = []
    stack: list[tuple[int, str]] = []
    pending: tuple[str, str, int] | None = None  # renovate comment waiting for its value line
    for lineno, line in enumerate(text.splitlines(), start=1):
        if DOC_SEPARATOR.match(line):
            docs.append((values, annotations))
            values, annotations, stack, pending = {}, [], [], None
            continue
        comment = RENOVATE_COMMENT.match(line)
        if comment:
            pending = (comment["datasource"], comment["depName"], lineno)
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = KEY_LINE.match(line)
        if pending:
            value = scalar(m["value"]) if m else None
            annotations.append((pending[0], pending[1], value, lineno))
            pending = None
        if not m:
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m["key"]))
        path = tuple(key for _, key in stack)
        raw = m["value"]
        flow = flow_mapping(raw) if raw else None
        if flow is not None:
            for key, value in flow.items():
                values[(*path, key)] = (value, lineno)
        elif raw is not None:
            value = scalar(raw)
            if value is not None:
                values[path] = (value, lineno)
    docs.append((values, annotations))
    return docs


def expected_deps(text: str) -> tuple[list[Expected], list[str], int]:
    """What Renovate must find in one spec file; problems found while scanning; pool count."""
    expected: list[Expected] = []
    problems: list[str] = []
    pools = 0
    for values, notes in parse_documents(text):
        kind = values.get(("kind",), ("", 0))[0]
        runner_version_line = None
        if kind == "RunnerPool":
            pools += 1
            name = values.get(("metadata", "name"), ("?", 0))[0]
            version = values.get(("spec", "runner", "version"))
            image = values.get(("spec", "runner", "image"))
            mode = values.get(("spec", "docker", "mode"), ("", 0))[0]
            dind = values.get(("spec", "docker", "image"))
            if version is None:
                problems.append(f"RunnerPool {name}: spec.runner.version not found in the file")
            else:
                runner_version_line = version[1]
                annotated = [a for a in notes if a[3] == version[1]]
                if annotated:
                    datasource, dep_name = annotated[0][0], annotated[0][1]
                else:  # Renovate cannot find it; report what it should have found
                    datasource, dep_name = "github-releases", "actions/runner"
                    problems.append(
                        f"RunnerPool {name}: spec.runner.version (line {version[1]}) has no "
                        "'# renovate: datasource=github-releases depName=actions/runner' comment"
                    )
                expected.append(
                    Expected("runner version", Dep(datasource, dep_name, version[0]), version[1])
                )
            if image is None:
                problems.append(f"RunnerPool {name}: spec.runner.image not found in the file")
            else:
                expected.append(Expected("runner image", image_dep(image[0]), image[1]))
            if mode == "dind":
                if dind is None:
                    problems.append(f"RunnerPool {name}: dind pool without spec.docker.image")
                else:
                    expected.append(Expected("dind image", image_dep(dind[0]), dind[1]))
        for datasource, dep_name, value, lineno in notes:
            if lineno == runner_version_line:
                continue
            if value is None:
                problems.append(
                    f"line {lineno}: '# renovate:' comment not followed by 'key: value'"
                )
                continue
            expected.append(Expected("annotated value", Dep(datasource, dep_name, value), lineno))
    return expected, problems, pools


def run_extractor() -> Extract:
    extractor = Path(os.environ.get("RENOVATE_EXTRACT", DEFAULT_EXTRACTOR))
    if not extractor.exists():
        sys.exit(f"renovate-check: extractor not found: {extractor} (set RENOVATE_EXTRACT)")
    proc = subprocess.run(
        [str(extractor), str(ROOT)], stdout=subprocess.PIPE, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"renovate-check: {extractor} failed with exit code {proc.returncode}")
    try:
        extract: Extract = json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        sys.exit(f"renovate-check: extractor output is not JSON: {err}")
    return extract


def deprecated_options(node: object, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else key
            if key in DEPRECATED_OPTIONS:
                found.append(f"renovate.json: {here} is deprecated, use {DEPRECATED_OPTIONS[key]}")
            found += deprecated_options(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += deprecated_options(value, f"{path}[{i}]")
    return found


def config_problems(extract: Extract) -> list[str]:
    problems = [
        f"Renovate warning: {w}"
        for w in extract.get("warnings", [])
        if not any(p.match(str(w)) for p in BENIGN_WARNINGS)
    ]
    config = ROOT / "renovate.json"
    if not config.exists():
        problems.append("renovate.json not found")
    else:
        try:
            problems += deprecated_options(json.loads(config.read_text(encoding="utf-8")))
        except json.JSONDecodeError as err:
            problems.append(f"renovate.json is not valid JSON: {err}")
    return problems


def extracted_by_file(extract: Extract) -> dict[str, Counter[Dep]]:
    """All deps Renovate found, per package file (a file can appear once per manager)."""
    found: dict[str, Counter[Dep]] = {}
    for entry in extract.get("packageFiles", []):
        deps = found.setdefault(entry["packageFile"], Counter())
        for d in entry.get("deps", []):
            fields = ("datasource", "depName", "currentValue", "currentDigest")
            deps[Dep(*(d.get(f) for f in fields))] += 1
    return found


def canonical(name: str) -> str:
    """PEP 503 normalized package name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_problems(extract: Extract) -> tuple[list[str], int]:
    """Packages pinned in requirements/*.txt that Renovate's pip-compile manager does not
    know (so would never update), and how many pins were checked."""
    managed = {
        canonical(d["depName"])
        for entry in extract.get("packageFiles", [])
        if entry.get("manager") == "pip-compile"
        for d in entry.get("deps", [])
        if d.get("depName")
    }
    problems: list[str] = []
    checked = 0
    for lock in sorted((ROOT / LOCK_DIR).glob("*.txt")):
        rel = lock.relative_to(ROOT).as_posix()
        for line in lock.read_text(encoding="utf-8").splitlines():
            match = PINNED.match(line)
            if not match:
                continue
            checked += 1
            if canonical(match["name"]) not in managed:
                problems.append(
                    f"{rel}: {match['name']}=={match['version']} not managed by Renovate"
                )
    return problems, checked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--extract-json",
        type=Path,
        metavar="FILE",
        help="use this renovate-extract output instead of running Renovate",
    )
    args = parser.parse_args(argv)

    if args.extract_json:
        try:
            extract = json.loads(args.extract_json.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            sys.exit(f"renovate-check: cannot read {args.extract_json}: {err}")
    else:
        extract = run_extractor()
    found = extracted_by_file(extract)

    specs = sorted(
        p for p in (ROOT / SPECS_DIR).rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml")
    )
    if not specs:
        print(f"renovate-check: no spec files under {ROOT / SPECS_DIR}", file=sys.stderr)
        return 1

    failures: list[str] = []
    total = missing = 0
    for spec in specs:
        rel = spec.relative_to(ROOT).as_posix()
        expected, problems, pools = expected_deps(spec.read_text(encoding="utf-8"))
        available = Counter(found.get(rel, Counter()))
        marks = []
        for exp in expected:
            total += 1
            if available[exp.dep] > 0:
                available[exp.dep] -= 1
                marks.append(f"✓ {exp.describe()}")
            else:
                missing += 1
                marks.append(f"✗ {exp.describe()}")
                failures.append(f"{rel}: {exp.describe()} not found by Renovate")
        failures += [f"{rel}: {p}" for p in problems]
        ok = all(m.startswith("✓") for m in marks) and not problems
        if not expected and not problems:
            print(f"  {rel}: nothing to check ({pools} RunnerPool documents)")
            continue
        print(f"{'✓' if ok else '✗'} {rel}: " + "; ".join(marks))
        if rel not in found and expected:
            print("    (Renovate found nothing in this file; is it tracked by git?)")

    config_failures = config_problems(extract)
    failures += config_failures
    locked_failures, pins = lock_problems(extract)
    failures += locked_failures
    print(
        f"renovate-check: {pins - len(locked_failures)}/{pins} pinned Python packages in "
        f"{LOCK_DIR}/ managed by Renovate's pip-compile manager"
    )
    print(
        f"renovate-check: {total - missing}/{total} spec dependencies found by Renovate in "
        f"{len(specs)} spec files; {len(config_failures)} configuration problems"
    )
    if failures:
        sys.stdout.flush()
        print("renovate-check: FAILED", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
