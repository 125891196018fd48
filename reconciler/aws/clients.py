"""boto3 clients for ECS, EC2 and Auto Scaling: one session, adaptive retries, call counts,
and a read-only mode that refuses every mutating operation before it is sent.

Every attempt of a mutating operation passes `fencing.check` first (botocore's `before-send`
event fires once per HTTP attempt), with the attempt's worst case: connect + read timeout.
So the timeouts are short (1 s + 4 s: an attempt lands or is given up within 5 s, well
inside the lease's 10 s renew deadline); adaptive retries (8 attempts) still ride out
throttling, each attempt fenced again after its backoff.

Standard AWS configuration is honoured as boto3 reads it (region, profile, credentials,
`AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_ECS`, ...); the sandbox works by setting the endpoint,
and may give one service an endpoint of its own (`service_endpoints`, as
`AWS_ENDPOINT_URL_<SERVICE>` does for the SDKs: DynamoDB in its own moto process).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Mapping
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config

from .. import __version__, fencing
from ..counting import CallCounter

READ_OPERATION_PREFIXES = ("Describe", "List", "Get")
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_CONNECT_TIMEOUT = 1.0  # seconds
DEFAULT_READ_TIMEOUT = 4.0  # seconds; botocore's default is 60

#: One loader of service models for every session: it keeps what it parsed (EC2's model alone
#: is megabytes), so a new `AwsClients` costs ~40 ms of CPU instead of ~400 ms. Sessions, and
#: so credentials and profiles, stay separate; a race between two threads loading the same
#: model only parses it twice.
_SERVICE_MODELS = botocore.loaders.create_loader()
_SESSION_LOCK = threading.Lock()


def is_mutating(operation: str) -> bool:
    """True for an operation that changes something (not Describe/List/Get)."""
    return not operation.startswith(READ_OPERATION_PREFIXES)


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
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        service_endpoints: Mapping[str, str] | None = None,
    ) -> None:
        """`credentials` (key ID, secret) are for the sandbox only; AWS uses its own chain.
        `service_endpoints`: an endpoint URL per service name (boto3's, e.g. "dynamodb") that
        overrides `endpoint_url` for that service."""
        key_id, secret = credentials or (None, None)
        core = botocore.session.Session()
        core.register_component("data_loader", _SERVICE_MODELS)
        session = boto3.session.Session(
            botocore_session=core,
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
        self.calls = CallCounter()
        # the worst case of one attempt of a call: how long the lease must still be ours
        self.attempt_budget = connect_timeout + read_timeout
        config = Config(
            retries={"mode": "adaptive", "max_attempts": max_attempts},
            user_agent_extra=f"ecs-reconciler/{__version__}",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # the bind workers (8 by default) and RunTask threads (4) share each client: with
            # botocore's 10 connections a burst opened and discarded connections all along
            max_pool_connections=32,
        )
        options: dict[str, Any] = {"config": config}
        if endpoint_url:
            options["endpoint_url"] = endpoint_url
        self._session, self._options = session, options
        self._service_endpoints = dict(service_endpoints or {})

    # boto3 clients are dynamic; typed as Any rather than through generated stubs. Each is made
    # when first used (making one costs ~15 ms of CPU; many users need only ECS).

    @functools.cached_property
    def ecs(self) -> Any:
        """ECS, counted (and fenced, refused when read-only) like every client of these."""
        return self.client("ecs")

    @functools.cached_property
    def ec2(self) -> Any:
        """EC2, counted like `ecs`."""
        return self.client("ec2")

    @functools.cached_property
    def autoscaling(self) -> Any:
        """EC2 Auto Scaling, counted like `ecs`."""
        return self.client("autoscaling")

    def client(self, service: str, region: str | None = None, config: Config | None = None) -> Any:
        """Another client from the same session and configuration, counted the same way.

        `region` overrides the session's, for resources named by ARN in another region;
        `config` overrides parts of the configuration (timeouts, retries).
        """
        options = dict(self._options)
        if config is not None:
            options["config"] = options["config"].merge(config)
        if service in self._service_endpoints:
            options["endpoint_url"] = self._service_endpoints[service]
        with _SESSION_LOCK:  # sessions are not thread-safe
            client = self._session.client(service, region_name=region, **options)
        self._instrument(client)
        return client

    def _instrument(self, client: Any) -> None:
        client.meta.events.register("before-call", self._before_call)
        client.meta.events.register("before-send", self._before_send)

    def _before_call(self, model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        operation = model.name
        if self.read_only and is_mutating(operation):
            raise MutationRefused(
                f"{service}:{operation} refused: these clients are read-only (plan never mutates)"
            )
        self.calls.add(f"{service}:{operation}")

    def _before_send(self, event_name: str, **_: Any) -> None:
        """Each HTTP attempt of a mutating operation passes the fence (see module doc)."""
        service, operation = event_name.split(".", 2)[1:]
        if is_mutating(operation):
            fencing.check(f"{service}:{operation}", self.attempt_budget)

    def total_calls(self) -> int:
        """All AWS API calls made so far (retries not counted)."""
        return self.calls.total()
