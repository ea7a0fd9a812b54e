"""Running a job's songs on this machine: in the job's own process (one job) or in a pool
of worker processes (``--jobs N``), each loading the model once and running it on its
share of the cores.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Iterator

from stream_sep.batch.worker import SongResult, SongTask, init_process, separate_song
from stream_sep.models import providers

# Model threads per worker when --jobs is not given: one process per core. Separating a
# song is not all model: reading, resampling, the STFT and writing run on one thread, so
# whole processes use the cores better than threads inside one process (docs/batch.md).
WORKER_THREADS = 1


def default_jobs(gpu: bool = False, cores: int | None = None) -> int:
    """Workers for a job without ``--jobs``: one per :data:`WORKER_THREADS` cores, or one
    on a GPU (the processes would share the one device)."""
    cores = providers.cpu_cores() if cores is None else cores
    return 1 if gpu else max(1, cores // WORKER_THREADS)


def threads_per_worker(jobs: int, cores: int | None = None) -> int:
    """The model's CPU threads in each of ``jobs`` workers: their share of the cores."""
    cores = providers.cpu_cores() if cores is None else cores
    return max(1, cores // jobs)


def run_local(
    tasks: list[SongTask], jobs: int, on_wait: Callable[[], None] | None = None
) -> Iterator[SongResult]:
    """Separate ``tasks`` with ``jobs`` workers, yielding each result as it comes (in
    completion order). One job runs in this process. ``on_wait`` is called about once a
    second while nothing finishes (a progress bar's clock)."""
    if jobs == 1:
        for task in tasks:
            yield separate_song(task)
        return
    yield from _run_pool(tasks, jobs, on_wait)


def _run_pool(tasks: list[SongTask], jobs: int, on_wait) -> Iterator[SongResult]:
    """A pool of ``jobs`` spawned processes (not forked: this process may hold ONNX
    Runtime's threads), one song per worker at a time: a worker that dies (the pool is
    then broken) fails only the songs in progress, and a fresh pool takes the rest."""
    queue = list(reversed(tasks))
    while queue:
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_process,
            initargs=(os.getpid(),),
        )
        running: dict[concurrent.futures.Future, SongTask] = {}
        try:
            broken = False
            while (queue or running) and not broken:
                while queue and len(running) < jobs:
                    task = queue.pop()
                    running[pool.submit(separate_song, task)] = task
                finished, _ = concurrent.futures.wait(
                    running, timeout=1.0, return_when=concurrent.futures.FIRST_COMPLETED
                )
                if not finished and on_wait is not None:
                    on_wait()
                for future in finished:
                    task = running.pop(future)
                    try:
                        yield future.result()
                    except concurrent.futures.process.BrokenProcessPool:
                        broken = True
                        yield _worker_died(task)
            for task in running.values():  # the broken pool's other songs
                yield _worker_died(task)
            running.clear()
        except BaseException:
            _stop(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _worker_died(task: SongTask) -> SongResult:
    reason = f"a worker process died while separating {task.path!r} (out of memory?)"
    return SongResult(task.key, "failed", reason=reason)


def _stop(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """End the pool's processes now (Ctrl-C): their songs' hidden files stay, for the
    job to remove."""
    # concurrent.futures has no public way to stop running work before Python 3.14; its
    # processes are forgotten by shutdown(), so they are taken first.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)
