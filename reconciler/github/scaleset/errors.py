"""Errors of the Actions service (scale sets, sessions, message queue), by what to do next.

The service answers errors as ``{"typeName": "GitHub.Actions.Runtime.WebApi.X, ...",
"message": "..."}`` (actions/scaleset ``errors.go``); the exception's short name decides the
class, with the status, because upstream matches on both.
"""

from __future__ import annotations


class ActionsServiceError(Exception):
    """The Actions service answered an error (``status`` 0: no answer, a network error)."""

    def __init__(
        self, status: int, method: str, endpoint: str, message: str, type_name: str = ""
    ) -> None:
        super().__init__(status, method, endpoint, message, type_name)
        self.status = status
        self.method = method
        self.endpoint = endpoint
        self.message = message
        self.type_name = type_name

    def __str__(self) -> str:
        what = "network error" if self.status == 0 else f"HTTP {self.status}"
        exception = f" ({self.type_name.split(',')[0]})" if self.type_name else ""
        return f"{self.method} {self.endpoint}: {what}{exception}: {self.message}"

    def is_exception(self, short_name: str) -> bool:
        """Whether GitHub named this exception (``AgentExistsException`` etc.)."""
        return short_name in self.type_name


class SessionConflict(ActionsServiceError):
    """409 ``RunnerScaleSetSessionConflictException``: another owner holds the scale set's
    message session. Wait it out (it ends when its holder closes it or it expires)."""


class QueueTokenExpired(ActionsServiceError):
    """401 from the message queue or ``acquirejobs``: refresh the session and retry once."""


class RunnerExists(ActionsServiceError):
    """409 ``AgentExistsException`` from ``generatejitconfig``: a runner has that name."""


class ScaleSetNotFound(ActionsServiceError):
    """404 for a scale set (deleted: GitHub removes scale sets idle for 7 days)."""


def classify(
    status: int, method: str, endpoint: str, message: str, type_name: str
) -> ActionsServiceError:
    """The most specific error for an answer."""
    cls: type[ActionsServiceError] = ActionsServiceError
    if status == 409 and "RunnerScaleSetSessionConflictException" in type_name:
        cls = SessionConflict
    elif status == 409 and "AgentExistsException" in type_name:
        cls = RunnerExists
    elif status == 404 and "/runnerscalesets/" in endpoint:
        cls = ScaleSetNotFound
    return cls(status, method, endpoint, message, type_name)
