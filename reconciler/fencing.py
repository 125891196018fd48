"""Fencing: no mutating call leaves this process unless this replica holds the lease long
enough for the call's worst case.

A leader that was paused (GC, CPU starvation, SIGSTOP) or cut off from DynamoDB past its
lease must not go on mutating after a standby took over. So every mutating request, each
HTTP attempt of it (AWS through botocore's `before-send`, GitHub in its client's send loop),
asks `check(what, worst_case)` first: it passes only when the fence installed for the
current thread says the lease is still ours for at least `worst_case` seconds (the attempt's
connect + read timeouts). Otherwise `LeaseLost` is raised, which no adapter catches, so the
apply stops at once.

The executor installs the fence for the thread that applies (`fenced`); other threads (the
webhook receiver writing demand, the lease thread itself) are not fenced. Without a fence
installed (a single replica, `apply` from the CLI) every call passes.

What it cannot do: a request whose check passed is sent even if the process is paused
between the check and the send; the margin between the renew deadline and the lease
duration covers such a pause only if it is shorter than that margin. ECS and GitHub take no
fencing token that could refuse the late request server-side.

This module is the bottom layer: it knows nothing about leases, AWS or GitHub.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Protocol


class LeaseLost(Exception):
    """A mutating call was refused: this replica no longer (surely) holds the lease.

    Deliberately not a subclass of any AWS or GitHub error, so that no adapter's error
    handling swallows it."""


class Fence(Protocol):
    """What the lease says: how long it is surely still ours, and its epoch."""

    def remaining(self) -> float:
        """Seconds left before this replica must stop acting (<= 0: not leading)."""
        ...

    @property
    def epoch(self) -> int:
        """The lease's transition count when this replica acquired it (0 without a lease)."""
        ...


_current: contextvars.ContextVar[Fence | None] = contextvars.ContextVar("fence", default=None)


@contextlib.contextmanager
def fenced(fence: Fence | None) -> Iterator[None]:
    """Fence every mutating call made by this thread inside the block (None: no fence)."""
    token = _current.set(fence)
    try:
        yield
    finally:
        _current.reset(token)


def check(what: str, worst_case: float) -> None:
    """The choke point: raise `LeaseLost` unless the lease outlasts `worst_case` seconds."""
    fence = _current.get()
    if fence is None:
        return
    remaining = fence.remaining()
    if remaining < worst_case:
        state = "not held" if remaining <= 0 else f"{remaining:.1f}s left"
        raise LeaseLost(f"{what} refused: lease {state}, the call may take up to {worst_case:.1f}s")


def current_epoch() -> int:
    """The epoch of the fence installed for this thread (0 when none)."""
    fence = _current.get()
    return fence.epoch if fence is not None else 0
