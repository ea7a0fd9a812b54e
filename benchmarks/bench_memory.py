"""Memory benchmark: peak resident memory of ``stream-sep separate`` and of the live
command with a file input, against the length of the song.

    python -m benchmarks bench_memory                       # 1, 5 and 20 minutes
    python -m benchmarks bench_memory --smoke --out /tmp/bench

Each run is a fresh process (``python -m stream_sep ...``) on a generated 44.1 kHz stereo
FLAC; its peak RSS comes from ``getrusage(RUSAGE_CHILDREN)`` of a one-shot helper process,
so runs do not see each other's peaks. The model is the tests' gain model at the full 4 s
window: the engine, the readers and the writers are measured, not a network's weights.
Both commands stream their input, so the peak should not grow with the song; a command
that loaded the song whole would grow by about 10 MB per stereo minute and copy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.fixtures import full_window_gain_model
from benchmarks.harness import REPO, RESULTS, Run, Stopwatch, in_folder

RATE = 44100
# Runs the command given as arguments and prints the child's peak RSS in kB (Linux: ru_maxrss
# is in kB). A separate process per measurement, so one run's peak never hides the next one.
_PEAK_RSS = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
    "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def write_song(path: Path, minutes: float) -> None:
    """Noise at -20 dBFS, written a second at a time (the benchmark itself stays small)."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", RATE, 2, "PCM_16") as handle:
        for _ in range(int(minutes * 60)):
            handle.write((0.1 * rng.standard_normal((RATE, 2))).astype(np.float32))


def peak_rss_mb(command: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of ``command``; raises if it fails."""
    with Stopwatch() as watch:
        result = subprocess.run(
            [sys.executable, "-c", _PEAK_RSS, *command],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
    code, kilobytes = result.stdout.split()
    if code != "0":
        raise RuntimeError(f"{' '.join(command)} exited {code}")
    return int(kilobytes) / 1024, watch.seconds


def commands(song: Path, model: Path, work: Path) -> dict[str, list[str]]:
    python = [sys.executable, "-m", "stream_sep"]
    return {
        "separate": [*python, "separate", str(song), "-o", str(work / "out"), "--model", str(model), "--quiet"],
        # file -> file runs on a real-time clock; --duration keeps it short while the file
        # (decoded ahead by a reader thread) is as long as the song.
        "live file input": [
            *python, "--input", str(song), "--output", str(work / "live.wav"),
            "--model", str(model), "--duration", "3", "--quiet",
        ],
    }  # fmt: skip


def measure(minutes_list: list[float]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="stream-sep-memory-") as folder:
        work = Path(folder)
        model = full_window_gain_model(work)
        for minutes in minutes_list:
            song = work / f"song-{minutes:g}min.flac"
            write_song(song, minutes)
            song_mb = minutes * 60 * RATE * 2 * 4 / 2**20  # as float32 in memory
            for name, command in commands(song, model, work).items():
                peak, seconds = peak_rss_mb(command)
                row = {
                    "command": name,
                    "minutes": minutes,
                    "song_float32_mb": round(song_mb, 1),
                    "peak_rss_mb": round(peak, 1),
                    "seconds": round(seconds, 1),
                }
                rows.append(row)
                print(
                    f"| {name} | {minutes:g} min | {song_mb:.0f} MB | {peak:.0f} MB | {seconds:.1f} s |",
                    flush=True,
                )
            song.unlink()
    return rows


def markdown(rows: list[dict], note: str) -> list[str]:
    """The report's body: what ran, one row per command and song length."""
    lines = [
        f"{note + '. ' if note else ''}Peak resident memory of one process, 44.1 kHz stereo "
        "FLAC input, the gain test model at the full 4 s window.",
        "",
        HEADER,
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['command']} | {r['minutes']:g} min | {r['song_float32_mb']:.0f} MB "
        f"| {r['peak_rss_mb']:.0f} MB | {r['seconds']:.1f} s |"
        for r in rows
    ]
    return lines


HEADER = "| command | song | song as float32 | peak RSS | wall time |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", default="1,5,20", help="song lengths (default 1,5,20)")
    parser.add_argument("--out", type=Path, help=f"results folder (default {RESULTS})")
    parser.add_argument("--note", default="", help="a note for the markdown")
    parser.add_argument("--smoke", action="store_true", help="CI: 0.1 and 0.3 minutes")
    args = parser.parse_args(argv)
    run = Run("bench_memory", argv)
    minutes = [0.1, 0.3] if args.smoke else [float(m) for m in args.minutes.split(",")]
    out = args.out or (None if args.smoke else RESULTS)
    print(HEADER, flush=True)
    rows = measure(minutes)
    if out is not None:
        data = {"meta": {"note": args.note}, "rows": rows}
        run.write(*in_folder(out, "memory"), data, markdown(rows, args.note))
        print(f"wrote {out / 'memory.json'} and {out / 'memory.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
