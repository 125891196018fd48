"""Does a manifest exist in an OCI / Docker registry? One HEAD through the distribution API.

`HEAD /v2/<name>/manifests/<reference>` answers 200 or 404. Registries that want a token
(Docker Hub, ghcr.io, ...) answer 401 with `WWW-Authenticate: Bearer realm=...`; the anonymous
token flow fetches a pull token from that realm and asks again. Anything that does not end in
a clear 200 or 404 (unreachable host, timeout, 5xx, credentials required) is `skipped`: a
registry we cannot ask never blocks a rollout. Read-only; never pulls a blob.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

import httpx

from .results import Outcome

DOCKER_HUB_API = "registry-1.docker.io"
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
DEFAULT_TIMEOUT = 5.0
_CHALLENGE_PARAMETER = re.compile(r'(\w+)="([^"]*)"')


class RegistryClient:
    """Manifest existence checks, with per-run memory of unreachable hosts and tokens."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._http = httpx.Client(timeout=timeout, follow_redirects=True)
        self._unreachable: dict[str, str] = {}
        self._tokens: dict[tuple[str, str], str] = {}
        self.requests: Counter[str] = Counter()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def manifest(self, host: str, name: str, reference: str) -> Outcome:
        """Whether `host` serves the manifest `name`@`reference` (a tag or a digest)."""
        if host in self._unreachable:
            return Outcome("skipped", self._unreachable[host])
        url = f"{_base_url(host)}/v2/{name}/manifests/{reference}"
        try:
            response = self._head(host, url, self._tokens.get((host, name)))
            if response.status_code == 401:
                token = self._anonymous_token(host, name, response)
                if token is not None:
                    self._tokens[(host, name)] = token
                    response = self._head(host, url, token)
        except httpx.HTTPError as error:
            reason = f"registry {host} unreachable ({type(error).__name__}: {error}); not checked"
            self._unreachable[host] = reason
            return Outcome("skipped", reason)
        status = response.status_code
        if status == 200:
            digest = response.headers.get("Docker-Content-Digest", "")
            return Outcome("ok", f"manifest found{f' ({digest})' if digest else ''}")
        if status == 404:
            return Outcome("failed", f"manifest {name}@{reference} not found in {host} (HTTP 404)")
        if status in (401, 403):
            return Outcome("skipped", f"registry {host} wants credentials (HTTP {status})")
        return Outcome("skipped", f"registry {host} answered HTTP {status}; not checked")

    def _head(self, host: str, url: str, token: str | None) -> httpx.Response:
        headers = {"Accept": MANIFEST_TYPES}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.requests[host] += 1
        return self._http.head(url, headers=headers)

    def _anonymous_token(self, host: str, name: str, challenge: httpx.Response) -> str | None:
        """A pull token from the Bearer realm the registry named, or None (not offered)."""
        header = challenge.headers.get("WWW-Authenticate", "")
        if not header.lower().startswith("bearer "):
            return None
        parameters = dict(_CHALLENGE_PARAMETER.findall(header))
        realm = parameters.pop("realm", "")
        if not realm:
            return None
        parameters.setdefault("scope", f"repository:{name}:pull")
        self.requests[host] += 1
        response = self._http.get(realm, params=parameters)
        if response.status_code != 200:
            return None
        try:
            body = response.json()
        except ValueError:
            return None
        token = body.get("token") or body.get("access_token")
        return str(token) if token else None


def _base_url(host: str) -> str:
    """https, except for loopback registries (Docker allows those over plain HTTP too)."""
    if host == "docker.io":
        host = DOCKER_HUB_API
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        loopback = hostname == "localhost" or ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        loopback = False
    return f"{'http' if loopback else 'https'}://{host}"
