"""Git as the spec source: clone, poll, and check out only commits whose specs validate.

The work tree the controller reads always holds the last *applied* revision: a newly
fetched commit is first validated straight from git objects; only when its whole spec set
loads without errors is it checked out. Like Flux, the source reports the last applied and
the last attempted revision, and why an attempted one was refused.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..spec.gitrev import GitRevisionError, load_specs_at

log = logging.getLogger(__name__)


@dataclass
class GitState:
    """What the source has done so far."""

    applied: str | None = None
    attempted: str | None = None
    errors: list[str] = field(default_factory=list)


class GitSource:
    """A spec repository cloned into `workdir`, following `branch`."""

    def __init__(self, url: str, branch: str, workdir: Path, spec_path: str = "specs") -> None:
        self.url, self.branch, self.workdir, self.spec_path = url, branch, workdir, spec_path
        self.state = GitState()
        self._lock = threading.Lock()

    @property
    def spec_dir(self) -> Path:
        """Where the applied revision's specs are on disk."""
        return self.workdir / self.spec_path

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        completed = subprocess.run(
            ["git", *args],
            cwd=cwd or self.workdir,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if completed.returncode != 0:
            lines = completed.stderr.strip().splitlines()
            raise GitRevisionError(f"git {args[0]}: {lines[-1] if lines else 'failed'}")
        return completed.stdout.strip()

    def sync(self) -> bool:
        """Fetch the branch; check out its head if its specs validate.

        Returns True when a new commit was fetched (applied or refused for errors).
        """
        with self._lock:
            if not (self.workdir / ".git").exists():
                self.workdir.mkdir(parents=True, exist_ok=True)
                self._git("init", "--quiet")
                self._git("remote", "add", "origin", self.url)
            self._git("fetch", "--quiet", "--depth", "50", "origin", self.branch)
            head = self._git("rev-parse", "FETCH_HEAD")
            if head == self.state.attempted:
                return False
            self.state.attempted = head
            spec_set = load_specs_at(head, [self.spec_dir], self.workdir)
            if not spec_set.ok:
                self.state.errors = [str(d) for d in spec_set.errors]
                log.warning(
                    "commit %s not applied: %d spec error(s)", head[:12], len(spec_set.errors)
                )
                return True
            self._git("checkout", "--quiet", "--force", "--detach", head)
            self.state.applied, self.state.errors = head, []
            log.info("checked out %s", head[:12])
            return True

    def poll(self, stop: threading.Event, interval: float, changed: Callable[[str], None]) -> None:
        """Sync every `interval` seconds until `stop`; call `changed` on a new revision."""
        while not stop.is_set():
            try:
                if self.sync():
                    changed(f"git revision {self.state.attempted}")
            except GitRevisionError as error:
                log.warning("git source: %s", error)
            stop.wait(interval)
