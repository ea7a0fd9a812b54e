"""Whether consecutive live windows could share their STFT frames: how far the frames they
have in common differ, and what reusing them would change in the estimate (no timings).

    python -m benchmarks stft_frame_sharing                  # the bundled model
    python -m benchmarks stft_frame_sharing --pairs 4 --out /tmp/sharing

The live engine resamples each window to the model rate as a whole (soxr, ``HQ``:
:meth:`stream_sep.engine.window.WindowRunner.to_model_rate`) and the model takes its centred
STFT (hop ``contract.hop_length`` model samples, reflect padding at both ends). Window
``k + 1`` starts ``hop`` stream samples after window ``k``, ``d = hop * model_rate / rate``
model samples. Only when ``d`` is a whole multiple of the STFT hop do the frames line up:
frame ``j`` of window ``k + 1`` then covers the samples of frame ``j + d / hop_length`` of
window ``k``. Frames that touch a window's reflect padding (the first and last
``n_fft / (2 hop_length)``) are never shared.

For each case (stream rate, hop) and consecutive window pairs of a generated full-band song
this writes: the model-rate samples' largest difference over the overlap (the resampler's
edge effects included), over the overlap without its ``n_fft / 2`` samples at either end, and
over the stretch the shared frames read (whose ends the Hann window weighs near zero), the shared frames'
largest difference (relative to the largest frame magnitude), and, running the model on
window ``k + 1`` with its shared frames taken from window ``k``, the vocal estimate's largest
difference and the SDR of the cached estimate against the uncached one.

Writes benchmarks/results/stft_frame_sharing.{json,md} (or ``--out STEM``).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from benchmarks.harness import RESULTS, Run, at_stem
from stream_sep.dsp import spectral
from stream_sep.engine.plan import WindowPlan
from stream_sep.engine.window import WindowRunner
from stream_sep.models.loading import load_model

# (stream rate, hop seconds): the default hop at the usual rates, and hops whose model-rate
# shift is a multiple of the STFT hop (0.512 s = 16 frames at 48 kHz; 0.16 s = 5 frames at
# 44.1 kHz, the shortest such hop whose stream shift is whole: 7056 samples).
CASES = ((16000, 0.512), (48000, 0.5), (48000, 0.512), (44100, 0.5), (44100, 0.16))


def song(seconds: float, rate: int) -> np.ndarray:
    from tests.helpers import full_band_song

    mixture, _, _ = full_band_song(seconds, rate, seed=0)
    return mixture[None, :].astype(np.float32)


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """10 log10(|reference|^2 / |reference - estimate|^2) in dB; inf when equal."""
    error = float(np.sum((reference.astype(np.float64) - estimate) ** 2))
    if error == 0.0:
        return math.inf
    return 10 * math.log10(float(np.sum(reference.astype(np.float64) ** 2)) / error)


def measure_case(model, rate: int, hop: float, pairs: int) -> dict:
    contract = model.contract
    plan = WindowPlan.build(contract, rate, hop, 0.25, 0.064)
    runner = WindowRunner(model, plan)
    shift = plan.hop_samples * contract.sample_rate / rate
    row = {"rate": rate, "hop_s": hop, "hop_samples": plan.hop_samples, "model_shift": shift}
    aligned = shift == int(shift) and int(shift) % contract.hop_length == 0
    edge_frames = contract.n_fft // (2 * contract.hop_length)
    frames = contract.input_shape[1]
    if not aligned:
        return {**row, "shared_frames": 0, "note": "shift not a multiple of the STFT hop"}
    shift, frame_shift = int(shift), int(shift) // contract.hop_length
    shared = list(range(edge_frames, frames - frame_shift - edge_frames))
    seconds = (pairs + 1) * plan.hop_samples / rate + plan.window_samples / rate + 0.1
    audio = song(seconds, rate)

    def model_input(k: int) -> np.ndarray:
        window = audio[:, k * plan.hop_samples : k * plan.hop_samples + plan.window_samples]
        if not runner._resample:
            return np.ascontiguousarray(window)
        return np.ascontiguousarray(runner.to_model_rate(window), np.float32)

    overlap = interior_dev = sample_dev = frame_dev = estimate_dev = 0.0
    frame_peak, worst_sdr = 0.0, math.inf
    # The model-rate samples the shared frames read (window k + 1's own indices).
    hop_length, half = contract.hop_length, contract.n_fft // 2
    read = slice(shared[0] * hop_length - half, shared[-1] * hop_length + half)
    for k in range(pairs):
        first, second = model_input(k), model_input(k + 1)
        length = plan.model_window - shift
        difference = np.abs(second[:, :length] - first[:, shift:])
        overlap = max(overlap, float(difference.max()))
        interior_dev = max(interior_dev, float(difference[:, half:-half].max()))
        sample_dev = max(sample_dev, float(difference[:, read].max()))
        spectrum_first = spectral.to_network_input(first, contract)
        spectrum_second = spectral.to_network_input(second, contract)
        mapped = [j + frame_shift for j in shared]
        frame_dev = max(
            frame_dev,
            float(np.abs(spectrum_second[:, shared] - spectrum_first[:, mapped]).max()),
        )
        frame_peak = max(frame_peak, float(np.abs(spectrum_second).max()))
        cached = spectrum_second.copy()
        cached[:, shared] = spectrum_first[:, mapped]
        vocals = contract.source_index("vocals")
        plain = spectral.from_network_output(model.run_network(spectrum_second), contract)
        plain = plain[:, vocals].copy()
        reused = spectral.from_network_output(model.run_network(cached), contract)[:, vocals]
        estimate_dev = max(estimate_dev, float(np.abs(plain - reused).max()))
        worst_sdr = min(worst_sdr, sdr(plain, reused))
    return {
        **row,
        "shared_frames": len(shared),
        "frames": frames,
        "pairs": pairs,
        "overlap_max_abs": overlap,
        "overlap_interior_max_abs": interior_dev,
        "read_stretch_max_abs": sample_dev,
        "frame_max_abs": frame_dev,
        "frame_max_relative": frame_dev / frame_peak if frame_peak else 0.0,
        "estimate_max_abs": estimate_dev,
        "estimate_sdr_db": worst_sdr,
    }


def markdown(rows: list[dict]) -> list[str]:
    """The cases as one Markdown table (an SDR of inf: the estimates are identical)."""
    lines = [
        "| stream rate | hop s | model shift | shared frames | overlap max abs "
        "| overlap without its n_fft/2 ends "
        "| read stretch max abs | frames max abs (relative) | estimate max abs "
        "| estimate SDR dB (worst pair) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if not row["shared_frames"]:
            lines.append(
                f"| {row['rate']} | {row['hop_s']:g} | {row['model_shift']:g} | 0 "
                f"({row['note']}) | | | | | | |"
            )
            continue
        lines.append(
            f"| {row['rate']} | {row['hop_s']:g} | {row['model_shift']:g} | "
            f"{row['shared_frames']} of {row['frames']} | {row['overlap_max_abs']:.3g} | "
            f"{row['overlap_interior_max_abs']:.3g} | "
            f"{row['read_stretch_max_abs']:.3g} | {row['frame_max_abs']:.3g} "
            f"({row['frame_max_relative']:.2g}) | {row['estimate_max_abs']:.3g} | "
            f"{row['estimate_sdr_db']:.1f} |"
        )
    return lines


def _json_safe(row: dict) -> dict:
    """inf (identical estimates) as the string "inf": JSON has no infinity."""
    return {k: "inf" if isinstance(v, float) and math.isinf(v) else v for k, v in row.items()}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="ONNX model (default: the bundled model)")
    parser.add_argument("--pairs", type=int, default=6, help="window pairs per case (default 6)")
    parser.add_argument("--out", default=str(RESULTS / "stft_frame_sharing"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    run = Run("stft_frame_sharing", argv)
    model = load_model(args.model, "cpu")
    rows = [measure_case(model, rate, hop, args.pairs) for rate, hop in CASES]
    for row in rows:
        print(row)
    data = {"model": str(model.path), "cases": [_json_safe(row) for row in rows]}
    title = f"STFT frames shared by consecutive live windows ({model.path.name})"
    run.write(*at_stem(args.out), data, markdown(rows), title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
