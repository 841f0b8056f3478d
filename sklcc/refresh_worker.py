"""One background thread that clusters while the next epoch trains (``lcc_refresh_mode="overlap"``).

A thread, not a process: the refresh's heavy steps release the GIL (faiss's and
hnswlib's searches, networkit's PLM, numpy's linear algebra), and a thread shares the
latents without copying them. At most one refresh is in flight; its result is taken at a
fixed epoch boundary, waiting for it if needed, so what training sees never depends
on how fast the thread was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["RefreshWorker"]


class RefreshWorker:
    """Run one job at a time in a background thread; a context manager that joins it.

    Examples
    --------
    >>> with RefreshWorker() as worker:
    ...     worker.submit(sum, [1, 2, 3])
    ...     value, waited_s = worker.result()
    >>> value, worker.busy
    (6, False)

    """

    def __init__(self):
        self._executor: ThreadPoolExecutor | None = None
        self._job: Future | None = None

    @property
    def busy(self) -> bool:
        """Whether a job was submitted and its result not taken yet."""
        return self._job is not None

    def submit(self, fn: Callable, /, *args: Any) -> None:
        """Start ``fn(*args)`` in the thread (started on first use)."""
        if self._job is not None:
            raise RuntimeError("a refresh is already in flight; take its result() first.")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1,
                                                thread_name_prefix="sklcc-refresh")
        self._job = self._executor.submit(fn, *args)

    def result(self) -> tuple[Any, float]:
        """Wait for the job; return its value (or raise its error) and the seconds waited."""
        job, self._job = self._job, None
        if job is None:
            raise RuntimeError("no refresh in flight; submit() one first.")
        start = time.perf_counter()
        value = job.result()
        return value, time.perf_counter() - start

    def close(self) -> None:
        """Drop any job's result and join the thread (a running job is let finish)."""
        self._job = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> RefreshWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
