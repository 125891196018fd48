"""Shared fixtures: a valid spec text to mutate, and helpers to write spec trees."""

from __future__ import annotations

from pathlib import Path

import pytest

DIGEST = "sha256:" + "a" * 64

CAPACITY_PROVIDER = """\
apiVersion: ecs-reconciler/v1alpha1
kind: CapacityProvider
metadata:
  name: linux
spec:
  cluster: ci
  autoScalingGroup: ci-linux
"""

POOL = f"""\
apiVersion: ecs-reconciler/v1alpha1
kind: RunnerPool
metadata:
  name: pool-a
spec:
  cluster: ci
  scope:
    organization: acme
  labels: [self-hosted, linux]
  runner:
    version: 2.328.0
    image: ghcr.io/acme/runner:2.328.0@{DIGEST}
  docker:
    mode: dind
    image: docker:27-dind@{DIGEST}
  resources:
    cpu: 1024
    memory: 2048
  network:
    subnets: [subnet-0123456789abcdef0]
    securityGroups: [sg-0123456789abcdef0]
  capacityProvider: linux
  scaling:
    min: 0
    max: 10
    idle: 1
"""


@pytest.fixture
def spec_dir(tmp_path: Path):
    """A function writing {relative name: text} into a fresh specs directory."""

    def write(files: dict[str, str]) -> Path:
        root = tmp_path / "specs"
        root.mkdir(exist_ok=True)
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return root

    return write
