"""Fitting the machine, measured: offline throughput of the old and new plans, and the live
latency ``--latency auto`` chooses for each model, in one run on one machine.

    python -m benchmarks bench_latency                    # bundled + small + full presets
    python -m benchmarks bench_latency --smoke --out DIR  # CI: a gain model, seconds

Offline: the same generated stereo 44.1 kHz song through the live plan (``--like-live``:
a 4.064 s window every 0.5 s, each resampled on its own) and through the throughput plan
(centred windows, overlap-add, one resampling); real-time factor = wall time / audio time,
model rows per audio second = windows x channels the model computed per second of audio.
Live: :func:`stream_sep.engine.fitting.measure` and ``choose`` at 48 kHz, stereo and mono,
as the live command does at start-up: the chosen hop, stereo handling, compute allowance,
latency and load (the 90th-percentile window time / hop). Both parts run with the host's
default window options (:meth:`stream_sep.settings.Settings.window_options`: the Wiener
post-filter since 2026-11-28), as ``stream-sep`` does; ``--postfilter none`` measures
without. The small and full presets run with random weights
(:func:`benchmarks.fixtures.cached_export`). Writes ``latency.json`` and ``latency.md`` to
--out (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

from benchmarks.fixtures import cached_export, full_window_gain_model
from benchmarks.harness import RESULTS, ModelProxy, Run, Stopwatch, in_folder
from stream_sep import offline
from stream_sep.dsp.postfilter import POSTFILTERS
from stream_sep.engine import fitting
from stream_sep.models.loading import load_model
from stream_sep.settings import Settings

SONG_RATE = 44100
LIVE_RATE = 48000


def song(seconds: float, rate: int = SONG_RATE) -> np.ndarray:
    """(2, n) float32: a voice-like tone over noise, different in the two channels."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    voice = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.01 * np.sin(2 * np.pi * 5 * t)))
    band = 0.1 * rng.standard_normal((2, t.size))
    return (band + voice).astype(np.float32)


def offline_rows(model, seconds: float, window_options: dict) -> list[dict]:
    audio = song(seconds)
    rows = []
    for name, like_live in (("live plan (--like-live)", True), ("throughput plan", False)):
        counted = ModelProxy(model)
        estimate = functools.partial(
            offline.estimate_vocals, counted, like_live=like_live, **window_options
        )
        estimate(audio[:, :SONG_RATE], SONG_RATE)
        counted.rows = 0
        with Stopwatch() as watch:
            estimate(audio, SONG_RATE)
        took = watch.seconds
        rows.append(
            {
                "plan": name,
                "seconds": seconds,
                "wall_s": round(took, 2),
                "rtf": round(took / seconds, 4),
                "model_rows_per_audio_s": round(counted.rows / seconds, 3),
            }
        )
    rows.append({"plan": "speed-up", "ratio": round(rows[0]["wall_s"] / rows[1]["wall_s"], 2)})
    return rows


def live_rows(name: str, model, window_options: dict) -> list[dict]:
    rows = []
    for channels in (2, 1):
        speed = fitting.measure(model, LIVE_RATE, channels, **window_options)
        fit = fitting.choose(model.contract, LIVE_RATE, channels, speed)
        rows.append(
            {
                "model": name,
                "channels": channels,
                "stereo": fit.stereo,
                "window_s_t90": round(fit.window_seconds, 4),
                "hop_s": fit.hop,
                "lookahead_s": round(fit.lookahead, 4),
                "crossfade_s": fit.crossfade,
                "compute_s": fit.compute,
                "latency_s": round(fit.latency, 4),
                "load": round(fit.load, 3),
            }
        )
    return rows


TITLE = "Fitting the machine"


def markdown(report: dict) -> list[str]:
    """The report's body: the window options, the offline table, the live table."""
    lines = [
        "Window options (as stream-sep's defaults unless given): "
        + ", ".join(f"{name} {value}" for name, value in report["window_options"].items()),
        "",
        "## Offline",
        "",
        "| plan | audio s | wall s | real-time factor | model rows / audio s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in report["offline"]:
        if "ratio" in row:
            lines.append(f"| speed-up (live plan / throughput plan) | | {row['ratio']}x | | |")
        else:
            lines.append(
                f"| {row['plan']} | {row['seconds']} | {row['wall_s']} | {row['rtf']} "
                f"| {row['model_rows_per_audio_s']} |"
            )
    lines += [
        "",
        "## Live, `--latency auto` at 48 kHz",
        "",
        "| model | channels | stereo | t90 per window s | hop s | lookahead s | "
        "crossfade s | compute s | latency s | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["live"]:
        lines.append(
            f"| {r['model']} | {r['channels']} | {r['stereo']} | {r['window_s_t90']} | "
            f"{r['hop_s']} | {r['lookahead_s']} | {r['crossfade_s']} | "
            f"{r['compute_s']} | {r['latency_s']} | {r['load']} |"
        )
    return lines


def models(smoke: bool, presets: list[str], out: Path):
    if smoke:
        return [("gain test model", load_model(full_window_gain_model(out), "cpu"))]
    found = [("bundled", load_model(None, "cpu"))]
    for preset in presets:
        found.append((f"{preset} (random)", load_model(cached_export(preset, "fp32"), "cpu")))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--presets", default="small,full")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument(
        "--postfilter", choices=POSTFILTERS, help="default: the host's (stream-sep's) default"
    )
    args = parser.parse_args(argv)
    run = Run("bench_latency", argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds = 5.0 if args.smoke else args.seconds
    chosen = models(args.smoke, [p for p in args.presets.split(",") if p], out)
    window_options = Settings(postfilter=args.postfilter).window_options()
    report = {
        "window_options": window_options,
        "offline": offline_rows(chosen[0][1], seconds, window_options),
        "live": [row for name, model in chosen for row in live_rows(name, model, window_options)],
    }
    print(run.write(*in_folder(out, "latency"), report, markdown(report), TITLE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
