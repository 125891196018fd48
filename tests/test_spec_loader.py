"""Loading specs: valid sets load, and every kind of bad input gets a located, clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.spec.loader import load_specs

from .conftest import CAPACITY_PROVIDER, DIGEST, POOL

REPO = Path(__file__).resolve().parent.parent


def errors_of(root: Path) -> list[str]:
    spec_set = load_specs([root], base=root.parent)
    return [str(d) for d in spec_set.errors]


def test_example_specs_are_valid():
    spec_set = load_specs([REPO / "specs"], base=REPO)
    assert spec_set.errors == []
    names = sorted(p.metadata.name for p in spec_set.pools)
    assert names == ["enterprise-linux-large", "mobile-app-arm64", "platform-linux-dind"]
    scopes = {p.spec.scope.kind for p in spec_set.pools}
    assert scopes == {"enterprise", "organization", "repository"}


def test_defaults_are_explicit(spec_dir):
    spec_set = load_specs([spec_dir({"a.yaml": POOL + "---\n" + CAPACITY_PROVIDER})])
    assert spec_set.ok, spec_set.diagnostics
    pool = spec_set.pools[0]
    assert pool.spec.runner_group == "Default"
    assert pool.spec.deletion_policy == "Drain"
    assert pool.spec.rollout.max_surge == "25%"
    assert pool.spec.architecture == "x86_64"
    assert pool.spec.demand.source == "webhook"
    assert pool.spec.logging.log_group == "/ecs-reconciler/runners"
    provider = spec_set.capacity_providers[0]
    assert provider.spec.managed_scaling.target_capacity == 100
    assert provider.spec.managed_termination_protection == "DISABLED"


def replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# (description, pool text transformation, expected "line:col: field: message" fragment)
BAD_POOLS = [
    (
        "min > max",
        lambda t: replace(t, "min: 0", "min: 20"),
        "25:5: spec.scaling.max: must be >= min (20)",
    ),
    (
        "idle > max",
        lambda t: replace(t, "idle: 1", "idle: 11"),
        "26:5: spec.scaling.idle: idle (11) must be <= max (10)",
    ),
    (
        "unknown field",
        lambda t: replace(t, "  cluster: ci\n", "  cluster: ci\n  clustr: x\n"),
        "7:3: spec.clustr: unknown field 'clustr'",
    ),
    (
        "wrong type",
        lambda t: replace(t, "cpu: 1024", "cpu: lots"),
        "17:5: spec.resources.cpu: expected a valid integer, got str",
    ),
    (
        "string typed as number",
        lambda t: replace(t, "version: 2.328.0", "version: 2.3"),
        "quote it",
    ),
    (
        "two scopes",
        lambda t: replace(t, "organization: acme", "organization: acme\n    enterprise: acme"),
        "spec.scope: set exactly one of enterprise, organization or repository",
    ),
    ("no scope", lambda t: replace(t, "    organization: acme\n", "    {}\n"), "set exactly one"),
    (
        "bad name",
        lambda t: replace(t, "name: pool-a", "name: Pool_A"),
        "4:3: metadata.name: 'Pool_A' is not a DNS label",
    ),
    (
        "duplicate label",
        lambda t: replace(t, "[self-hosted, linux]", "[self-hosted, linux, Linux]"),
        "spec.labels: 'Linux' is listed twice",
    ),
    (
        "bad image",
        lambda t: replace(t, f"ghcr.io/acme/runner:2.328.0@{DIGEST}", "ghcr.io/acme/runner"),
        "spec.runner.image: 'ghcr.io/acme/runner' is not an image reference",
    ),
    (
        "short digest",
        lambda t: replace(t, f"docker:27-dind@{DIGEST}", "docker:27-dind@sha256:abc"),
        "spec.docker.image",
    ),
    (
        "dind without image",
        lambda t: replace(t, f"    image: docker:27-dind@{DIGEST}\n", ""),
        "spec.docker.image: mode dind needs an image",
    ),
    (
        "image without dind",
        lambda t: replace(t, "mode: dind", "mode: none"),
        "spec.docker.image: image is only used with mode dind",
    ),
    (
        "dind on fargate",
        lambda t: replace(t, "capacityProvider: linux", "capacityProvider: FARGATE"),
        "spec.capacityProvider: Fargate is not supported",
    ),
    (
        "dind memory too small",
        lambda t: replace(t, "memory: 2048", "memory: 600"),
        "spec.resources.memory: resources.memory (600) is too small",
    ),
    (
        "cpu too large",
        lambda t: replace(t, "cpu: 1024", "cpu: 999999"),
        "spec.resources.cpu: must be less than or equal to 196608",
    ),
    (
        "bad timezone",
        lambda t: (
            t
            + "    schedules:\n      - {days: [mon], from: '09:00', to: '18:00', timezone: Asia/Tokio, idle: 2}\n"
        ),
        "spec.scaling.schedules[0].timezone: 'Asia/Tokio' is not an IANA time zone",
    ),
    (
        "empty window",
        lambda t: (
            t
            + "    schedules:\n      - {days: [mon], from: '18:00', to: '09:00', timezone: UTC, idle: 2}\n"
        ),
        "spec.scaling.schedules[0].to: window 18:00-09:00 is empty",
    ),
    (
        "bad day",
        lambda t: (
            t
            + "    schedules:\n      - {days: [monday], from: '09:00', to: '18:00', timezone: UTC, idle: 2}\n"
        ),
        "spec.scaling.schedules[0].days[0]: must be 'mon'",
    ),
    (
        "schedule idle > max",
        lambda t: (
            t
            + "    schedules:\n      - {days: [mon], from: '09:00', to: '18:00', timezone: UTC, idle: 50}\n"
        ),
        "spec.scaling.schedules[0].idle: schedules[0].idle (50) must be <= max (10)",
    ),
    (
        "unknown capacity provider",
        lambda t: replace(t, "capacityProvider: linux", "capacityProvider: gpu"),
        "spec.capacityProvider: no CapacityProvider named 'gpu'",
    ),
    (
        "reserved env",
        lambda t: t + "  environment:\n    DOCKER_HOST: tcp://x\n",
        "spec.environment: DOCKER_HOST is set by the reconciler",
    ),
    (
        "env value not string",
        lambda t: t + "  environment:\n    RETRIES: 3\n",
        "spec.environment.RETRIES: expected a valid string, got int",
    ),
    (
        "secret value not ARN",
        lambda t: t + "  secrets:\n    - {name: TOKEN, valueFrom: hunter2}\n",
        "spec.secrets[0].valueFrom: 'hunter2' is not a Secrets Manager or SSM parameter ARN",
    ),
    (
        "secrets without execution role",
        lambda t: (
            t
            + "  secrets:\n    - {name: TOKEN, valueFrom: 'arn:aws:ssm:us-east-1:123456789012:parameter/ci/token'}\n"
        ),
        "spec.iam.executionRoleArn: secrets need iam.executionRoleArn",
    ),
    (
        "reserved tag",
        lambda t: t + "  tags:\n    aws:owner: me\n",
        "tag key 'aws:owner' uses a reserved prefix",
    ),
    (
        "maxSurge zero",
        lambda t: t + "  rollout: {maxSurge: 0}\n",
        "spec.rollout.maxSurge: 0: give a count of at least 1",
    ),
    (
        "maxSurge over 100%",
        lambda t: t + "  rollout: {maxSurge: 150%}\n",
        "spec.rollout.maxSurge: '150%': give a count",
    ),
    (
        "bad deletion policy",
        lambda t: t + "  deletionPolicy: Delete\n",
        "spec.deletionPolicy: must be 'Drain' or 'Orphan'",
    ),
    (
        "maxPerRepository on repository pool",
        lambda t: replace(
            replace(t, "organization: acme", "repository: acme/app"),
            "idle: 1",
            "idle: 1\n    maxPerRepository: 3",
        ),
        "spec.scaling.maxPerRepository: maxPerRepository has no effect",
    ),
    (
        "scale-set demand with a per-repository cap",
        lambda t: replace(
            t, "idle: 1", "idle: 1\n    maxPerRepository: 3\n  demand:\n    source: scaleSet"
        ),
        "spec.scaling.maxPerRepository: maxPerRepository needs webhook demand",
    ),
    (
        "unknown demand source",
        lambda t: replace(t, "idle: 1", "idle: 1\n  demand:\n    source: pubsub"),
        "spec.demand.source",
    ),
    (
        "missing required",
        lambda t: replace(t, "  resources:\n    cpu: 1024\n    memory: 2048\n", ""),
        "5:1: spec.resources: required field is missing",
    ),
    (
        "wrong apiVersion",
        lambda t: replace(t, "ecs-reconciler/v1alpha1", "ecs-reconciler/v2"),
        "1:1: apiVersion: unsupported apiVersion 'ecs-reconciler/v2'; expected ecs-reconciler/v1alpha1",
    ),
    (
        "unknown kind",
        lambda t: replace(t, "kind: RunnerPool", "kind: RunnerPol"),
        "2:1: kind: unknown kind 'RunnerPol'",
    ),
    (
        "list instead of mapping",
        lambda t: replace(t, "    organization: acme\n", "    - acme\n"),
        "spec.scope: expected a valid dictionary",
    ),
]


@pytest.mark.parametrize(
    ("transform", "expected"), [(t, e) for _, t, e in BAD_POOLS], ids=[d for d, _, _ in BAD_POOLS]
)
def test_bad_pool_is_reported_at_its_line(spec_dir, transform, expected):
    root = spec_dir({"pool.yaml": transform(POOL), "providers.yaml": CAPACITY_PROVIDER})
    errors = errors_of(root)
    assert any(expected in e for e in errors), errors
    assert all(e.startswith("specs/pool.yaml:") for e in errors), errors


BAD_FILES = [
    ("syntax error", b"a: [1, 2\nb: 3\n", "specs/bad.yaml:2:2: invalid YAML: expected ',' or ']'"),
    (
        "duplicate key",
        b"apiVersion: x\napiVersion: y\n",
        'specs/bad.yaml:2:1: invalid YAML: found duplicate key "apiVersion"',
    ),
    (
        "not utf-8",
        b"kind: RunnerPool\nname: \xff\xfe\n",
        "specs/bad.yaml:2:7: file is not valid UTF-8 (byte 0xff)",
    ),
    (
        "control character",
        b"kind: Runner\x07Pool\n",
        "specs/bad.yaml:1:13: invalid YAML: unacceptable character '\\x07'",
    ),
    (
        "custom tag",
        b"apiVersion: !!python/object:os.system x\n",
        "specs/bad.yaml:1:13: YAML tags such as !tag are not supported",
    ),
    (
        "alias bomb",
        (
            "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
            + "".join(
                f"b{i}: &b{i} [{','.join(['*' + ('a' if i == 0 else f'b{i - 1}')] * 10)}]\n"
                for i in range(12)
            )
        ).encode(),
        "specs/bad.yaml:1:24: document expands to more than 50000 values",
    ),
    (
        "deep nesting",
        b"a: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
        "specs/bad.yaml:1:36: document is nested too deeply",
    ),
    (
        "deep block nesting",
        "".join("  " * i + f"k{i}:\n" for i in range(200)).encode(),
        "specs/bad.yaml:66:131: document is nested too deeply",
    ),
    (
        "too large",
        b"a: " + b"x" * (1024 * 1024 + 1) + b"\n",
        "specs/bad.yaml: file is 1048581 bytes",
    ),
    (
        "scalar document",
        b"just a string\n",
        "specs/bad.yaml:1:1: a spec document must be a mapping",
    ),
    (
        "non-string key",
        b"apiVersion: ecs-reconciler/v1alpha1\n1: x\n",
        "specs/bad.yaml:2:1: mapping key 1 is not a string",
    ),
]


@pytest.mark.parametrize(
    ("content", "expected"), [(c, e) for _, c, e in BAD_FILES], ids=[d for d, _, _ in BAD_FILES]
)
def test_bad_file_gives_a_located_error(spec_dir, content, expected):
    root = spec_dir({"bad.yaml": content})
    errors = errors_of(root)
    assert any(e.startswith(expected) for e in errors), errors


def test_all_errors_of_a_run_are_reported(spec_dir):
    broken_pool = replace(replace(POOL, "cpu: 1024", "cpu: x"), "max: 10", "max: -1")
    root = spec_dir(
        {"a.yaml": broken_pool, "b.yaml": b"x: [\n", "providers.yaml": CAPACITY_PROVIDER}
    )
    errors = errors_of(root)
    assert any("spec.resources.cpu" in e for e in errors)
    assert any("spec.scaling.max" in e for e in errors)
    assert any(e.startswith("specs/b.yaml") for e in errors)


def test_duplicate_names_report_both_locations(spec_dir):
    root = spec_dir({"a.yaml": POOL, "b/c.yaml": POOL, "providers.yaml": CAPACITY_PROVIDER})
    errors = errors_of(root)
    assert errors == [
        "specs/b/c.yaml:4:3: metadata.name: RunnerPool 'pool-a' is defined twice: here and at "
        "specs/a.yaml:4:3; names are unique per kind"
    ]


def test_capacity_provider_of_another_cluster(spec_dir):
    root = spec_dir(
        {"a.yaml": POOL, "providers.yaml": replace(CAPACITY_PROVIDER, "cluster: ci", "cluster: x")}
    )
    [error] = errors_of(root)
    assert error.startswith("specs/a.yaml:22:3: spec.capacityProvider: CapacityProvider 'linux'")
    assert "belongs to cluster 'x'" in error


def test_two_capacity_providers_on_one_group(spec_dir):
    second = replace(CAPACITY_PROVIDER, "name: linux", "name: linux-2")
    root = spec_dir({"providers.yaml": CAPACITY_PROVIDER + "---\n" + second})
    [error] = errors_of(root)
    assert (
        "specs/providers.yaml:15:3: spec.autoScalingGroup: Auto Scaling group 'ci-linux'" in error
    )


def test_capacity_provider_name_reserved_by_ecs(spec_dir):
    root = spec_dir({"p.yaml": replace(CAPACITY_PROVIDER, "name: linux", "name: ecs-linux")})
    [error] = errors_of(root)
    assert error.startswith("specs/p.yaml:4:3: metadata.name: ECS refuses")


def test_hostile_strings_are_escaped_in_messages(spec_dir):
    hostile = replace(POOL, "name: pool-a", 'name: "pool\\e[31m\\nrm -rf /"')
    root = spec_dir({"a.yaml": hostile, "providers.yaml": CAPACITY_PROVIDER})
    [error] = errors_of(root)
    assert "\x1b" not in error and "\n" not in error
    assert "metadata.name" in error


def test_missing_path_is_an_error(tmp_path):
    spec_set = load_specs([tmp_path / "nope"])
    assert [d.message for d in spec_set.errors] == ["no such file or directory"]


def test_multi_document_file_and_empty_documents(spec_dir):
    root = spec_dir({"all.yaml": "---\n" + POOL + "---\n# nothing here\n---\n" + CAPACITY_PROVIDER})
    spec_set = load_specs([root])
    assert spec_set.ok, spec_set.diagnostics
    assert [type(r.resource).__name__ for r in spec_set.resources] == [
        "RunnerPool",
        "CapacityProvider",
    ]


def test_errors_mark_their_files(spec_dir):
    root = spec_dir({"good.yaml": POOL, "bad.yaml": b"x: [\n", "providers.yaml": CAPACITY_PROVIDER})
    spec_set = load_specs([root], base=root.parent)
    assert spec_set.files_with_errors == {"specs/bad.yaml"}
    assert [p.metadata.name for p in spec_set.pools] == ["pool-a"]
