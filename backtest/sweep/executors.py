"""Where sweep runs execute: this process, a local process pool, or Ray.

Each executor takes task dicts (:mod:`backtest.sweep.worker`) and gives back their results as they
finish; ``capacity`` is how many runs it carries out at once (the driver keeps exactly that many in
flight, so "running" in the progress bar is what is running).

- :class:`InlineExecutor`: one run at a time in the calling process (``--workers 1``).
- :class:`LocalPool`: ``workers`` processes (spawned, so no thread state of the parent is copied)
  that live for the whole sweep; each compiles, or loads from numba's disk cache, the replay loop
  once, on its first run.
- :class:`RayExecutor`: the same task function as Ray tasks, one CPU each. ``address="auto"``
  starts a local Ray for the sweep (``workers`` CPUs) and stops it after; any other address joins
  that cluster (``ray.init(address=...)``). Ray reuses its worker processes across tasks, so a
  worker compiles once there too. The data store is read by each task from its path, which must be
  the same on every node (a shared file system); it is never put into a task's arguments.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from typing import Any

from backtest.sweep.worker import run_task


class WorkerLost(RuntimeError):
    """The process running a task died (killed, out of memory, a crash in compiled code)."""


class InlineExecutor:
    name = "this process"

    def __init__(self):
        self.capacity = 1
        self._done: list[tuple[Any, dict]] = []
        self._next = 0

    def submit(self, task: dict[str, Any]) -> Any:
        handle = self._next
        self._next += 1
        self._done.append((handle, run_task(task)))
        return handle

    def wait(self, handles: list[Any], timeout: float | None = None) -> list[tuple[Any, dict | Exception]]:
        out, self._done = self._done, []
        return out

    def close(self) -> None:
        pass


class LocalPool:
    def __init__(self, workers: int):
        self.capacity = workers
        self.name = f"{workers} local worker process{'es' if workers != 1 else ''}"
        self._pool = self._new_pool()
        self._pool_of: dict[Any, cf.ProcessPoolExecutor] = {}  # future -> the pool it was given to

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=self.capacity, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, task: dict[str, Any]) -> Any:
        future = self._pool.submit(run_task, task)
        self._pool_of[future] = self._pool
        return future

    def wait(self, handles: list[Any], timeout: float | None = None) -> list[tuple[Any, dict | Exception]]:
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        broken = False
        for f in done:
            pool = self._pool_of.pop(f, None)
            exc = f.exception()
            if exc is None:
                out.append((f, f.result()))
            else:
                # only a future of the current pool can break it (the others went down with an old one)
                broken |= isinstance(exc, cf.process.BrokenProcessPool) and pool is self._pool
                out.append((f, WorkerLost(f"worker process died ({type(exc).__name__}: {exc})")))
        if broken:  # a dead worker takes the pool down: start a fresh one for the rest of the sweep
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    def __init__(self, address: str, workers: int):
        import logging

        import ray

        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            if address == "auto":
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                         configure_logging=True)
                self._started = True
            else:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        self.capacity = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.name = f"Ray ({'local, started for this sweep' if self._started else address}, {self.capacity} CPUs)"
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run_task)

    def submit(self, task: dict[str, Any]) -> Any:
        return self._remote.remote(task)

    def wait(self, handles: list[Any], timeout: float | None = None) -> list[tuple[Any, dict | Exception]]:
        ready, _ = self._ray.wait(list(handles), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            try:
                out.append((ref, self._ray.get(ref)))
            except self._ray.exceptions.RayError as exc:
                out.append((ref, WorkerLost(f"Ray task lost ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")))
        return out

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def make_executor(workers: int, ray_address: str | None):
    if ray_address:
        try:
            import ray  # noqa: F401
        except ImportError:
            from stockbridge.errors import StockbridgeError

            raise StockbridgeError("--ray: Ray is not installed (pip install 'stockbridge[sweep]')") from None
        return RayExecutor(ray_address, workers)
    if workers <= 1:
        return InlineExecutor()
    return LocalPool(workers)
