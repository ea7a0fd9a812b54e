"""Which singers are hard, and why: each MIR-1K singer's pitch and level next to the
vocals SDR a cross-validation report gave them.

For every clip of a MIR-1K folder, the vocals' fundamental frequency is estimated frame by
frame (40 ms frames, 20 ms apart, by autocorrelation between 70 and 1000 Hz) on the frames
that are loud (energy over a tenth of the clip's loudest frame) and voiced (the
autocorrelation peak over half the frame's energy); per singer the median of all those frames
is reported with the vocal-to-accompaniment ratio (RMS, dB) and, given ``--report`` (a
``benchmarks/cross_validate.py --json`` report), the singer's SDR and the rank correlation
(Spearman) between pitch and SDR over singers, then the same clip by clip inside each singer
(each scored clip's own median f0 against its SDR, and the SDR gained per octave higher): a
singer's own lower clips scoring worse points at the pitch, not at the voice or the recording.
A crude estimate meant for a singer's typical range, not a melody::

    python -m benchmarks singer_pitch --data ../shared/data/mir1k \\
        --report benchmarks/results/cross-validation-cheap.json --md pitch.md

About 20 s for MIR-1K's 611 clips on the 2-core machine; no model runs.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import scipy.stats

from benchmarks import harness
from benchmarks.cross_validate import load_report
from stream_sep.cli_runner import run_main
from stream_sep.errors import UserError
from stream_sep.evaluation import datasets

FRAME_SECONDS, HOP_SECONDS = 0.04, 0.02
LOWEST_HZ, HIGHEST_HZ = 70.0, 1000.0
LOUD, VOICED = 0.1, 0.5  # of the loudest frame's energy; of the frame's own energy


def frame_pitches(vocals: np.ndarray, rate: int) -> np.ndarray:
    """The fundamental (Hz) of each loud, voiced frame of a mono signal: (samples,) -> (k,)."""
    size, hop = int(FRAME_SECONDS * rate), int(HOP_SECONDS * rate)
    if vocals.size < size:
        return np.empty(0)
    frames = np.lib.stride_tricks.sliding_window_view(vocals, size)[::hop]
    energy = np.mean(np.square(frames), axis=1)
    frames = frames[energy > LOUD * energy.max()] if energy.max() > 0 else frames[:0]
    frames = (frames - frames.mean(axis=1, keepdims=True)) * np.hanning(size)
    spectrum = np.fft.rfft(frames, 2 * size)
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2)[:, :size]
    shortest, longest = int(rate / HIGHEST_HZ), int(rate / LOWEST_HZ)
    lags = shortest + np.argmax(autocorrelation[:, shortest:longest], axis=1)
    peaks = autocorrelation[np.arange(len(lags)), lags]
    voiced = peaks > VOICED * autocorrelation[:, 0]
    return rate / lags[voiced]


def level_db(vocals: np.ndarray, accompaniment: np.ndarray) -> float:
    """Vocal-to-accompaniment RMS ratio in dB (-inf for silent vocals)."""
    band = float(np.sqrt(np.mean(np.square(accompaniment))))
    voice = float(np.sqrt(np.mean(np.square(vocals))))
    return 20 * np.log10(max(voice, 1e-12) / max(band, 1e-12))


def clip_measures(data: Path) -> dict[str, dict]:
    """``{clip name: {"singer", "pitches" (Hz, one per loud voiced frame), "level_db"}}`` for
    every clip of a MIR-1K folder, in name order."""
    clips = {}
    for ref in datasets.find_clips(data, "mir1k"):
        clip = datasets.load_clip(ref)
        clips[ref.name] = {
            "singer": datasets.mir1k_singer(ref.name),
            "pitches": frame_pitches(clip.vocals.mean(axis=0), clip.sample_rate),
            "level_db": level_db(clip.vocals, clip.accompaniment),
        }
    return clips


def singer_table(clips: dict[str, dict]) -> dict[str, dict]:
    """``{singer: {clips, median_f0_hz, vocal_to_accompaniment_db}}`` from
    :func:`clip_measures` (the median over all the singer's voiced frames)."""
    singers = sorted({clip["singer"] for clip in clips.values()}, key=str.lower)
    table = {}
    for singer in singers:
        own = [clip for clip in clips.values() if clip["singer"] == singer]
        frames = np.concatenate([clip["pitches"] for clip in own])
        table[singer] = {
            "clips": len(own),
            "median_f0_hz": float(np.median(frames)) if frames.size else None,
            "vocal_to_accompaniment_db": statistics.fmean(clip["level_db"] for clip in own),
        }
    return table


def within_singers(clips: dict[str, dict], report: dict, least: int = 5) -> dict:
    """Pitch against SDR clip by clip, inside each singer: does a singer's own lower clips
    score worse (the pitch), or only the singer as a whole (the voice, the recording)?

    For each singer with at least ``least`` clips scored in ``report`` that have a pitch:
    ``{"clips", "f0_p10_hz", "f0_p90_hz", "spearman"`` (clip median f0 against clip SDR),
    ``"db_per_octave"`` (least-squares slope of SDR on log2 f0)``}``; ``"mean_spearman"``
    over those singers and ``"all_clips_spearman"`` over every scored clip (None when
    fewer than 3)."""
    scored = {c["name"]: c["vocals_sdr"] for fold in report["folds"] for c in fold["clips"]}
    points: dict[str, list[tuple[float, float]]] = {}
    for name, sdr in scored.items():
        if name in clips and clips[name]["pitches"].size:
            f0 = float(np.median(clips[name]["pitches"]))
            points.setdefault(clips[name]["singer"], []).append((f0, sdr))
    singers = {}
    for singer in sorted(points, key=str.lower):
        f0s, sdrs = map(np.array, zip(*points[singer], strict=True))
        if len(f0s) < least or np.ptp(f0s) == 0:
            continue
        singers[singer] = {
            "clips": len(f0s),
            "f0_p10_hz": float(np.percentile(f0s, 10)),
            "f0_p90_hz": float(np.percentile(f0s, 90)),
            "spearman": spearman(f0s, sdrs),
            "db_per_octave": float(scipy.stats.linregress(np.log2(f0s), sdrs).slope),
        }
    every = [point for own in points.values() for point in own]
    return {
        "singers": singers,
        "mean_spearman": statistics.fmean(c["spearman"] for c in singers.values())
        if singers
        else None,
        "all_clips_spearman": spearman(*zip(*every, strict=True)) if len(every) >= 3 else None,
    }


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation of two equally long lists (at least 3 values)."""
    return float(scipy.stats.spearmanr(x, y).statistic)


def add_sdr(table: dict[str, dict], report: dict) -> float | None:
    """Put each singer's SDR from a cross-validation report into ``table``; return the
    rank correlation of pitch and SDR over the singers that have both (None under 3)."""
    for singer, cell in report.get("by_singer", {}).items():
        if singer in table:
            table[singer]["sdr"] = cell["mean"]
    both = [c for c in table.values() if "sdr" in c and c["median_f0_hz"] is not None]
    if len(both) < 3:
        return None
    return spearman([c["median_f0_hz"] for c in both], [c["sdr"] for c in both])


def table_order(cell: dict) -> tuple:
    """Singers with an SDR first, weakest first; then the others, lowest voice first."""
    if "sdr" in cell:
        return (0, cell["sdr"])
    return (1, cell["median_f0_hz"] if cell["median_f0_hz"] is not None else float("inf"))


def within_lines(within: dict) -> list[str]:
    """The within-singer table of :func:`within_singers`, weakest relation last."""
    rows = [
        (singer, cell["clips"], f"{cell['f0_p10_hz']:.0f}-{cell['f0_p90_hz']:.0f} Hz",
         f"{cell['spearman']:+.2f}", f"{cell['db_per_octave']:+.1f} dB")
        for singer, cell in sorted(within["singers"].items(), key=lambda i: -i[1]["spearman"])
    ]  # fmt: skip
    if not rows:
        return []
    lines = [
        "Within each singer, clip by clip (each scored clip's own median f0 against its SDR):",
        "",
        *harness.table(
            (
                "singer",
                "scored clips",
                "clip f0, 10th-90th percentile",
                "rank correlation",
                "SDR per octave higher",
            ),
            rows,
        ),  # fmt: skip
        "",
        f"Mean within-singer rank correlation **{within['mean_spearman']:+.2f}**",
    ]
    if within["all_clips_spearman"] is not None:
        lines[-1] += f" (over all scored clips: {within['all_clips_spearman']:+.2f})"
    return lines


def format_markdown(singers: dict[str, dict], correlation: float | None, report_name) -> list[str]:
    """The singers' table, weakest first, and the rank correlation of pitch and SDR."""
    with_sdr = any("sdr" in cell for cell in singers.values())
    header = ["singer", "clips", "median f0", "vocals / accompaniment"]
    header += [f"vocals SDR ({report_name})"] if with_sdr else []
    rows = []
    for singer in sorted(singers, key=lambda singer: table_order(singers[singer])):
        cell = singers[singer]
        f0 = cell["median_f0_hz"]
        row = [singer, cell["clips"], "-" if f0 is None else f"{f0:.0f} Hz",
               f"{round(cell['vocal_to_accompaniment_db'], 1) + 0.0:+.1f} dB"]  # fmt: skip
        if with_sdr:
            row.append(f"{cell['sdr']:.2f} dB" if "sdr" in cell else "-")
        rows.append(row)
    lines = harness.table(header, rows)
    if correlation is not None:
        lines += ["", f"Rank correlation (Spearman) of median f0 and SDR: **{correlation:+.2f}**"]
    return lines


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a MIR-1K folder")
    parser.add_argument("--report", type=Path, help="a cross_validate.py --json report")
    parser.add_argument("--json", type=Path, help="write the table as JSON")
    parser.add_argument("--md", type=Path, help="write the table as Markdown")
    return parser.parse_args(argv)


def run(argv=None) -> dict:
    this_run = harness.Run("singer_pitch", argv)
    args = parse_args(argv)
    report = load_report(args.report, "--report") if args.report else None
    clips = clip_measures(args.data)
    singers = singer_table(clips)
    if not singers:
        raise UserError(f"no MIR-1K clips (<singer>_<song>_<clip>) in {args.data}")
    correlation = add_sdr(singers, report) if report else None
    body = format_markdown(singers, correlation, args.report.name if args.report else None)
    result = {"singers": singers, "pitch_sdr_spearman": correlation}
    if report:
        result["within_singers"] = within_singers(clips, report)
        within = within_lines(result["within_singers"])
        if within:
            body += ["", *within]
    print(this_run.write(args.json, args.md, result, body), end="")
    return result


def main(argv=None) -> int:
    """Exit 0; a user error is one line and exit 2."""
    return run_main("singer_pitch.py", lambda: run(argv) and 0)  # run gives the table


if __name__ == "__main__":
    raise SystemExit(main())
