"""Does an image a pool names exist? ECR through its API, other registries through HTTP.

ECR (`<account>.dkr.ecr.<region>.amazonaws.com/<repository>`): `ecr:DescribeImages` by digest
(or by tag without one). A missing repository or digest fails; any other AWS error fails too,
since an unverifiable ECR image is a configuration problem, not a network one. Other
registries go through `RegistryClient` (unreachable: skipped). When a reference carries both
a tag and a digest, the digest decides (it is what ECS pulls); a tag that no longer points at
it is reported, not failed. Each image is checked once per `ImageVerifier`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..aws.clients import AwsClients
from ..spec.models import parse_image_reference
from .registry import RegistryClient
from .results import Outcome

ECR_HOST = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$"
)
DOCKER_HUB = "docker.io"


@dataclass(frozen=True)
class ImageReference:
    """`host/name:tag@digest` split the way Docker resolves it (docker.io/library/ default)."""

    text: str
    host: str
    name: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """Split a reference; ValueError when it is not `repository[:tag][@digest]`."""
        repository, tag, digest = parse_image_reference(text)
        first, _, rest = repository.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            host, name = first, rest
        else:
            host, name = DOCKER_HUB, repository if rest else f"library/{repository}"
        return cls(text, host, name, tag, digest)

    @property
    def ecr(self) -> tuple[str, str] | None:
        """(account, region) when the image is in a private ECR registry."""
        match = ECR_HOST.match(self.host)
        return (match["account"], match["region"]) if match else None


def find_ecr_image(ecr: Any, image: ImageReference) -> Outcome:
    """Look the image up with `ecr` (a client of the image's region): ok or failed."""
    account, _ = image.ecr or ("", "")
    image_id = {"imageDigest": image.digest} if image.digest else {"imageTag": image.tag}
    try:
        found = ecr.describe_images(
            registryId=account, repositoryName=image.name, imageIds=[image_id]
        )["imageDetails"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "RepositoryNotFoundException":
            return Outcome("failed", f"ECR repository {image.name} does not exist in {image.host}")
        if code == "ImageNotFoundException":
            wanted = f"digest {image.digest}" if image.digest else f"tag {image.tag}"
            return Outcome("failed", f"{wanted} not found in ECR repository {image.name}")
        return Outcome("failed", f"cannot check in ECR: {error}")
    except BotoCoreError as error:
        return Outcome("failed", f"cannot reach ECR: {error}")
    tags = {tag for detail in found for tag in detail.get("imageTags", [])}
    if image.digest and image.tag and image.tag not in tags:
        return Outcome(
            "ok", f"digest exists; tag {image.tag} points elsewhere now (ECS pulls the digest)"
        )
    return Outcome("ok", "found in ECR")


class ImageVerifier:
    """Checks images against ECR and other registries, each image once."""

    def __init__(self, clients: AwsClients, registry: RegistryClient | None = None) -> None:
        self.clients = clients
        self.registry = registry or RegistryClient()
        self._ecr_by_region: dict[str, Any] = {}
        self._outcomes: dict[str, Outcome] = {}

    def check(self, reference: str) -> Outcome:
        """The outcome for one image reference (cached for the verifier's lifetime)."""
        if reference not in self._outcomes:
            self._outcomes[reference] = self._check(ImageReference.parse(reference))
        return self._outcomes[reference]

    def _check(self, image: ImageReference) -> Outcome:
        location = image.ecr
        if location is None:
            reference = image.digest or image.tag or "latest"
            return self.registry.manifest(image.host, image.name, reference)
        region = location[1]
        if region not in self._ecr_by_region:
            self._ecr_by_region[region] = self.clients.client("ecr", region=region)
        return find_ecr_image(self._ecr_by_region[region], image)
