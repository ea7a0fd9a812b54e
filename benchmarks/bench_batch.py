"""Batch throughput: one generated collection separated by
``--jobs 1``, ``--jobs 2`` and ``--ray auto`` in one run, and the Ray path's cost per song.

    python -m benchmarks bench_batch                       # bundled model, 6 songs x 20 s
    python -m benchmarks bench_batch --smoke --out /tmp/bench

Each mode separates the same songs (44.1 kHz stereo, FLAC and WAV, voice over a band) into
a fresh output folder through :func:`stream_sep.batch.run_job`, as the command does. The
modes run in rounds, in turn forwards and backwards (jobs1 jobs2 ray, ray jobs2 jobs1,
...), so that a load that rises or falls during the run (a shared machine) weighs on every
mode alike; each figure is the mean over the rounds, each round is listed too. Per mode:

- throughput: audio separated / wall time of the whole job, start-up included (workers
  started, Ray started, models loaded): audio hours per hour, i.e. "x real time";
- steady throughput: audio / (last song finished - first song started);
- start-up: from the call to the first song starting (Ray: ``ray.init`` of a local
  instance; a pool: spawning its processes);
- per-song gap: on each worker, the time between one song finishing and its next song
  starting (the result's trip to the job, the manifest, the next task's trip out). The Ray
  path's overhead per song is its gap minus the local pool's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.harness import RESULTS, Run, Stopwatch, in_folder
from stream_sep.batch import BatchRequest, run_job

MODES = {"jobs1": {"jobs": 1}, "jobs2": {"jobs": 2}, "ray": {"ray": "auto"}}


def make_collection(root: Path, songs: int, seconds: float) -> float:
    """``songs`` songs of ``seconds`` under ``root`` (two folders, FLAC and WAV); returns
    the audio seconds in all."""
    from tests.helpers import voice_over_band

    for index in range(songs):
        mixture, _, _ = voice_over_band(seconds, 44100, seed=index)
        stereo = np.stack([mixture, np.roll(mixture, 441)], axis=1)
        suffix = ".flac" if index % 2 else ".wav"
        path = root / f"album{index % 2}" / f"song{index:02d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, stereo, 44100, subtype="PCM_16")
    return songs * seconds


def run_mode(collection: Path, out: Path, model, options: dict) -> dict:
    """One job over the collection; its timings. ``started`` is an epoch time (``time.time``),
    as the songs' own start and finish stamps are."""
    started = time.time()
    with Stopwatch() as watch:
        report = run_job(
            BatchRequest(inputs=[collection], outdir=out, recursive=True, model=model, **options),
            quiet=True,
        )
    wall = watch.seconds
    if report.exit_status != 0:
        raise SystemExit(f"the job failed: {report.failures}")
    results = report.separated
    audio = report.audio_seconds
    first, last = min(r.started for r in results), max(r.finished for r in results)
    return {
        "songs": len(results),
        "audio_s": audio,
        "wall_s": wall,
        "throughput_x": audio / wall,
        "steady_x": audio / (last - first),
        "startup_s": first - started,
        "gap_ms": 1000 * _mean_gap(results),
        "workers": len(report.model_loads),
        "model_loads": sum(report.model_loads.values()),
        "where": report.workers,
    }


def _mean_gap(results) -> float:
    """Mean time a worker waited between finishing one song and starting its next."""
    by_worker: dict[str, list] = {}
    for result in results:
        by_worker.setdefault(result.worker, []).append(result)
    gaps = []
    for songs in by_worker.values():
        songs.sort(key=lambda r: r.started)
        gaps += [b.started - a.finished for a, b in zip(songs, songs[1:], strict=False)]
    return statistics.mean(gaps) if gaps else float("nan")


def mean_row(rounds: list[dict]) -> dict:
    """The rounds' mean of each number, their shared description, and the rounds."""
    row = {
        key: statistics.mean(r[key] for r in rounds)
        for key, value in rounds[0].items()
        if isinstance(value, int | float)
    }
    return {**row, "where": rounds[0]["where"], "rounds": rounds}


def markdown(rows: dict, meta: dict) -> list[str]:
    """The report's body: what ran, one row per mode, the Ray path against the pool."""
    lines = [
        f"{meta['songs']} songs x {meta['seconds']:g} s (44.1 kHz stereo), model "
        f"{meta['model']}, {meta['rounds']} round(s) in turn forwards and backwards. "
        f"{meta['note']}",
        "",
        "| mode | where | wall s | audio h per h (x real time) | steady x | start-up s "
        "| per-song gap ms | workers (model loads) | x real time by round |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode, row in rows.items():
        by_round = ", ".join(f"{r['throughput_x']:.2f}" for r in row["rounds"])
        lines.append(
            f"| {mode} | {row['where']} | {row['wall_s']:.1f} | {row['throughput_x']:.2f} "
            f"| {row['steady_x']:.2f} | {row['startup_s']:.2f} | {row['gap_ms']:.1f} "
            f"| {row['workers']:g} ({row['model_loads']:g}) | {by_round} |"
        )
    if "ray" in rows and "jobs2" in rows:
        gap = rows["ray"]["gap_ms"] - rows["jobs2"]["gap_ms"]
        start = rows["ray"]["startup_s"] - rows["jobs2"]["startup_s"]
        lines += [
            "",
            f"Ray path against the local pool of as many workers: {gap:+.1f} ms per song (its "
            f"gap minus the pool's), {start:+.1f} s at start-up (a local Ray instance started "
            "for the job, against spawning the pool).",
        ]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--model", default="bundled", help="bundled, test (the tests' gain model) or a path"
    )
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES)
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="4 songs x 2 s with the test model")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    args = parser.parse_args(argv)
    run = Run("bench_batch", argv)
    if args.smoke:
        args.songs, args.seconds, args.model, args.rounds = 4, 2.0, "test", 1
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        scratch = Path(scratch)
        model = _model(args.model, scratch)
        make_collection(scratch / "music", args.songs, args.seconds)
        modes = args.modes.split(",")
        rounds: dict[str, list] = {mode: [] for mode in modes}
        for number in range(args.rounds):
            for mode in modes if number % 2 == 0 else modes[::-1]:
                out = scratch / f"out-{mode}-{number}"
                rounds[mode].append(run_mode(scratch / "music", out, model, MODES[mode]))
                print(f"round {number + 1} {mode}: {json.dumps(rounds[mode][-1])}", flush=True)
        rows = {mode: mean_row(rounds[mode]) for mode in modes}
    meta = {
        "songs": args.songs,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "model": args.model,
        "note": args.note,
    }
    data = {"meta": meta, "rows": rows}
    run.write(*in_folder(args.out, "batch"), data, markdown(rows, meta))
    return 0


def _model(name: str, scratch: Path):
    if name == "bundled":
        return None
    if name == "test":
        from tests.helpers import gain_model

        return gain_model(scratch / "half.onnx", 0.5)
    return Path(name)


if __name__ == "__main__":
    sys.exit(main())
