"""`verify`, image verification in `plan` / `apply`, and the sandbox's ECR and ECS agent.

Against moto over HTTP (the `sandbox` fixture) and a tiny local registry on a real socket.
The sandbox world is offline: the CLI runs with HTTPS_PROXY pointing at a closed port, so
public registries are unreachable even on a machine with internet access.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from reconciler.aws.clients import AwsClients
from reconciler.sandbox.agent import CRASH
from reconciler.sandbox.infrastructure import push_image
from reconciler.sandbox.scenario import Sandbox
from reconciler.verify.images import ImageReference, ImageVerifier

from .conftest import edit, run_cli

pytestmark = pytest.mark.e2e  # starts servers or processes

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
PUSHED = f"{ECR}/actions-runner:2.328.0@sha256:{'1' * 64}"
MISSING_DIGEST = f"{ECR}/actions-runner:2.328.0@sha256:{'2' * 64}"
EXAMPLE_RUNNER = (
    "ghcr.io/acme/actions-runner:2.328.0@sha256:"
    "3f1a8c9e2b7d4f6a0c5e8b1d9a2f4c6e8b0d2f4a6c8e0b2d4f6a8c0e2b4d6f8a"
)


def cli(sandbox: Sandbox, specs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI against the sandbox, with public registries unreachable."""
    env = {
        **os.environ,
        **sandbox.environment(),
        "HTTPS_PROXY": f"http://127.0.0.1:{closed_port()}",
    }
    return run_cli(*args, "--specs", str(specs), env=env, timeout=120)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ------------------------------------------------------------------ ecs-reconciler verify


def test_verify_passes_on_the_example_specs(sandbox: Sandbox, specs: Path) -> None:
    result = cli(sandbox, specs, "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RunnerPool/enterprise-linux-large" in result.stdout
    assert "  LogGroup[/ecs-reconciler/runners] --> [OK]" in result.stdout
    assert "Secret[NPM_TOKEN: arn:aws:secretsmanager:" in result.stdout
    assert f"Image[runner: {EXAMPLE_RUNNER}] --> [SKIP] registry ghcr.io unreachable" in (
        result.stdout
    )
    assert "Verify OK (" in result.stdout
    report = json.loads(cli(sandbox, specs, "verify", "--format", "json").stdout)
    assert report["ok"] is True
    assert report["summary"]["failed"] == 0 and report["summary"]["skipped"] == 5
    # each role, log group and registry is asked once, however many pools share it
    assert report["calls"]["iam:GetRole"] == 2
    assert report["calls"]["logs:DescribeLogGroups"] == 1
    assert report["calls"]["registry:ghcr.io"] == 1


def test_verify_fails_naming_each_missing_thing(sandbox: Sandbox, specs: Path) -> None:
    pool = specs / "enterprise-linux-large.yaml"
    edit(pool, EXAMPLE_RUNNER, MISSING_DIGEST)
    edit(pool, "role/ci-runners-task", "role/ci-runners-missing")
    edit(pool, "[ci-runners-private-a, ci-runners-private-c]", "[ci-runners-private-z]")
    edit(pool, "  scaling:\n", "  logging:\n    logGroup: /ci/missing\n  scaling:\n")
    edit(
        pool,
        "  secrets:\n",
        "  secrets:\n    - name: SSM_TOKEN\n"
        "      valueFrom: arn:aws:ssm:us-east-1:123456789012:parameter/ci/missing\n",
    )
    iam = sandbox.server.client("iam")
    iam.create_role(
        RoleName="not-for-ecs",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "sts:AssumeRole",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                    }
                ],
            }
        ),
    )
    edit(specs / "repo-mobile-arm64.yaml", "role/ci-runners-execution", "role/not-for-ecs")
    result = cli(sandbox, specs, "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    failures = result.stdout.split("Verify FAILED")[1]
    assert "RunnerPool/enterprise-linux-large: Image[runner: " in failures
    assert "ECR repository actions-runner does not exist" in failures
    assert "IAM role arn:aws:iam::123456789012:role/ci-runners-missing does not exist" in failures
    assert "CloudWatch log group /ci/missing does not exist" in failures
    assert "no subnet has the ID or the (unique) Name tag 'ci-runners-private-z'" in failures
    assert "SSM parameter /ci/missing does not exist in us-east-1" in failures
    assert "Secret[NPM_TOKEN: " not in failures
    assert "role/not-for-ecs cannot be assumed by ECS tasks" in failures
    assert "RunnerPool/platform-linux-dind" not in failures
    assert "--> [NG]" in result.stdout

    push_image(sandbox.endpoint_url, PUSHED)
    digest_missing = cli(sandbox, specs, "verify")
    assert f"digest sha256:{'2' * 64} not found in ECR repository actions-runner" in (
        digest_missing.stdout
    )


# ------------------------------------------------------------------ plan / apply refuse


def test_plan_and_apply_refuse_a_missing_ecr_digest(sandbox: Sandbox, specs: Path) -> None:
    push_image(sandbox.endpoint_url, PUSHED)
    pool = specs / "org-platform-dind.yaml"
    edit(pool, EXAMPLE_RUNNER, MISSING_DIGEST)
    plan = cli(sandbox, specs, "plan")
    assert plan.returncode == 1, plan.stdout + plan.stderr
    assert (
        f"x pool platform-linux-dind: image {MISSING_DIGEST} (runner): digest sha256:{'2' * 64} "
        "not found in ECR repository actions-runner; refusing to roll out" in plan.stdout
    )
    assert "! pool platform-linux-dind: image docker:27.3-dind" in plan.stdout  # unreachable

    apply = cli(sandbox, specs, "apply", "--auto-approve")
    assert apply.returncode == 1
    assert "image of a new revision is missing (see Notes); nothing is applied" in apply.stdout
    ecs = sandbox.clients().ecs
    assert ecs.list_task_definition_families(familyPrefix="ecs-reconciler-")["families"] == []
    cluster = ecs.describe_clusters(clusters=["ci-runners"])["clusters"][0]
    assert not cluster.get("capacityProviders"), "nothing at all is applied, not even other pools"
    assert ecs.list_tasks(cluster="ci-runners")["taskArns"] == []

    edit(pool, MISSING_DIGEST, PUSHED)
    fixed = cli(sandbox, specs, "plan", "--format", "json")
    assert fixed.returncode == 2, fixed.stdout + fixed.stderr
    errors = [n for n in json.loads(fixed.stdout)["notes"] if n["severity"] == "error"]
    assert errors == []


# ------------------------------------------------------------------ the sandbox's ECS agent


def run_task(sandbox: Sandbox, image: str) -> str:
    ecs = sandbox.server.client("ecs")
    family = "agent-" + ImageReference.parse(image).digest[-6:]  # type: ignore[index]
    ecs.register_task_definition(
        family=family,
        containerDefinitions=[{"name": "runner", "image": image, "memory": 256}],
    )
    task = ecs.run_task(cluster="ci-runners", taskDefinition=family)["tasks"][0]
    return str(task["taskArn"])


def stopped_reason(sandbox: Sandbox, task_arn: str) -> str | None:
    task = sandbox.server.client("ecs").describe_tasks(cluster="ci-runners", tasks=[task_arn])
    found = task["tasks"][0]
    return found.get("stoppedReason") if found["lastStatus"] == "STOPPED" else None


def test_agent_fails_unpullable_images_and_crashes_marked_ones(sandbox: Sandbox) -> None:
    crashing = f"{ECR}/actions-runner:broken@sha256:{'3' * 64}"
    for image in (PUSHED, crashing):
        push_image(sandbox.endpoint_url, image)
    sandbox.agent.crash_image(crashing)
    healthy, missing, crashes = (run_task(sandbox, i) for i in (PUSHED, MISSING_DIGEST, crashing))

    sandbox.tick()
    reason = stopped_reason(sandbox, missing)
    assert reason is not None and reason.startswith("CannotPullContainerError: ")
    assert MISSING_DIGEST in reason
    assert stopped_reason(sandbox, crashes) is None, "it starts before it crashes"

    sandbox.tick()
    assert stopped_reason(sandbox, crashes) == CRASH
    assert stopped_reason(sandbox, healthy) is None


# ------------------------------------------------------------------ other registries


class _Registry(BaseHTTPRequestHandler):
    """HEAD /v2/<name>/manifests/<ref>, behind the Bearer token flow, like Docker Hub."""

    manifests = {("acme/runner", f"sha256:{'4' * 64}"), ("acme/runner", "2.328.0")}
    requests: list[str] = []

    def do_GET(self) -> None:
        self.requests.append(f"GET {self.path}")
        body = json.dumps({"token": "pull-token"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.requests.append(f"HEAD {self.path}")
        if self.headers.get("Authorization") != "Bearer pull-token":
            host, port = self.server.server_address[:2]
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate",
                f'Bearer realm="http://{host}:{port}/token",service="local"',
            )
            self.end_headers()
            return
        _, _, name_and_ref = self.path.partition("/v2/")
        name, _, reference = name_and_ref.partition("/manifests/")
        found = (name, reference) in self.manifests
        self.send_response(200 if found else 404)
        if found:
            self.send_header("Docker-Content-Digest", f"sha256:{'4' * 64}")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Registry.requests.clear()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_registry_manifest_checks(registry: str) -> None:
    clients = AwsClients(region="us-east-1", credentials=("x", "x"))
    images = ImageVerifier(clients)
    found = images.check(f"{registry}/acme/runner:2.328.0@sha256:{'4' * 64}")
    assert found.status == "ok", found
    assert images.check(f"{registry}/acme/runner:2.328.0").status == "ok"
    missing = images.check(f"{registry}/acme/runner:2.328.0@sha256:{'5' * 64}")
    assert missing.status == "failed"
    assert f"acme/runner@sha256:{'5' * 64} not found in {registry} (HTTP 404)" in missing.detail
    unreachable = images.check(f"127.0.0.1:{closed_port()}/acme/runner:1.0")
    assert unreachable.status == "skipped" and "unreachable" in unreachable.detail
    # one token, then one HEAD per image; a second check of an image asks nothing
    assert sum(r.startswith("GET /token") for r in _Registry.requests) == 1
    before = len(_Registry.requests)
    images.check(f"{registry}/acme/runner:2.328.0")
    assert len(_Registry.requests) == before
    assert not clients.calls, "no AWS call for images outside ECR"
    images.registry.close()


@pytest.mark.parametrize(
    ("reference", "host", "name", "ecr"),
    [
        ("docker:27-dind", "docker.io", "library/docker", None),
        ("acme/runner:1", "docker.io", "acme/runner", None),
        ("ghcr.io/acme/runner:1", "ghcr.io", "acme/runner", None),
        ("localhost:5000/runner:1", "localhost:5000", "runner", None),
        (f"{ECR}/team/runner:1", ECR, "team/runner", ("123456789012", "us-east-1")),
    ],
)
def test_image_references(reference: str, host: str, name: str, ecr: object) -> None:
    image = ImageReference.parse(reference)
    assert (image.host, image.name, image.ecr) == (host, name, ecr)
