"""A live run through the JACK dummy device at a chosen ``--latency``: exit status, the
reported latency against the delay measured in what reached the output, deadline misses,
xruns and load.

    python -m benchmarks live_jack --latency 0.5 --seconds 30
    python -m benchmarks live_jack --latency auto --model stream_sep/models/vocals-mir1k.onnx

``stream-sep --input mic --output headphones --latency L`` runs in this process against the
JACK clients ``mic`` and ``headphones`` of :mod:`tests.jack_harness`: ``mic`` plays a
generated song (a voice over drums and bass, :func:`tests.helpers.voice_over_band`, the same
on both channels) and ``headphones`` records the karaoke. The delay is measured by
cross-correlating the song's accompaniment with the recording over the whole song and over
each third of it: a karaoke at the reported latency gives the same lag every time. A JACK
dummy server of its own is started (48 kHz, 1024 frames, synchronous) unless
``JACK_DEFAULT_SERVER`` names a running one, and a user cache of its own (no speed history
of earlier starts). Timings need a quiet machine.

Writes benchmarks/results/live_jack.{json,md} (or ``--out STEM``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import tempfile

import numpy as np

from benchmarks.harness import RESULTS, Run, Stopwatch, at_stem, table

RATE, PERIOD = 48000, 1024
# The test clients record 30 s: the song, the latency and the 2 s captured after it must fit,
# or the run is only stopped by the harness's deadline.
MAX_SONG_SECONDS = 27.0
SERVER = "stream-sep-bench"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", default="0.5", help="auto or seconds (default 0.5)")
    parser.add_argument(
        "--seconds", type=float, default=27.0, help="song length, at most 27 (default 27)"
    )
    parser.add_argument("--model", help="a model file (default: the bundled choice)")
    parser.add_argument("--out", default=str(RESULTS / "live_jack"), help="path stem")
    return parser


@contextlib.contextmanager
def jack_server():
    """A JACK dummy server for the run (the one ``JACK_DEFAULT_SERVER`` names if set)."""
    if os.environ.get("JACK_DEFAULT_SERVER"):
        yield os.environ["JACK_DEFAULT_SERVER"]
        return
    command = ["jackd", "-n", SERVER, "-S", "--no-realtime", "-d", "dummy", "-r", str(RATE)]
    command += ["-p", str(PERIOD)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.environ["JACK_DEFAULT_SERVER"] = SERVER
        wait = ["jack_wait", "-w", "-s", SERVER]
        subprocess.run(wait, timeout=30, check=True, capture_output=True)
        yield SERVER
    finally:
        import sounddevice

        sounddevice._terminate()  # PortAudio lets go of the server before it stops
        os.environ.pop("JACK_DEFAULT_SERVER", None)
        process.terminate()
        process.wait(timeout=10)


def counter(err: str, pattern: str) -> int | None:
    found = re.search(pattern, err)
    return int(found.group(1)) if found else None


def measured_delays(capture: np.ndarray, accompaniment: np.ndarray, reported: int) -> list:
    """The lag of the accompaniment in ``capture`` (C, m): over the whole song, then each
    third of it (searched from where that third starts)."""
    from tests.jack_harness import find_delay

    n = accompaniment.size
    spans = [(0, n)] + [(k * n // 3, (k + 1) * n // 3) for k in range(3)]
    delays = []
    for first, last in spans:
        piece = np.stack([accompaniment[first:last]] * 2)
        window = capture[:, first : last + 2 * reported]
        delays.append(find_delay(window, piece))
    return delays


def run_once(args) -> dict:
    from tests.helpers import voice_over_band
    from tests.jack_harness import Harness, opened, run_in_process

    argv = ["--input", "mic", "--output", "headphones", "--mode", "karaoke"]
    argv += ["--latency", args.latency]
    if args.model:
        argv += ["--model", args.model]
    with opened(Harness) as harness:
        mixture, _vocals, accompaniment = voice_over_band(args.seconds, harness.rate, seed=5)
        song = np.stack([mixture, mixture])
        err_text = io.StringIO()
        with Stopwatch() as watch, contextlib.redirect_stderr(err_text):
            rc = run_in_process(harness, argv, song, tail_s=2.0)
        wall = watch.seconds
        err = err_text.getvalue()
        print(err)
        reported = counter(err, r"latency [0-9.]+ s \((\d+) samples\)")
        delays = []
        if rc == 0 and reported is not None:
            delays = measured_delays(harness.capture, accompaniment, reported)
        return {
            "argv": argv,
            "exit_status": rc,
            "reported_latency_samples": reported,
            "reported_latency_s": None if reported is None else reported / harness.rate,
            "measured_delays_samples": delays,
            "delay_equals_reported": bool(delays) and all(d == reported for d in delays),
            "windows": counter(err, r"(\d+) windows \("),
            "deadline_misses": counter(err, r"(\d+) deadline misses"),
            "xruns": counter(err, r"(\d+) xruns\n"),
            "harness_xruns": harness.xruns,
            "load": _load(err),
            "plan_lines": [line for line in err.splitlines() if "plan:" in line or "aims" in line],
            "stderr_last_lines": err.strip().splitlines()[-4:],
            "wall_s": round(wall, 1),
        }


def _load(err: str) -> float | None:
    found = re.search(r"load (\d+\.\d+); latency", err)
    return float(found.group(1)) if found else None


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if not 0 < args.seconds <= MAX_SONG_SECONDS:
        raise SystemExit(
            f"live_jack: --seconds must be in (0, {MAX_SONG_SECONDS}], got {args.seconds}"
        )
    run = Run("live_jack", argv)
    os.environ["STREAM_SEP_JACK"] = "1"
    # A user cache of its own: the plan comes from this start's speed measurement alone, not
    # from the speed history of earlier starts on this machine (a busy one included).
    with tempfile.TemporaryDirectory() as cache, jack_server():
        os.environ["XDG_CACHE_HOME"] = cache
        result = run_once(args)
    ok = (
        result["exit_status"] == 0
        and result["delay_equals_reported"]
        and (result["deadline_misses"] or 0) <= 1
    )
    reported = result["reported_latency_samples"]
    shown = "-" if reported is None else f"{reported / RATE:.3f} s ({reported} samples)"
    rows = [
        ["exit status", result["exit_status"]],
        ["reported latency", shown],
        ["measured delay (whole, thirds)", ", ".join(map(str, result["measured_delays_samples"]))],
        ["windows / deadline misses", f"{result['windows']} / {result['deadline_misses']}"],
        ["xruns (stream-sep / test clients)", f"{result['xruns']} / {result['harness_xruns']}"],
        ["load", result["load"]],
    ]
    body = [
        f"`stream-sep --input mic --output headphones --mode karaoke --latency {args.latency}` "
        f"through the JACK dummy device (48 kHz, 1024 frames), a {args.seconds:g} s "
        "generated song.",
        "",
        *table(["", "value"], rows),
        "",
        *[f"- {line}" for line in result["plan_lines"] or result["stderr_last_lines"]],
        "",
        f"Exit 0, delay equal to the reported latency everywhere, at most 1 deadline miss: "
        f"{'yes' if ok else 'no'}.",
    ]
    json_path, md_path = at_stem(args.out)
    print(run.write(json_path, md_path, {"result": result, "ok": ok}, body, "Live through JACK"))
    return 0
