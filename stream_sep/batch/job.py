"""A batch job: many songs into one output folder, on local worker processes or a Ray
cluster, resumable through the manifest (:mod:`stream_sep.batch.manifest`).

Order of work, so that a refusal writes nothing: check the request, find the songs, plan
against the manifest (what is done, what failed for good, what to do; stems in the way
that no earlier job wrote are refused without ``overwrite``), then connect to Ray and load
the model; only then create the output folder, lock it against a second job, remove the
hidden files a killed job left, mark the songs to do as pending, and run them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from stream_sep import offline
from stream_sep.audio_files import checked_audio_info
from stream_sep.batch import cluster, local, manifest, worker
from stream_sep.batch.discovery import Song, find_songs
from stream_sep.batch.progress import JobProgress
from stream_sep.batch.worker import ModelSpec, SongResult, SongTask
from stream_sep.errors import UserError
from stream_sep.models import providers
from stream_sep.models.loading import load_model, read_model_file, resolve_model_path
from stream_sep.offline.config import OfflinePlan

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BatchRequest:
    """What ``stream-sep separate DIR_OR_FILES... -o OUT [--recursive] [--jobs N]
    [--ray ADDRESS|auto]`` asks for. jobs: local worker processes (None: what fits the
    cores), or with ``ray`` the most songs in flight on the cluster (None: its CPUs).
    plan: how each song is separated (:meth:`stream_sep.settings.Settings.offline_plan`)."""

    inputs: list[Path]
    outdir: Path
    recursive: bool = False
    jobs: int | None = None
    ray: str | None = None
    stems: tuple[str, ...] = ("karaoke", "vocals")
    clip_mode: str = "none"
    plan: OfflinePlan = OfflinePlan()
    model: str | os.PathLike | None = None
    provider: str = "auto"
    overwrite: bool = False


@dataclasses.dataclass
class Plan:
    """Each song of the job sorted by what this run does with it."""

    todo: list[tuple[Song, dict, float]] = dataclasses.field(default_factory=list)
    done: list[Song] = dataclasses.field(default_factory=list)
    failed_before: list[tuple[Song, str]] = dataclasses.field(default_factory=list)
    refused: list[tuple[Song, dict, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class JobReport:
    """What a run did. results: this run's separated and failed songs (the reader's
    refusals included); done_before: keys skipped as done; failed_before: (key, reason) of
    songs skipped because they failed before and are unchanged; wall_seconds: from the
    first song given to a worker to the last result; workers: how the songs ran."""

    songs: int
    results: list[SongResult] = dataclasses.field(default_factory=list)
    done_before: list[str] = dataclasses.field(default_factory=list)
    failed_before: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    wall_seconds: float = 0.0
    workers: str = ""

    @property
    def separated(self) -> list[SongResult]:
        return [result for result in self.results if result.status == "done"]

    @property
    def failures(self) -> list[tuple[str, str]]:
        """(key, reason) of every song not done: failed now or unchanged since failing."""
        now = [(r.key, r.reason) for r in self.results if r.status == "failed"]
        return now + self.failed_before

    @property
    def audio_seconds(self) -> float:
        return sum(result.seconds for result in self.separated)

    @property
    def model_loads(self) -> dict[str, int]:
        """worker ("host:pid") -> times it loaded the model during this job. Each result
        carries its process's count of loads so far; a process may have loaded it for an
        earlier job (this process, run_job called twice), so the job's share is the
        count's rise over the job's songs plus the load before the first."""
        counts: dict[str, list[int]] = {}
        for result in self.results:
            if result.worker:
                counts.setdefault(result.worker, []).append(result.model_loads)
        return {worker: max(c) - min(c) + 1 for worker, c in counts.items()}

    @property
    def exit_status(self) -> int:
        """0: every song is done; 1: some failed (now or before, unchanged since)."""
        return 1 if self.failures else 0


def run_job(request: BatchRequest, progress_stream=None, quiet: bool = False) -> JobReport:
    """Run ``request``; returns its report. Refusals (a usage error, stems in the way, Ray
    missing or unreachable, a model that does not load) raise :class:`UserError` before
    anything is written. Progress goes to ``progress_stream`` (default stderr) unless
    ``quiet``."""
    _check_request(request)
    songs = find_songs(request.inputs, request.outdir, request.recursive)
    if request.ray is not None:
        cluster.import_ray()
        cluster.check_client(request.ray)
    model_path = resolve_model_path(request.model)
    read_model_file(model_path)  # one line for a missing, empty or oversized model file
    identity = {"name": model_path.name, "sha256": manifest.file_sha256(model_path)}
    settings = settings_identity(request)
    with _locked(request.outdir) as lock:
        job_manifest = manifest.Manifest(request.outdir)
        plan = make_plan(songs, job_manifest, identity, settings, request)
        report = JobReport(
            songs=len(songs),
            done_before=[song.key for song in plan.done],
            failed_before=[(song.key, reason) for song, reason in plan.failed_before],
        )
        if not plan.todo and not plan.refused:
            return report
        spec = ModelSpec(
            str(model_path.resolve()) if request.model is not None else None,
            identity["sha256"],
            request.provider,
        )
        with _workers(request, spec, len(plan.todo)) as workers:
            report.workers = workers.description
            lock.take()
            progress = None if quiet else _progress(plan, progress_stream)
            _run(request, job_manifest, plan, identity, settings, workers, report, progress)
    return report


def _check_request(request: BatchRequest) -> None:
    if request.jobs is not None and request.jobs < 1:
        raise UserError(f"--jobs must be a whole number of workers >= 1, got {request.jobs}")
    offline.check_clip_mode(request.clip_mode)
    if request.outdir.exists() and not request.outdir.is_dir():
        raise UserError(f"-o/--output {str(request.outdir)!r} exists and is not a directory")


def settings_identity(request: BatchRequest) -> dict:
    """The settings that decide the stems' samples (what the manifest compares)."""
    settings = {
        "stems": list(request.stems),
        "clip_mode": request.clip_mode,
        "plan": "like-live" if request.plan.like_live else "throughput",
        "stereo": request.plan.stereo,
    }
    if request.plan.like_live:
        settings.update(
            {k: getattr(request.plan.engine, k) for k in ("hop", "lookahead", "crossfade")}
        )
    return settings


def make_plan(
    songs: list[Song], job_manifest, identity: dict, settings: dict, request: BatchRequest
) -> Plan:
    """Sort ``songs``: done (skipped), failed before and unchanged (skipped), refused by the
    reader now (with the reason), or to do (with its input identity and length). Stems in
    the way of a song to do that the manifest does not own are refused without
    ``overwrite``, with one line, before anything is written."""
    plan = Plan()
    for song in songs:
        source = manifest.input_identity(song.path)
        if not request.overwrite:
            if job_manifest.is_done(song.key, source, identity, settings):
                plan.done.append(song)
                continue
            if job_manifest.failed_for_good(song.key, source, identity, settings):
                plan.failed_before.append((song, job_manifest.entries[song.key]["reason"]))
                continue
        try:
            rate, _, frames = checked_audio_info(song.path)
        except UserError as error:
            plan.refused.append((song, source, str(error)))
            continue
        if not job_manifest.owns(song.key):
            offline.check_targets(request.outdir / song.key, request.stems, request.overwrite)
        plan.todo.append((song, source, frames / rate))
    return plan


@dataclasses.dataclass(frozen=True)
class _Workers:
    """How the songs run: ``run(tasks, on_wait)`` yields results; ``spec`` is the model
    the workers load; ``description`` says where, for the summary."""

    run: Callable[[list[SongTask], Callable | None], Iterator[SongResult]]
    spec: ModelSpec
    description: str


@contextlib.contextmanager
def _workers(request: BatchRequest, spec: ModelSpec, songs: int) -> Iterator[_Workers]:
    """The workers for ``songs`` songs; Ray connected and the model loaded (here, to
    refuse one that does not load before any work) for the block."""
    if not songs:
        yield _Workers(lambda tasks, on_wait: iter(()), spec, "")
    elif request.ray is not None:
        with cluster.connected(request.ray) as ray:
            load_model(spec.path, "cpu")  # the driver may have no GPU; the workers may
            jobs = min(request.jobs or cluster.cluster_cpus(ray), songs)
            spec = dataclasses.replace(spec, threads=cluster.TASK_CPUS)
            yield _Workers(
                lambda tasks, on_wait: cluster.run_ray(ray, tasks, jobs, on_wait),
                spec,
                f"on Ray (up to {jobs} song{'s' if jobs != 1 else ''} at a time)",
            )
    else:
        gpu = providers.candidates(spec.provider)[0][0].name != "cpu"
        jobs = min(request.jobs or local.default_jobs(gpu), songs)
        spec = dataclasses.replace(spec, threads=None if gpu else local.threads_per_worker(jobs))
        with _threads(spec.threads if jobs == 1 else None):
            model = load_model(spec.path, spec.provider)
            if jobs == 1:
                worker.use_model(spec, model)  # the job's own process is the worker
            del model
            yield _Workers(
                lambda tasks, on_wait: local.run_local(tasks, jobs, on_wait),
                spec,
                _describe_local(jobs, spec.threads),
            )


def _describe_local(jobs: int, threads: int | None) -> str:
    where = "in this process" if jobs == 1 else f"on {jobs} local worker processes"
    if threads is None:
        return where
    each = " each" if jobs > 1 else ""
    return f"{where} ({threads} model thread{'s' if threads != 1 else ''}{each})"


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    providers.limit_cpu_threads(threads)
    try:
        yield
    finally:
        providers.limit_cpu_threads(None)


def _progress(plan: Plan, stream) -> JobProgress:
    audio = sum(seconds for _, _, seconds in plan.todo)
    return JobProgress(len(plan.todo) + len(plan.refused), audio, stream)


def _run(request, job_manifest, plan, identity, settings, workers, report, progress) -> None:
    """Mark the work pending, record the reader's refusals, run the songs and record each
    result as it comes; on Ctrl-C remove the unfinished songs' hidden files."""
    outdir = request.outdir
    common = {"model": identity, "settings": settings}
    pending = [key for key, entry in job_manifest.entries.items() if entry["status"] == "pending"]
    manifest.remove_temporaries(outdir, pending + [song.key for song, _, _ in plan.todo])
    for song, source, seconds in plan.todo:
        job_manifest.set(song.key, {**source, **common, "status": "pending", "seconds": seconds})
    for song, source, reason in plan.refused:
        job_manifest.set(
            song.key, {**source, **common, "status": "failed", "reason": reason, "retry": False}
        )
        report.results.append(SongResult(song.key, "failed", reason=reason))
        if progress is not None:
            progress.song_failed(reason)
    job_manifest.save()
    tasks = [_task(request, song, workers.spec) for song, _, _ in plan.todo]
    unfinished = {task.key for task in tasks}
    started = time.monotonic()
    results = workers.run(tasks, progress.tick if progress is not None else None)
    try:
        with contextlib.closing(results):  # on Ctrl-C the workers stop before the cleanup
            for result in results:
                unfinished.discard(result.key)
                _record(job_manifest, result, progress)
                report.results.append(result)
                job_manifest.save(force=False)
    except KeyboardInterrupt:
        manifest.remove_temporaries(outdir, sorted(unfinished))
        raise
    finally:
        report.wall_seconds = time.monotonic() - started
        job_manifest.save()
        if progress is not None:
            progress.close()


def _task(request: BatchRequest, song: Song, spec: ModelSpec) -> SongTask:
    return SongTask(
        key=song.key,
        path=os.path.abspath(song.path),
        folder=os.path.abspath(request.outdir / song.key),
        stems=tuple(request.stems),
        clip_mode=request.clip_mode,
        plan=request.plan,
        model=spec,
    )


def _record(job_manifest, result: SongResult, progress) -> None:
    """Write ``result`` into its manifest entry and the progress."""
    entry = dict(job_manifest.entries[result.key])
    if result.status == "done":
        entry.update(status="done", seconds=result.seconds, outputs=result.outputs)
        if progress is not None:
            progress.song_done(result.key, result.seconds, result.finished - result.started)
    else:
        entry.update(status="failed", reason=result.reason, retry=True)
        if progress is not None:
            progress.song_failed(result.reason, entry["seconds"])
    job_manifest.set(result.key, entry)


class _Lock:
    """An exclusive lock on the output folder (``flock`` on the folder itself, released
    by the kernel however the job ends): a second job on the same folder is refused."""

    def __init__(self, outdir: Path):
        self.outdir, self.descriptor = outdir, None

    def take(self) -> None:
        """Create the output folder if needed and lock it (once)."""
        if self.descriptor is not None:
            return
        try:
            self.outdir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            reason = error.strerror or str(error)
            raise UserError(f"cannot create output folder {str(self.outdir)!r}: {reason}") from None
        descriptor = os.open(self.outdir, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise UserError(
                    f"another stream-sep job is writing to {str(self.outdir)!r}; "
                    "wait for it to end or choose another output folder"
                ) from None
            log.debug("cannot lock %s (%s); going on without a lock", self.outdir, error)
            return
        self.descriptor = descriptor

    def release(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None


@contextlib.contextmanager
def _locked(outdir: Path) -> Iterator[_Lock]:
    """The output folder's lock: taken now if the folder exists (so the plan reads a
    manifest no other job is writing), else when the job first writes."""
    lock = _Lock(outdir)
    try:
        if outdir.is_dir():
            lock.take()
        yield lock
    finally:
        lock.release()
