"""Engine benchmark: where the time of one window goes, and what the
streaming engine itself costs per second of audio.

    python -m benchmarks bench_engine                  # test model, tiny and full presets
    python -m benchmarks bench_engine --smoke --out /tmp/bench

Per window (stereo = batch 2, 65024 model samples = 4.064 s at 16 kHz), medians in ms:
STFT (``spectral.to_network_input``), ONNX core (``SeparationModel.run_network``), iSTFT
(``spectral.from_network_output``), and the engine's resampling at a 48 kHz stream (the
window down to 16 kHz, the hop's vocal estimate back up; soxr, the engine's own calls).

Engine overhead: a 48 kHz stereo stream in 512-sample blocks through ``Separator`` with
``blocking=True`` and a model that returns zeros at once, so what is timed is the engine
alone (ring buffers, resampling, crossfade, mixing, output guard), per second of audio.
The total per second of audio adds the windows' own cost at the default 0.5 s hop.

Models: ``test`` is the tests' gain model at the full window (an ONNX graph of two nodes:
the host's fixed costs); ``tiny``/``small``/``full`` are the exported presets with random
weights, as in ``bench_inference`` (:func:`benchmarks.fixtures.cached_export`, cached under
~/.cache/stream-sep/bench/).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import soxr

from benchmarks.fixtures import cached_export, full_window_gain_model
from benchmarks.harness import RESULTS, ModelProxy, Run, Stopwatch, in_folder, median_ms
from stream_sep import engine
from stream_sep.dsp import spectral
from stream_sep.models.contract import ModelContract
from stream_sep.models.loading import load_model

MODELS = ("test", "tiny", "small", "full")
STREAM_RATE = 48000
BLOCK = 512
HOP = 0.5


def model_path(name: str, workdir: Path) -> Path:
    if name == "test":
        return full_window_gain_model(workdir, "test-gain.onnx")
    return cached_export(name, "fp32")


def window_costs(model, repeats: int) -> dict[str, float]:
    """Median ms of each stage of one stereo window, and of the engine's resampling."""
    contract = model.contract
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((2, contract.window_samples))).astype(np.float32)
    spectrogram = spectral.to_network_input(audio, contract)
    output = model.run_network(spectrogram).copy()
    null = ModelProxy(contract=contract)  # zeros at once: the engine's cost alone
    separator = engine.Separator(null, STREAM_RATE, 2, hop=HOP, blocking=True)
    stream_window = (0.1 * rng.standard_normal((2, separator.window_samples))).astype(np.float32)
    # The stretch of the vocal estimate the engine resamples back up: (samples, 2).
    stretch = np.ascontiguousarray(
        spectral.from_network_output(output, contract)[:, 0, separator._runner._model_slice].T
    )
    quality = engine.RESAMPLE_QUALITY
    return {
        "stft_ms": median_ms(lambda: spectral.to_network_input(audio, contract), repeats),
        "core_ms": median_ms(lambda: model.run_network(spectrogram), repeats),
        "istft_ms": median_ms(lambda: spectral.from_network_output(output, contract), repeats),
        "resample_down_ms": median_ms(
            lambda: separator._runner.to_model_rate(stream_window), repeats
        ),
        "resample_up_ms": median_ms(
            lambda: soxr.resample(stretch, contract.sample_rate, STREAM_RATE, quality), repeats
        ),
    }


def engine_overhead(contract: ModelContract, seconds: float) -> dict[str, float]:
    """ms of engine time per second of 48 kHz stereo audio, with a model that costs nothing."""
    null = ModelProxy(contract=contract)  # zeros at once: the engine's cost alone
    separator = engine.Separator(null, STREAM_RATE, 2, hop=HOP, blocking=True)
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal((2, int(seconds * STREAM_RATE)))).astype(np.float32)
    out = np.zeros((2, BLOCK), np.float32)
    with Stopwatch() as watch:
        for start in range(0, audio.shape[1] - BLOCK + 1, BLOCK):
            separator.process(audio[:, start : start + BLOCK], out=out)
    windows = separator.stats.windows_run
    separator.close()
    return {
        "engine_ms_per_audio_s": watch.seconds / seconds * 1e3,
        "windows_per_audio_s": windows / seconds,
        "block": BLOCK,
        "hop_s": HOP,
    }


HEADER = (
    "| model | STFT ms | ONNX core ms | iSTFT ms | resample 48k->16k (window) ms "
    "| resample 16k->48k (hop) ms | engine overhead ms per s of audio "
    "| total ms per s of audio (0.5 s hop) |"
)


def total_ms_per_audio_s(row: dict) -> float:
    """Engine overhead plus the windows' STFT + core + iSTFT, per second of audio."""
    window = row["stft_ms"] + row["core_ms"] + row["istft_ms"]
    return row["engine_ms_per_audio_s"] + row["windows_per_audio_s"] * window


def format_row(row: dict) -> str:
    total = total_ms_per_audio_s(row)
    return (
        f"| {row['model']} | {row['stft_ms']:.2f} | {row['core_ms']:.1f} | {row['istft_ms']:.2f} "
        f"| {row['resample_down_ms']:.2f} | {row['resample_up_ms']:.2f} "
        f"| {row['engine_ms_per_audio_s']:.1f} | {total:.0f} |"
    )


def markdown(rows: list[dict], meta: dict) -> list[str]:
    """The report's body: what ran, the table, how to read it."""
    lines = [
        f"onnxruntime {meta['onnxruntime']}, CPU provider, stereo (batch 2), {meta['repeats']} "
        f"runs per median{'; ' + meta['note'] if meta.get('note') else ''}.",
        "",
        HEADER,
        "|" + " --- |" * (HEADER.count(" | ") + 1),
    ]
    lines += [format_row(row) for row in rows]
    lines += [
        "",
        "Per stereo window of 4.064 s. Engine overhead: a 48 kHz stereo stream in 512-sample "
        "blocks through `Separator(blocking=True)` with a model that returns zeros at once "
        "(ring buffers, both resamplings, crossfade, mixing, output guard). Total = overhead "
        "+ 2 windows per second x (STFT + core + iSTFT).",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="test,tiny,full", help=f"among {', '.join(MODELS)}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0, help="audio for the overhead run")
    parser.add_argument(
        "--out", type=Path, help=f"results folder (default {RESULTS}; none with --smoke)"
    )
    parser.add_argument("--note", default="")
    parser.add_argument("--smoke", action="store_true", help="CI: the test model, 2 runs, 5 s")
    args = parser.parse_args(argv)
    run = Run("bench_engine", argv)
    if args.smoke:
        args.models, args.repeats, args.seconds = "test", 2, 5.0
    elif args.out is None:
        args.out = RESULTS
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    for name in names:
        if name not in MODELS:
            parser.error(f"--models must be among {', '.join(MODELS)}, got {name!r}")
    import onnxruntime

    print(HEADER, flush=True)
    rows = []
    overhead = engine_overhead(ModelContract(), args.seconds)
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            model = load_model(model_path(name, Path(workdir)), "cpu")
            row = {"model": name, **window_costs(model, args.repeats), **overhead}
            row["total_ms_per_audio_s"] = total_ms_per_audio_s(row)
            print(format_row(row), flush=True)
            rows.append(row)
    meta = {
        "onnxruntime": onnxruntime.__version__,
        "repeats": args.repeats,
        "note": args.note,
    }
    if args.out is not None:
        run.write(
            *in_folder(args.out, "engine"), {"meta": meta, "rows": rows}, markdown(rows, meta)
        )
        print(f"wrote {args.out / 'engine.json'} and {args.out / 'engine.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
