"""GitHub REST API access: credentials (`auth`) and the runner-management client (`client`)."""

from .auth import AppAuth, AuthConfigError, TokenAuth, auth_from_environment
from .client import (
    GitHubClient,
    GitHubError,
    JitConfig,
    RateLimited,
    Release,
    Runner,
    RunnerBusy,
    RunnerGroupNotFound,
    Scope,
)

__all__ = [
    "AppAuth",
    "AuthConfigError",
    "GitHubClient",
    "GitHubError",
    "JitConfig",
    "RateLimited",
    "Release",
    "Runner",
    "RunnerBusy",
    "RunnerGroupNotFound",
    "Scope",
    "TokenAuth",
    "auth_from_environment",
]
