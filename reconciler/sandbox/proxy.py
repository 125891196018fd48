"""An HTTP proxy in front of the sandbox's AWS endpoint that plays what moto does not: ECS's
eventual consistency, RunTask's client-token idempotency, and RunTask failures after the work.

- ECS documents that its API "follows an eventual consistency model": a task RunTask has
  just started may be missing from the next ListTasks. The proxy remembers the task ARNs
  each RunTask answered with and leaves them out of ListTasks answers while they are hidden
  (until `reveal()`, or for `lag` seconds of its clock).
- "If you retry a request that completed successfully using the same client token and the
  same parameters, the retry succeeds without performing any further actions" (ECS,
  Ensuring idempotency; tokens last 24 hours per cluster): a RunTask whose clientToken was
  seen before gets the first answer again and is not forwarded. moto ignores the token.
- `fail_next_run_tasks(n)`: the next n RunTask requests (distinct tokens) are performed, but
  every attempt of each is answered with HTTP 500 ServerException, as a timeout or server
  error after the work was done looks to a client.
- `latency`: seconds to wait before forwarding a request, by ECS operation (`RunTask`...).

Everything else passes through unchanged. It listens on 127.0.0.1 only.

`ForwardingProxy` is the plain forwarder underneath: any number of listeners (`listen(name)`,
one port each, so that callers can be told apart by the port they use), every request handed
to `handle(listener, ...)`, which by default forwards it upstream. The soak's fault injector
(`chaos.py`) builds on it.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class ForwardingProxy:
    """An HTTP forwarder to `upstream` on 127.0.0.1, with one port per named listener."""

    #: forward the client's Host header (as a reverse proxy can), so that an upstream that
    #: builds URLs from it (GitHub's pagination links) names the proxy, not itself
    preserve_host = False

    def __init__(self, upstream: str, timeout: float = 30.0) -> None:
        self.upstream = urlsplit(upstream)
        self.timeout = timeout
        self._servers: dict[str, _Server] = {}

    @property
    def url(self) -> str:
        """Where the first listener answers (boto3's or httpx's endpoint URL)."""
        assert self._servers, "proxy not started"
        return self.url_of(next(iter(self._servers)))

    def url_of(self, name: str) -> str:
        """Where the listener `name` answers."""
        host, port = self._servers[name].server_address[:2]
        return f"http://{host!s}:{port}"

    def listen(self, name: str = "") -> str:
        """A listener on 127.0.0.1 at a port the OS picks; its requests are handled as
        coming from `name`. Returns its URL."""
        if name in self._servers:
            raise ValueError(f"listener {name!r} exists already")
        handler = type("Handler", (_Handler,), {"owner": self, "listener": name})
        server = _Server(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._servers[name] = server
        return self.url_of(name)

    def start(self) -> Self:
        """One unnamed listener."""
        self.listen()
        return self

    def close(self) -> None:
        """Stop listening."""
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def handle(
        self, listener: str, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        """One request that arrived on `listener`; by default `forward`ed."""
        return self.forward(method, path, headers, body)

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """Send one request upstream unchanged."""
        return self._send(method, path, headers, body)

    def _send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        upstream: str | None = None,
    ) -> Answer:
        """Forward to `upstream` (a base URL; default the proxy's own upstream)."""
        where = urlsplit(upstream) if upstream else self.upstream
        connection = http.client.HTTPConnection(
            where.hostname or "127.0.0.1", where.port, timeout=self.timeout
        )
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            answer = Answer(
                response.status,
                [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP],
                response.read(),
            )
        finally:
            connection.close()
        return answer


class EcsListingLag(ForwardingProxy):
    """A proxy whose ListTasks answers lag behind RunTask by `lag` seconds (inf: until
    `reveal`)."""

    def __init__(
        self, upstream: str, lag: float = math.inf, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(upstream)
        self.lag = lag
        self.clock = clock
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}  # task ARN -> when RunTask answered with it
        self.latency: dict[str, float] = {}  # ECS operation -> seconds before forwarding
        self.hidden_answers = 0  # ListTasks answers that left a task out
        self._tokens: dict[tuple[str, str], bytes] = {}  # (cluster, clientToken) -> answer
        self._failing: set[tuple[str, str]] = set()  # tokens answered with 500
        self._failures_left = 0

    def reveal(self) -> None:
        """Let ListTasks show every task started so far."""
        with self._lock:
            self._started.clear()

    def fail_next_run_tasks(self, count: int) -> None:
        """Perform the next `count` RunTasks but answer every attempt of each with a 500."""
        with self._lock:
            self._failures_left += count

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """Send one request upstream; adjust RunTask / ListTasks answers."""
        target = headers.get("X-Amz-Target", headers.get("x-amz-target", ""))
        delay = self.latency.get(target.removeprefix(ECS_TARGET), 0.0) if target else 0.0
        if delay:
            time.sleep(delay)
        if target == ECS_TARGET + "RunTask":
            return self._run_task(method, path, headers, body)
        answer = self._send(method, path, headers, body)
        if answer.status == 200 and target == ECS_TARGET + "ListTasks":
            answer.body = self._hide(answer.body)
        return answer

    def _run_task(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        request = json.loads(body or b"{}")
        token = (str(request.get("cluster", "default")), str(request.get("clientToken", "")))
        with self._lock:
            earlier = self._tokens.get(token) if token[1] else None
            if earlier is None and token[1] and self._failures_left:
                self._failures_left -= 1
                self._failing.add(token)
            failing = token in self._failing
        if earlier is not None:
            answer = Answer(200, [("Content-Type", "application/x-amz-json-1.1")], earlier)
        else:
            answer = self._send(method, path, headers, body)
            if answer.status == 200:
                self._remember(answer.body)
                if token[1]:
                    with self._lock:
                        self._tokens[token] = answer.body
        if failing:
            error = {"__type": "ServerException", "message": "Internal error (injected)"}
            return Answer(
                500, [("Content-Type", "application/x-amz-json-1.1")], json.dumps(error).encode()
            )
        return answer

    def _remember(self, body: bytes) -> None:
        now = self.clock()
        with self._lock:
            for task in json.loads(body).get("tasks", []):
                self._started[task["taskArn"]] = now

    def _hide(self, body: bytes) -> bytes:
        document = json.loads(body)
        now = self.clock()
        with self._lock:
            hidden = {arn for arn, at in self._started.items() if now - at < self.lag}
        arns = document.get("taskArns", [])
        shown = [arn for arn in arns if arn not in hidden]
        if len(shown) == len(arns):
            return body
        with self._lock:
            self.hidden_answers += 1
        document["taskArns"] = shown
        return json.dumps(document).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed, timed out) is no error of ours."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class Answer:
    """What the proxy answers: a status, headers and a body, or (`reset`) no answer at all:
    the connection is reset."""

    def __init__(
        self, status: int, headers: list[tuple[str, str]], body: bytes, reset: bool = False
    ) -> None:
        self.status, self.headers, self.body, self.reset = status, headers, body, reset


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: ForwardingProxy
    listener: str

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if self.owner.preserve_host and "Host" in self.headers:
            headers["Host"] = self.headers["Host"]
        answer = self.owner.handle(self.listener, self.command, self.path, headers, body)
        if answer.reset:  # RST instead of an answer: SO_LINGER with a zero timeout
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        try:
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except OSError:  # the client gave up (its read timeout): nobody to answer
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""
