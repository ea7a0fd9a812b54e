"""What karaoke leaves of the voice above the model's band, with and without
``--high-band-voice-removal``, on generated full-band songs at 44.1 kHz.

Each song is ``tests/helpers.full_band_song``: a formant voice with sibilants and breath
(energy up to 14 kHz) over kick, snare, bass, a pad and hi-hats (up to 16 kHz). The mono
mixture goes through the streaming engine at the live default settings (what ``stream-sep
evaluate --streaming`` runs, delay removed) with the bundled model, once per removal
fraction. Above 8 kHz (what a 16 kHz model cannot see), with ``k`` the karaoke output, ``v``
and ``a`` the true voice and band:

- ``voice kept``: the share of the voice's high band still in the karaoke, in dB, as the
  least-squares gain of ``v`` in ``k`` (0 dB: all of it, as without the option);
- ``band kept``: the same for the instruments' high band (0 dB: the hats untouched);
- ``error``: the energy of ``k - a`` above 8 kHz over that of ``v`` (0 dB without the option);
- ``karaoke SDR``: the whole-band SDR of ``k`` against ``a`` at 44.1 kHz.

    python -m benchmarks high_band_voice --songs 6 --seconds 20 \
        --md benchmarks/results/high_band_voice.md --json benchmarks/results/high_band_voice.json
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from benchmarks.harness import Run
from stream_sep import evaluation
from stream_sep.evaluation import metrics
from stream_sep.models.loading import load_model
from tests.helpers import full_band_song

RATE = 44100
CUTOFF = 8000.0


def high_band(audio: np.ndarray, rate: int = RATE, cutoff: float = CUTOFF) -> np.ndarray:
    """(n,) float64: the part of ``audio`` above ``cutoff`` (an FFT mask, zero phase)."""
    spectrum = np.fft.rfft(audio.astype(np.float64))
    spectrum[np.fft.rfftfreq(audio.size, 1.0 / rate) <= cutoff] = 0.0
    return np.fft.irfft(spectrum, audio.size)


def gain_db(part: np.ndarray, whole: np.ndarray) -> float:
    """20 log10 of the least-squares gain of ``part`` in ``whole``."""
    gain = float(np.dot(whole, part) / max(np.dot(part, part), 1e-20))
    return 20 * np.log10(max(gain, 1e-6))


def measure_song(model, seed: int, seconds: float, removals: list[float]) -> dict:
    mixture, vocals, band = full_band_song(seconds, RATE, seed)
    voice_high, band_high = high_band(vocals), high_band(band)
    rows = {}
    for removal in removals:
        options = evaluation.engine_options(True, high_band_voice_removal=removal)
        estimate = evaluation.estimate_vocals(model, mixture[None], RATE, options)[0]
        karaoke = mixture - estimate
        karaoke_high = high_band(karaoke)
        rows[str(removal)] = {
            "voice_kept_db": gain_db(voice_high, karaoke_high),
            "band_kept_db": gain_db(band_high, karaoke_high),
            "error_db": 10
            * np.log10(np.sum((karaoke_high - band_high) ** 2) / np.sum(voice_high**2)),
            "karaoke_sdr": metrics.sdr(band, karaoke),
            "vocals_sdr": metrics.sdr(vocals, estimate),
        }
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="ONNX model (default: the bundled one)")
    parser.add_argument("--songs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--removals", default="0,0.5,1")
    parser.add_argument("--json")
    parser.add_argument("--md")
    args = parser.parse_args(argv)
    run = Run("high_band_voice", argv)
    removals = [float(value) for value in args.removals.split(",")]
    model = load_model(args.model, provider="cpu")
    songs = []
    for seed in range(args.songs):
        rows = measure_song(model, seed, args.seconds, removals)
        songs.append(rows)
        cells = "  ".join(
            f"{key}: voice {row['voice_kept_db']:+.1f} band {row['band_kept_db']:+.1f} "
            f"SDR {row['karaoke_sdr']:.2f}"
            for key, row in rows.items()
        )
        print(f"song {seed}: {cells}", flush=True)
    summary = {
        key: {
            measure: statistics.fmean(song[key][measure] for song in songs)
            for measure in songs[0][key]
        }
        for key in songs[0]
    }
    report = {"model": str(model.path), "songs": songs, "seconds": args.seconds}
    report["summary"] = summary
    body = format_markdown(summary, args.songs, args.seconds)
    print(run.write(args.json, args.md, report, body), end="")
    return 0


def format_markdown(summary: dict, songs: int, seconds: float) -> list[str]:
    """The report's body: one row per removal fraction (means over the songs)."""
    lines = [
        f"{songs} generated songs of {seconds:g} s at 44.1 kHz, mono, streaming default "
        "settings; means over songs; above 8 kHz unless said",
        "",
        "| removal | voice kept | band kept | karaoke error re voice | karaoke SDR (full band) "
        "| vocals SDR (full band) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, row in summary.items():
        lines.append(
            f"| {key} | {row['voice_kept_db']:+.1f} dB | {row['band_kept_db']:+.1f} dB | "
            f"{row['error_db']:+.1f} dB | {row['karaoke_sdr']:.2f} dB | {row['vocals_sdr']:.2f} dB |"
        )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
