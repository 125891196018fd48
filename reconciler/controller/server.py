"""The controller's HTTP listener: /healthz, /readyz, /status (JSON), /metrics, POST /webhook.

A small threaded stdlib server bound to `--listen` (default 127.0.0.1:8080). It reads the
status board and the metrics registry; `POST /webhook` hands deliveries to the webhook
receiver (when one is configured), which checks them before anything else sees them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..demand import WebhookReceiver
from .status import StatusBoard

log = logging.getLogger(__name__)


class ControllerServer:
    """Serves the status board (and metrics, when given) until `close()`."""

    def __init__(
        self,
        host: str,
        port: int,
        status: StatusBoard,
        healthy: Callable[[], bool],
        metrics: Callable[[], tuple[bytes, str]] | None = None,
        webhooks: WebhookReceiver | None = None,
    ) -> None:
        handler = _handler(status, healthy, metrics, webhooks)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    @property
    def address(self) -> str:
        """host:port actually bound (port 0 picks a free one)."""
        host, port = self.httpd.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        """Start serving in a background thread."""
        self.thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(
    status: StatusBoard,
    healthy: Callable[[], bool],
    metrics: Callable[[], tuple[bytes, str]] | None,
    webhooks: WebhookReceiver | None,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/webhook" or webhooks is None:
                self._send(404, b"not found\n", "text/plain")
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._send(411, b"Content-Length required\n", "text/plain")
                return
            if length < 0 or length > webhooks.max_body:
                webhooks.counts["too_large"] += 1
                self._send(413, b"body too large\n", "text/plain")
                return
            try:
                result = webhooks.handle(dict(self.headers.items()), self.rfile.read(length))
            except Exception:  # the demand store failed: GitHub redelivers on 5xx
                log.exception("webhook delivery not recorded")
                webhooks.counts["store_error"] += 1
                self._send(500, b"not recorded, retry\n", "text/plain")
                return
            self._send(result.status, result.message.encode() + b"\n", "text/plain")

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                ok = healthy()
                self._send(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n", "text/plain")
            elif path == "/readyz":
                ready = status.ready
                self._send(
                    200 if ready else 503, b"ready\n" if ready else b"not ready\n", "text/plain"
                )
            elif path == "/status":
                body = json.dumps(status.to_json(), indent=2).encode() + b"\n"
                self._send(200, body, "application/json")
            elif path == "/metrics" and metrics is not None:
                body, content_type = metrics()
                self._send(200, body, content_type)
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    return Handler
