"""Whole-process real-time factor of ``stream-sep separate``: start-up (imports, model load)
included, for each windows-per-call setting.

    python -m benchmarks separate_process                     # a 120 s stereo 44.1 kHz song
    python -m benchmarks separate_process --seconds 30 --batch-windows 1 2 4 --rounds 3

Each run is a fresh ``python -m stream_sep separate SONG -o OUT --overwrite`` process on a
generated song (:func:`benchmarks.fixtures.song`: a voice over two bands), with the
bundled model unless ``--model``. Three figures per run: the wall time measured around the
process (``outside_s``), and the command's own final line, "separated 1 file (S s of audio)
in W s, F x real time including start-up" (``reported_s``, from the package's import, so
without the interpreter's own start), and its per-file line (the separation alone). Start-up
is ``outside_s`` minus the separation. Settings are interleaved round by round so that the
machine's load moves all of them alike; the report gives each setting's median.

Writes benchmarks/results/separate_process.{json,md} (or ``--out STEM``). The machine is
shared: the load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile as sf

from benchmarks.harness import REPO, RESULTS, Run, Stopwatch, at_stem

FINAL = re.compile(r"in (\d+\.\d) s, (\d+\.\d+) x real time including start-up$")
PER_FILE = re.compile(r": (\d+\.\d) s separated in (\d+\.\d) s ")
RATE = 44100


def command(song: Path, out: Path, model: str | None, batch_windows: int | None) -> list[str]:
    argv = [sys.executable, "-m", "stream_sep", "separate", str(song), "-o", str(out)]
    argv += ["--overwrite"]
    if model:
        argv += ["--model", model]
    if batch_windows is not None:
        argv += ["--batch-windows", str(batch_windows)]
    return argv


def run_once(argv: list[str]) -> dict:
    """One process: its wall time from outside and the figures its lines report."""
    with Stopwatch() as watch:
        result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return parse(result.stderr, watch.seconds)


def parse(stderr: str, outside: float) -> dict:
    """The figures of a run's stderr: its per-file line and its final line."""
    lines = stderr.strip().splitlines()
    final, per_file = FINAL.search(lines[-1]), PER_FILE.search(lines[-2])
    if final is None or per_file is None:
        raise RuntimeError(f"unexpected output: {stderr.strip()}")
    audio, separation = float(per_file.group(1)), float(per_file.group(2))
    return {
        "outside_s": outside,
        "outside_rtf": outside / audio,
        "reported_s": float(final.group(1)),
        "reported_rtf": float(final.group(2)),
        "separation_s": separation,
        "separation_rtf": separation / audio,
        "start_up_s": outside - separation,
    }


def summarize(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def markdown(seconds: float, rows: dict) -> list[str]:
    lines = [
        f"A {seconds:g} s stereo {RATE} Hz song, medians over the rounds.",
        "",
        "| batch windows | whole process s | whole-process RTF | reported RTF "
        "| separation RTF | start-up s |",
        "|---|---|---|---|---|---|",
    ]
    for setting, row in rows.items():
        lines.append(
            f"| {setting} | {row['outside_s']:.2f} | {row['outside_rtf']:.3f} | "
            f"{row['reported_rtf']:.3f} | {row['separation_rtf']:.3f} | {row['start_up_s']:.2f} |"
        )
    return lines


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="ONNX model (default: the bundled model)")
    parser.add_argument("--seconds", type=float, default=120.0, help="song length (default 120)")
    parser.add_argument(
        "--batch-windows",
        type=int,
        nargs="+",
        default=[0],
        help="windows per model call to compare; 0: the command's default (default: 0)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs per setting (default 3)")
    parser.add_argument("--out", default=str(RESULTS / "separate_process"))
    return parser


def main(argv: list[str] | None = None) -> int:
    from benchmarks.fixtures import song

    args = get_parser().parse_args(argv)
    run = Run("separate_process", argv)
    settings = [value or None for value in args.batch_windows]
    runs: dict[str, list[dict]] = {str(value or "default"): [] for value in settings}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "song.wav"
        sf.write(path, song(args.seconds, RATE).T, RATE, subtype="FLOAT")
        for _ in range(args.rounds):
            for value in settings:
                result = run_once(command(path, Path(folder) / "out", args.model, value))
                runs[str(value or "default")].append(result)
                print(value or "default", result)
    rows = {setting: summarize(results) for setting, results in runs.items()}
    data = {"seconds": args.seconds, "rate": RATE, "settings": rows, "runs": runs}
    title = "stream-sep separate, whole process (start-up included)"
    run.write(*at_stem(args.out), data, markdown(args.seconds, rows), title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
