"""Reading spec files as they were at a git revision (for `plan --base REF`).

Uses the `git` command: `ls-tree` to list the spec files under the given paths at the
revision, and one `cat-file --batch` process to read them all.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from .loader import SPEC_SUFFIXES, SpecSet, load_spec_bytes
from .yamlsource import MAX_FILE_BYTES


class GitRevisionError(RuntimeError):
    """The revision or the repository could not be read."""


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    try:
        completed = subprocess.run(
            ["git", "-C", str(repo), *args],
            input=stdin,
            capture_output=True,
            check=False,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise GitRevisionError(f"git {args[0]} failed: {error}") from None
    if completed.returncode != 0:
        message = completed.stderr.decode(errors="replace").strip().splitlines()
        raise GitRevisionError(f"git {args[0]}: {message[-1] if message else 'failed'}")
    return completed.stdout


def spec_files_at(revision: str, paths: Sequence[str | Path], repo: Path) -> dict[str, bytes]:
    """{repository-relative path: content} of every spec file under `paths` at `revision`."""
    top = Path(_git(repo, "rev-parse", "--show-toplevel").decode().strip())
    commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}").decode()
    prefixes = [_relative(Path(p), top) for p in paths]
    listing = _git(top, "ls-tree", "-r", "-z", "--name-only", commit.strip(), "--", *prefixes)
    names = sorted(
        name
        for name in listing.decode().split("\0")
        if name.endswith(SPEC_SUFFIXES) and not any(p.startswith(".") for p in name.split("/"))
    )
    if not names:
        return {}
    request = "".join(f"{commit.strip()}:{name}\n" for name in names).encode()
    output = _git(top, "cat-file", "--batch", stdin=request)
    files: dict[str, bytes] = {}
    position = 0
    for name in names:
        header_end = output.index(b"\n", position)
        _, kind, size_text = output[position:header_end].decode().split(" ")
        size = int(size_text)
        start = header_end + 1
        files[name] = output[start : start + size] if kind == "blob" else b""
        position = start + size + 1
        if size > MAX_FILE_BYTES:
            files[name] = output[start : start + MAX_FILE_BYTES + 1]
    return files


def load_specs_at(revision: str, paths: Sequence[str | Path], repo: Path) -> SpecSet:
    """Load and validate the spec files as they were at `revision`."""
    return load_spec_bytes(spec_files_at(revision, paths, repo))


def _relative(path: Path, top: Path) -> str:
    absolute = path.absolute()
    try:
        relative = absolute.resolve().relative_to(top.resolve())
    except ValueError:
        raise GitRevisionError(f"{path} is not inside the git repository {top}") from None
    return relative.as_posix() or "."
