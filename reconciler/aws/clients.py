"""boto3 clients for ECS, EC2 and Auto Scaling: one session, adaptive retries, call counts,
and a read-only mode that refuses every mutating operation before it is sent.

Standard AWS configuration is honoured as boto3 reads it (region, profile, credentials,
`AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_ECS`, ...); the sandbox works by setting the endpoint.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import boto3
from botocore.config import Config

from .. import __version__

READ_OPERATION_PREFIXES = ("Describe", "List", "Get")
DEFAULT_MAX_ATTEMPTS = 8


class MutationRefused(RuntimeError):
    """A mutating AWS operation was attempted through read-only clients."""


class AwsConfigurationError(RuntimeError):
    """AWS is not configured well enough to start (for example, no region)."""


class AwsClients:
    """The AWS clients the reconciler uses, with per-operation call counting."""

    def __init__(
        self,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        read_only: bool = False,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        """`credentials` (key ID, secret) are for the sandbox only; AWS uses its own chain."""
        key_id, secret = credentials or (None, None)
        session = boto3.session.Session(
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            profile_name=profile,
            # AWS_REGION is what the AWS SDKs and CLI v2 read; botocore knows AWS_DEFAULT_REGION.
            region_name=region or os.environ.get("AWS_REGION") or None,
        )
        if not session.region_name:
            raise AwsConfigurationError(
                "no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION, a profile "
                "region, or --region)"
            )
        self.region: str = session.region_name
        self.read_only = read_only
        self.calls: Counter[str] = Counter()
        config = Config(
            retries={"mode": "adaptive", "max_attempts": max_attempts},
            user_agent_extra=f"ecs-reconciler/{__version__}",
        )
        options: dict[str, Any] = {"config": config}
        if endpoint_url:
            options["endpoint_url"] = endpoint_url
        # boto3 clients are dynamic; typed as Any rather than through generated stubs.
        self.ecs: Any = session.client("ecs", **options)
        self.ec2: Any = session.client("ec2", **options)
        self.autoscaling: Any = session.client("autoscaling", **options)
        for client in (self.ecs, self.ec2, self.autoscaling):
            client.meta.events.register("before-call", self._before_call)
        self._session, self._options = session, options

    def client(self, service: str, region: str | None = None, config: Config | None = None) -> Any:
        """Another client from the same session and configuration, counted the same way.

        `region` overrides the session's, for resources named by ARN in another region;
        `config` overrides parts of the configuration (timeouts, retries).
        """
        options = dict(self._options)
        if config is not None:
            options["config"] = options["config"].merge(config)
        client = self._session.client(service, region_name=region, **options)
        client.meta.events.register("before-call", self._before_call)
        return client

    def _before_call(self, model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        operation = model.name
        if self.read_only and not operation.startswith(READ_OPERATION_PREFIXES):
            raise MutationRefused(
                f"{service}:{operation} refused: these clients are read-only (plan never mutates)"
            )
        self.calls[f"{service}:{operation}"] += 1

    def total_calls(self) -> int:
        """All AWS API calls made so far (retries not counted)."""
        return sum(self.calls.values())
