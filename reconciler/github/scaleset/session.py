"""A scale set's message session: the long poll, acknowledgements and job acquisition.

After actions/scaleset ``session_client.go``; on the Actions service, as admin::

    POST   _apis/runtime/runnerscalesets/{id}/sessions         {"ownerName"} -> 200 session
           409 RunnerScaleSetSessionConflictException when one is active (`SessionConflict`)
    PATCH  _apis/runtime/runnerscalesets/{id}/sessions/{sid}   200: a fresh queue token
    DELETE _apis/runtime/runnerscalesets/{id}/sessions/{sid}   204

and with ``Authorization: Bearer <messageQueueAccessToken>``::

    GET    {messageQueueUrl}?lastMessageId={n}                  the long poll: 200 message,
           Accept: application/json; api-version=6.0-preview    202 when none came (no body)
           X-ScaleSetMaxCapacity: {max runners}
    DELETE {messageQueueUrl}/{messageId}                        204: the acknowledgement
    POST   _apis/runtime/runnerscalesets/{id}/acquirejobs       [ids] -> {count, value: [ids]}
           (on the Actions service, with the queue token)

The queue URL is a full URL from the session, on another host than the Actions service. A
401 on the queue token refreshes the session (PATCH) and retries once, as upstream. A message
not deleted is delivered again, to this or the next session: acknowledge only once it is
recorded. Not thread-safe: one listener thread owns a session.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .client import SCALE_SETS, ScaleSetClient
from .errors import ActionsServiceError, QueueTokenExpired
from .messages import MessageFormatError, ScaleSetMessage, Statistics, parse_message

logger = logging.getLogger(__name__)

MAX_CAPACITY_HEADER = "X-ScaleSetMaxCapacity"
QUEUE_ACCEPT = "application/json; api-version=6.0-preview"


@dataclass(frozen=True)
class SessionInfo:
    """``RunnerScaleSetSession``: the queue URL and its token (secret) are what matter."""

    session_id: str
    owner_name: str
    message_queue_url: str
    message_queue_access_token: str = field(repr=False)
    statistics: Statistics = field(default_factory=Statistics)

    @classmethod
    def from_api(cls, data: Any) -> SessionInfo:
        """Parse a session; a session without a queue URL or token is an error."""
        if not isinstance(data, dict):
            raise MessageFormatError("session: expected an object")
        for key in ("sessionId", "messageQueueUrl", "messageQueueAccessToken"):
            if not data.get(key):
                raise MessageFormatError(f"session.{key}: missing")
        return cls(
            str(data["sessionId"]),
            str(data.get("ownerName") or ""),
            str(data["messageQueueUrl"]),
            str(data["messageQueueAccessToken"]),
            Statistics.from_api(data.get("statistics")),
        )


class MessageSession:
    """The one message session of a scale set, opened by `open`."""

    def __init__(self, client: ScaleSetClient, scale_set_id: int, info: SessionInfo) -> None:
        self.client = client
        self.scale_set_id = scale_set_id
        self.info = info
        self.refreshes = 0

    @classmethod
    def open(cls, client: ScaleSetClient, scale_set_id: int, owner: str) -> MessageSession:
        """Create the session; `SessionConflict` if another owner holds one."""
        path = f"{SCALE_SETS}/{int(scale_set_id)}/sessions"
        body = client._request(
            "POST", f"POST /{SCALE_SETS}/{{id}}/sessions", path, json={"ownerName": owner}
        )
        return cls(client, scale_set_id, SessionInfo.from_api(body))

    @property
    def statistics(self) -> Statistics:
        """The statistics the session was opened (or last refreshed) with."""
        return self.info.statistics

    def refresh(self) -> None:
        """PATCH the session: a new queue token (after a 401 on the old one)."""
        path = f"{SCALE_SETS}/{self.scale_set_id}/sessions/{self.info.session_id}"
        body = self.client._request("PATCH", f"PATCH /{SCALE_SETS}/{{id}}/sessions/{{sid}}", path)
        self.info = SessionInfo.from_api(body)
        self.refreshes += 1
        logger.info("scale set %d: message session refreshed", self.scale_set_id)

    def close(self) -> None:
        """DELETE the session so another owner can open one at once."""
        path = f"{SCALE_SETS}/{self.scale_set_id}/sessions/{self.info.session_id}"
        self.client._request("DELETE", f"DELETE /{SCALE_SETS}/{{id}}/sessions/{{sid}}", path)

    def get_message(self, last_message_id: int, max_capacity: int) -> ScaleSetMessage | None:
        """Long-poll the queue: the oldest unacknowledged message after `last_message_id`, or
        None when the service answered 202 (nothing within its poll window)."""
        if max_capacity < 0:
            raise ValueError(f"max_capacity must be >= 0, got {max_capacity}")
        return self._with_refresh(lambda: self._get_message(last_message_id, max_capacity))

    def delete_message(self, message_id: int) -> None:
        """Acknowledge a message: it will not be delivered again."""
        self._with_refresh(lambda: self._delete_message(message_id))

    def acquire_jobs(self, request_ids: list[int]) -> list[int]:
        """Acquire available jobs for this scale set; returns the ids acquired."""
        if not request_ids:
            return []
        return self._with_refresh(lambda: self._acquire_jobs(request_ids))

    # -- one attempt each ----------------------------------------------------------------------

    def _with_refresh(self, call: Any) -> Any:
        try:
            return call()
        except QueueTokenExpired:
            self.refresh()
            return call()

    def _get_message(self, last_message_id: int, max_capacity: int) -> ScaleSetMessage | None:
        endpoint = "GET {messageQueueUrl}"
        url = self.info.message_queue_url
        if last_message_id > 0:
            url += ("&" if "?" in url else "?") + f"lastMessageId={int(last_message_id)}"
        response = self.client.send(
            "GET",
            endpoint,
            url,
            f"Bearer {self.info.message_queue_access_token}",
            headers={"Accept": QUEUE_ACCEPT, MAX_CAPACITY_HEADER: str(int(max_capacity))},
            timeout=self.client.poll_timeout,
        )
        if response.status_code == 202:
            return None
        if response.status_code == 401:
            raise QueueTokenExpired(401, "GET", endpoint, "message queue token expired")
        if response.status_code != 200:
            self.client.answer(response, "GET", endpoint)
            raise ActionsServiceError(response.status_code, "GET", endpoint, "unexpected status")
        return parse_message(response.json())

    def _delete_message(self, message_id: int) -> None:
        endpoint = "DELETE {messageQueueUrl}/{messageId}"
        base, _, query = self.info.message_queue_url.partition("?")
        url = f"{base.rstrip('/')}/{int(message_id)}" + (f"?{query}" if query else "")
        response = self.client.send(
            "DELETE", endpoint, url, f"Bearer {self.info.message_queue_access_token}"
        )
        if response.status_code == 401:
            raise QueueTokenExpired(401, "DELETE", endpoint, "message queue token expired")
        if response.status_code != 204:
            self.client.answer(response, "DELETE", endpoint)
            raise ActionsServiceError(response.status_code, "DELETE", endpoint, "expected 204")

    def _acquire_jobs(self, request_ids: list[int]) -> list[int]:
        endpoint = f"POST /{SCALE_SETS}/{{id}}/acquirejobs"
        connection = self.client.admin_connection()
        url = self.client.service_url(
            connection.url, f"{SCALE_SETS}/{self.scale_set_id}/acquirejobs"
        )
        response = self.client.send(
            "POST",
            endpoint,
            url,
            f"Bearer {self.info.message_queue_access_token}",
            json=[int(i) for i in request_ids],
        )
        if response.status_code == 401:
            raise QueueTokenExpired(401, "POST", endpoint, "message queue token expired")
        body = self.client.answer(response, "POST", endpoint)
        return [int(i) for i in (body or {}).get("value") or []]
