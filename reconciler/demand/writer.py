"""The bounded queue between the webhook handler and the demand store, and its writer threads.

GitHub waits 10 seconds for a delivery, counts a slower one as failed, and never retries by
itself. So the handler does no I/O: it checks the signature, parses, and `offer`s the job
event here (acknowledged at once), or answers 503 when the queue is full, so the failure shows
in GitHub's delivery log and can be redelivered. Writer threads record each event in the book
(the store: DynamoDB with short timeouts), retrying with capped backoff until it is stored:
an acknowledged event is only lost if the process dies first (redelivery recovers those).

Pools are resolved here, not before: the controller knows its pools after its first cycle, and
events taken before that wait in the queue. An event no pool serves is dropped unstored.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from .book import DemandBook, PoolDemandSpec, filing_pool
from .events import JobEvent

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 2_000  # a burst of matrix jobs; each event is a few hundred bytes
# a 400-job burst is stored in seconds, not half a minute: at 4 writers (2 DynamoDB calls an
# event) the controller saw the burst's last jobs 30 s after they were all delivered
# (bench/burst.py, issue 19); DynamoDB takes far more concurrent writes than this
DEFAULT_WRITERS = 16


class DemandWriter:
    """Takes job events without blocking; writer threads store them in the demand book."""

    def __init__(
        self,
        book: DemandBook,
        pools: Callable[[], Sequence[PoolDemandSpec] | None],
        *,
        capacity: int = DEFAULT_CAPACITY,
        writers: int = DEFAULT_WRITERS,
        on_recorded: Callable[[JobEvent], None] | None = None,
        retry_base: float = 0.2,
        retry_max: float = 5.0,
    ) -> None:
        if capacity < 1 or writers < 1:
            raise ValueError("a demand writer needs capacity >= 1 and writers >= 1")
        self.book = book
        self.pools = pools
        self.on_recorded = on_recorded
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.counts: Counter[str] = Counter()
        self._queue: queue.Queue[JobEvent] = queue.Queue(maxsize=capacity)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, name=f"demand-writer-{n}", daemon=True)
            for n in range(writers)
        ]
        self._started = False

    def start(self) -> DemandWriter:
        """Start the writer threads (idempotent)."""
        with self._lock:
            if not self._started:
                self._started = True
                for thread in self._threads:
                    thread.start()
        return self

    def offer(self, event: JobEvent) -> bool:
        """Queue an event; False (nothing queued) when the queue is full or writing stopped."""
        if self._stop.is_set():
            return False
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._count("queue_full")
            return False
        return True

    @property
    def depth(self) -> int:
        """Events acknowledged and not yet stored."""
        return self._queue.qsize()

    def drain(self, timeout: float) -> bool:
        """Wait until every queued event is stored or dropped; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Store what is queued (up to `timeout`), then stop the writers."""
        self.drain(timeout)
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=max(0.1, timeout))
        if (left := self._queue.qsize()) > 0:
            log.error("demand writer stopped with %d acknowledged event(s) unstored", left)
            self._count("unstored_at_stop", left)

    def _count(self, outcome: str, n: int = 1) -> None:
        with self._lock:
            self.counts[outcome] += n

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._store(event)
            finally:
                self._queue.task_done()

    def _store(self, event: JobEvent) -> None:
        """Record one event, retrying until stored or stopped; drop it if no pool serves it."""
        attempt = 0
        while not self._stop.is_set():
            pools = self.pools()
            if pools is None:  # the controller has not read its specs yet
                self._stop.wait(0.1)
                continue
            pool = filing_pool(event, pools)
            if pool is None:
                self._count("no_pool")
                return
            try:
                new = self.book.record(event, pool.name)
            except Exception as error:  # store unreachable, throttled, timed out: retry
                attempt += 1
                self._count("retried")
                delay = min(self.retry_max, self.retry_base * 2 ** min(attempt, 10))
                log.warning("job %s not stored (%s); retry in %.1fs", event.job_id, error, delay)
                self._stop.wait(delay)
                continue
            self._count("recorded" if new else "duplicate")
            if new and self.on_recorded is not None:
                try:
                    self.on_recorded(event)
                except Exception:
                    log.exception("on_recorded failed for job %s", event.job_id)
            return
        self._count("unstored_at_stop")
