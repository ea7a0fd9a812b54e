"""Why a live window takes longer than the benchmark's: the bundled model's stereo window,
timed with and without a live stream through JACK, at two intra-op thread counts.

    python -m benchmarks live_contention                     # 3 rounds, 20 s per condition
    python -m benchmarks live_contention --smoke --out /tmp/live   # a gain model, seconds

A JACK dummy server (48 kHz, 1024 frames, started here under a unique name; with
``--use-running-server`` the one a test run already has) and two JACK clients, ``mic`` (plays a generated stereo song) and ``headphones`` (records), run for the
whole measurement in this process. Each condition runs in a process of its own with
``STREAM_SEP_THREADS`` set (see ``stream_sep.models.providers.intra_op_threads``); the conditions
alternate round-robin, so a change in the machine's load hits them alike:

- ``back to back``: the engine's window path (``WindowRunner.estimate``: resampling 48 to 16
  kHz, STFT, ONNX, iSTFT, resampling back) on one stereo window of the live plan, one call
  after another: what ``bench_inference.py`` measures;
- ``paced``: the same, one call per hop (0.5 s), the process idle in between: the live
  engine's rhythm, without audio;
- ``live``: ``stream-sep --input mic --output headphones --hop 0.5 --lookahead 0.25
  --crossfade 0.064 --duration D``: the engine's own "inference mean ... ms" from its exit
  summary (the same window path, timed in its inference thread while the audio callback,
  the JACK clients and the server run), with its deadline misses and xruns.

Writes ``benchmarks/results/live_contention.{json,md}`` (or ``--out STEM``) with the machine,
the date and the load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import REPO, RESULTS, Run, Stopwatch, at_stem, timed
from stream_sep.models import providers

RATE = 48000
PERIOD = 1024
HOP, LOOKAHEAD, CROSSFADE = 0.5, 0.25, 0.064
LIVE_OPTIONS = ["--hop", str(HOP), "--lookahead", str(LOOKAHEAD), "--crossfade", str(CROSSFADE)]
MODES = ("back to back", "paced", "live")
START_ATTEMPTS = 3
SUMMARY = re.compile(r"inference mean ([\d.]+) ms, max ([\d.]+) ms, load ([\d.]+)")
STOPPED = re.compile(r"stopped \(([^)]+)\) after ([\d.]+) s")
COUNTS = re.compile(r"(\d+) windows \((\d+) run, (\d+) skipped\), (\d+) deadline misses, "
                    r"(\d+) model failures, (\d+) xruns")  # fmt: skip


# ---------------------------------------------------------------------------- one condition
def measure_windows(model_path: str | None, mode: str, windows: int) -> list[float]:
    """Seconds per stereo window of the live plan through the engine's window path, one
    call after another (``back to back``) or one per hop (``paced``)."""
    from stream_sep.engine.plan import WindowPlan
    from stream_sep.engine.window import WindowRunner
    from stream_sep.models.loading import load_model

    model = load_model(model_path, "cpu")
    model.warm_up(2)
    plan = WindowPlan.build(model.contract, RATE, HOP, LOOKAHEAD, CROSSFADE)
    runner = WindowRunner(model, plan)
    rng = np.random.default_rng(0)
    audio = (0.05 * rng.standard_normal((2, plan.window_samples))).astype(np.float32)
    runner.estimate(audio, "batch")
    times, tick = [], 0.0
    with Stopwatch() as clock:
        for _ in range(windows):
            if mode == "paced":
                tick += HOP
                time.sleep(max(0.0, tick - clock.elapsed))
            times.append(timed(lambda: runner.estimate(audio, "batch")))
    return times


def run_measure(args, mode: str, threads: int) -> dict:
    """One back-to-back or paced condition in a process of its own."""
    env = dict(os.environ, **{providers.THREADS_ENV: str(threads)})
    command = [sys.executable, "-m", "benchmarks.live_contention", "--measure", mode,
               "--windows", str(args.windows)]  # fmt: skip
    if args.model_path:
        command += ["--model", args.model_path]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{mode} with {threads} thread(s) failed: {result.stderr.strip()}")
    times = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        "mean_ms": 1000 * statistics.fmean(times),
        "median_ms": 1000 * statistics.median(times),
        "max_ms": 1000 * max(times),
        "windows": len(times),
    }


def run_live(args, harness, song: np.ndarray, threads: int) -> dict:
    """``stream-sep --input mic --output headphones`` for ``args.seconds``; the numbers of its
    exit summary. The harness starts the song once stream-sep is connected."""
    env = dict(os.environ, **{providers.THREADS_ENV: str(threads)})
    command = [sys.executable, "-m", "stream_sep", "--input", "mic", "--output", "headphones",
               *LIVE_OPTIONS, "--duration", f"{args.seconds:g}", "--quiet"]  # fmt: skip
    if args.model_path:
        command += ["--model", args.model_path]
    harness.play(song)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, cwd=REPO)  # fmt: skip
    arming = threading.Thread(target=_arm_when_connected, args=(harness, process), daemon=True)
    arming.start()
    out, err = process.communicate(timeout=args.seconds + 300)
    arming.join(timeout=5)
    summary, counts, stopped = SUMMARY.search(err), COUNTS.search(err), STOPPED.search(err)
    if None in (summary, counts, stopped):
        raise RuntimeError(f"live run with {threads} thread(s) failed: {err.strip()[-2000:]}")
    windows, run, skipped, misses, failures, xruns = map(int, counts.groups())
    return {
        "mean_ms": float(summary.group(1)),
        "max_ms": float(summary.group(2)),
        "load": float(summary.group(3)),
        "windows": run,
        "skipped": skipped,
        "deadline_misses": misses,
        "xruns": xruns,
        "exit_status": process.returncode,
        "stopped": f"{stopped.group(1)} after {stopped.group(2)} s",
    }


def _arm_when_connected(harness, process) -> None:
    while process.poll() is None and not harness.connected():
        time.sleep(0.02)
    harness.arm()


# ---------------------------------------------------------------------------- the run
@contextlib.contextmanager
def jack_server(use_running: bool = False):
    """A JACK dummy server under a unique name, this process's default while it runs; with
    ``use_running``, the server that ``$JACK_DEFAULT_SERVER`` names if one answers (a test
    run's: JACK allows only a few servers per machine). Yields how it was obtained."""
    from tests.jack_harness import SERVER_ENV, _release_portaudio, server_running, start_server

    if use_running and server_running():
        yield f"the running server {os.environ.get(SERVER_ENV, '(default)')}"
        _release_portaudio()
        return
    if shutil.which("jackd") is None:
        raise SystemExit("live_contention: jackd is not installed (apt-get install jackd2)")
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            process = start_server(f"live-contention-{os.getpid()}-{attempt}", RATE, PERIOD)
            break
        except RuntimeError as error:
            # On a machine where other JACK servers start and stop (other users' tests),
            # jackd now and then exits at once (status 255); a second start succeeds.
            if attempt == START_ATTEMPTS:
                raise SystemExit(f"live_contention: {error}") from None
            time.sleep(1.0)
    try:
        yield f"jackd -n {os.environ[SERVER_ENV]} -d dummy -r {RATE} -p {PERIOD}, started here"
    finally:
        _release_portaudio()
        process.terminate()
        process.wait(timeout=10)


def conditions(thread_counts: list[int]) -> list[tuple[str, int]]:
    return [(mode, threads) for threads in thread_counts for mode in MODES]


def run_all(args) -> tuple[str, dict]:
    """(how the JACK server was obtained, {condition: [each round's numbers]})."""
    from benchmarks.fixtures import song
    from tests.jack_harness import Harness

    results = {f"{mode}, {threads}": [] for mode, threads in conditions(args.threads)}
    with jack_server(args.use_running_server) as server:
        harness = Harness(channels=2)
        if (harness.rate, harness.period) != (RATE, PERIOD):
            harness.close()
            raise SystemExit(
                f"live_contention: the JACK server runs at {harness.rate} Hz, "
                f"{harness.period} frames; this measurement needs {RATE} Hz, {PERIOD} frames"
            )
        try:
            music = song(args.seconds + 5, RATE)
            for number in range(args.rounds):
                for mode, threads in conditions(args.threads):
                    print(f"round {number + 1}: {mode}, {threads} thread(s)", file=sys.stderr,
                          flush=True)  # fmt: skip
                    if mode == "live":
                        item = run_live(args, harness, music, threads)
                    else:
                        item = run_measure(args, mode, threads)
                    results[f"{mode}, {threads}"].append(item)
                    print(f"  {json.dumps(item)}", file=sys.stderr, flush=True)
        finally:
            harness.close()
    return server, results


def summarise(results: dict, thread_counts: list[int]) -> list[dict]:
    """One row per condition: the mean of the rounds' mean window times, and the ratio to
    back-to-back with the same threads."""
    rows = []
    for mode, threads in conditions(thread_counts):
        runs = results[f"{mode}, {threads}"]
        mean = statistics.fmean(r["mean_ms"] for r in runs)
        base = statistics.fmean(r["mean_ms"] for r in results[f"back to back, {threads}"])
        row = {
            "mode": mode,
            "threads": threads,
            "mean_ms": mean,
            "round_means_ms": [r["mean_ms"] for r in runs],
            "max_ms": max(r["max_ms"] for r in runs),
            "ratio_to_back_to_back": mean / base,
            "windows": sum(r["windows"] for r in runs),
        }
        if mode == "live":
            row.update(
                deadline_misses=sum(r["deadline_misses"] for r in runs),
                skipped=sum(r["skipped"] for r in runs),
                xruns=sum(r["xruns"] for r in runs),
                load=statistics.fmean(r["load"] for r in runs),
                stopped=[r["stopped"] for r in runs],
                exit_status=[r["exit_status"] for r in runs],
            )
        rows.append(row)
    return rows


def markdown(report: dict) -> list[str]:
    """The report's body: one row per condition, how the live runs stopped."""
    lines = [
        f"Model {Path(report['model']).name}. {report['note']}",
        "",
        f"Stereo window of the live plan (hop {HOP} s, lookahead {LOOKAHEAD} s, crossfade "
        f"{CROSSFADE} s at {RATE} Hz; JACK: {report['server']}), {report['rounds']} "
        "rounds, conditions interleaved; ms per window (mean over the rounds of each run's "
        "mean).",
        "",
        "| condition | intra-op threads | mean ms | each round's mean ms | max ms "
        "| vs back to back | windows | live: misses / skipped / xruns |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        rounds = ", ".join(f"{value:.0f}" for value in row["round_means_ms"])
        live = (
            f"{row['deadline_misses']} / {row['skipped']} / {row['xruns']}"
            if row["mode"] == "live"
            else "-"
        )
        lines.append(
            f"| {row['mode']} | {row['threads']} | {row['mean_ms']:.1f} | {rounds} "
            f"| {row['max_ms']:.0f} | {row['ratio_to_back_to_back']:.2f}x | {row['windows']} "
            f"| {live} |"
        )
    stops = [f"{row['threads']} thread(s): {'; '.join(row['stopped'])} (exit status "
             f"{', '.join(map(str, row['exit_status']))})"
             for row in report["rows"] if row["mode"] == "live"]  # fmt: skip
    lines += ["", "Live runs stopped: " + " | ".join(stops) + "."]
    return lines


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", dest="model_path", help="ONNX model (default: bundled)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=20.0, help="live run length (20 s)")
    parser.add_argument("--windows", type=int, default=20, help="windows per timed run (20)")
    parser.add_argument("--threads", default="2,1", help="intra-op thread counts (default 2,1)")
    parser.add_argument(
        "--note",
        default="The machine was shared with other work during the run.",
        help="what else ran on the machine (goes into the results)",
    )
    parser.add_argument("--out", default=str(RESULTS / "live_contention"), help="path stem")
    parser.add_argument("--smoke", action="store_true", help="a gain model, 1 round, 3 s")
    parser.add_argument(
        "--use-running-server",
        action="store_true",
        help="use the JACK server $JACK_DEFAULT_SERVER names when one answers (tests)",
    )
    parser.add_argument("--measure", choices=MODES[:2], help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if args.measure:
        print(json.dumps(measure_windows(args.model_path, args.measure, args.windows)))
        return 0
    run = Run("live_contention", argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory(prefix="live-contention-") as folder:
        if args.smoke:
            from benchmarks.fixtures import full_window_gain_model

            args.model_path = str(full_window_gain_model(Path(folder)))
            args.rounds, args.seconds, args.windows = 1, 3.0, 3
        server, results = run_all(args)

    from stream_sep.models.bundled import bundled_model_path

    report = {
        "model": args.model_path or str(bundled_model_path()),
        "note": args.note,
        "rounds": args.rounds,
        "server": server,
        "rows": summarise(results, args.threads),
        "runs": results,
    }
    print(run.write(*at_stem(args.out), report, markdown(report)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
