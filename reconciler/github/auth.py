"""Credentials for the GitHub REST API: a static token, or a GitHub App installation.

`TokenAuth` sends a personal access token or ``GITHUB_TOKEN``. `AppAuth` signs an RS256 JWT
as the App, exchanges it for an installation access token and caches that token until less
than `REFRESH_MARGIN` seconds remain before its ``expires_at``. Secrets never appear in reprs.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..clock import WallClock, wall_time

#: Refresh an installation token when fewer than this many seconds remain before it expires.
REFRESH_MARGIN = 300.0

#: Posts to an App endpoint with a JWT: ``(endpoint template, path, jwt) -> JSON body``.
AppPost = Callable[[str, str, str], Any]


class AuthConfigError(ValueError):
    """The environment does not describe usable GitHub credentials."""


class Auth(Protocol):
    """Something that produces the ``Authorization`` header value for a request."""

    def authorization(self, app_post: AppPost) -> str:
        """Header value; `app_post` lets App credentials fetch an installation token."""
        ...


class TokenAuth:
    """A static token (``GITHUB_TOKEN`` or a personal access token)."""

    def __init__(self, token: str) -> None:
        if not token:
            raise AuthConfigError("GitHub token is empty")
        self._token = token

    def __repr__(self) -> str:
        return "TokenAuth(token=***)"

    def authorization(self, app_post: AppPost) -> str:
        """``Bearer <token>``."""
        return f"Bearer {self._token}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def app_jwt(app_id: str, private_key: rsa.RSAPrivateKey, now: float) -> str:
    """An RS256 JWT for the App: issued 60 s in the past (clock skew), valid for 9 minutes."""
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {"iat": int(now) - 60, "exp": int(now) + 540, "iss": app_id}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = private_key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


class AppAuth:
    """A GitHub App installation: JWT -> cached installation access token."""

    def __init__(
        self,
        app_id: str | int,
        private_key_pem: str | bytes,
        installation_id: int,
        clock: WallClock = wall_time,
    ) -> None:
        pem = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise AuthConfigError("GitHub App private key must be an RSA key")
        self.app_id = str(app_id)
        self.installation_id = int(installation_id)
        self._key = key
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def __repr__(self) -> str:
        return f"AppAuth(app_id={self.app_id}, installation_id={self.installation_id})"

    def app_authorization(self) -> str:
        """``Bearer <JWT>``: as the App itself (its webhook's deliveries need this)."""
        return f"Bearer {app_jwt(self.app_id, self._key, self._clock())}"

    def authorization(self, app_post: AppPost) -> str:
        """``Bearer <installation token>``, fetching a new token when near expiry."""
        with self._lock:
            if self._token is None or self._expires_at - self._clock() < REFRESH_MARGIN:
                jwt = app_jwt(self.app_id, self._key, self._clock())
                body = app_post(
                    "POST /app/installations/{installation_id}/access_tokens",
                    f"/app/installations/{self.installation_id}/access_tokens",
                    jwt,
                )
                self._token = str(body["token"])
                self._expires_at = datetime.fromisoformat(body["expires_at"]).timestamp()
            return f"Bearer {self._token}"


def auth_from_environment(env: Mapping[str, str] | None = None) -> Auth:
    """Credentials from ``GITHUB_APP_*`` (preferred when set) or ``GITHUB_TOKEN``.

    ``GITHUB_APP_PRIVATE_KEY`` holds either the PEM text or the path of a PEM file.
    """
    env = os.environ if env is None else env
    app_vars = ("GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_INSTALLATION_ID")
    present = [name for name in app_vars if env.get(name)]
    if present:
        missing = [name for name in app_vars if name not in present]
        if missing:
            raise AuthConfigError(f"GitHub App credentials incomplete: {', '.join(missing)} unset")
        key = env["GITHUB_APP_PRIVATE_KEY"]
        if "-----BEGIN" not in key:
            try:
                key = Path(key).read_text()
            except OSError as exc:
                raise AuthConfigError(
                    f"GITHUB_APP_PRIVATE_KEY is neither PEM text nor a readable file: {exc}"
                ) from exc
        try:
            installation_id = int(env["GITHUB_APP_INSTALLATION_ID"])
        except ValueError as exc:
            raise AuthConfigError("GITHUB_APP_INSTALLATION_ID must be an integer") from exc
        return AppAuth(env["GITHUB_APP_ID"], key, installation_id)
    if env.get("GITHUB_TOKEN"):
        return TokenAuth(env["GITHUB_TOKEN"])
    raise AuthConfigError(
        "no GitHub credentials: set GITHUB_TOKEN, or GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY "
        "and GITHUB_APP_INSTALLATION_ID"
    )
