"""Offline quality: today's plan (the streaming engine, blocking) against overlap-add.

Each clip's mixture is separated by ``stream_sep.offline.estimate_vocals`` (like_live) at the engine's
defaults (what ``stream-sep evaluate`` scores today) and by
``stream_sep.offline.overlap_add.separate_overlap_add`` at each hop fraction asked for; the vocals
and accompaniment (mixture minus vocals) are scored with the MDX whole-clip SDR
(``stream_sep.evaluation.metrics.sdr``). Clips: held-out MIR-1K singers (16 kHz; channel 0
accompaniment, channel 1 vocals, the mixture their mono sum) and, optionally, generated
voice-over-band clips from the tests' helpers.

    python -m benchmarks offline_quality --mir1k ../shared/data/mir1k --singers abjones,amy \\
        --every 6 --generated 4 --hop-fractions 0.25,0.5,0.75

Writes benchmarks/results/offline_quality.{json,md}. Times are per plan and clip on a shared
machine: read them as rough ratios, not as speed figures (bench_offline.py measures speed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from benchmarks.harness import RESULTS, Run, Stopwatch, at_stem
from stream_sep import offline
from stream_sep.evaluation import datasets, metrics
from stream_sep.models.loading import load_model
from stream_sep.offline import overlap_add

TODAY = "today"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="ONNX model (default: the bundled model)")
    parser.add_argument("--mir1k", metavar="DIR", help="MIR-1K folder (stereo .wav/.flac)")
    parser.add_argument("--singers", default="abjones,amy", help="MIR-1K singers (A,B)")
    parser.add_argument("--every", type=int, default=6, help="every K-th clip (default 6)")
    parser.add_argument(
        "--generated", type=int, default=0, metavar="N", help="also N generated 10 s clips"
    )
    parser.add_argument(
        "--hop-fractions",
        default="0.25,0.5,0.75",
        help="overlap-add hops, as fractions of the window (default 0.25,0.5,0.75)",
    )
    parser.add_argument("--out", default=str(RESULTS / "offline_quality"), help="path stem")
    parser.add_argument(
        "--rescore",
        metavar="JSON",
        help="summarise the clips of an earlier run's JSON again (no separation) into --out",
    )
    return parser


def clips(args) -> list[datasets.Clip]:
    """The MIR-1K clips asked for, then the generated ones; each (1, samples) at 16 kHz."""
    found = []
    if args.mir1k:
        refs = datasets.find_clips(
            args.mir1k, "mir1k", singers=args.singers.split(","), every=args.every
        )
        found += [datasets.load_clip(ref) for ref in refs]
    if args.generated:
        from tests.helpers import voice_over_band

        for seed in range(args.generated):
            mixture, vocals, accompaniment = voice_over_band(10.0, 16000, seed=seed)
            found.append(
                datasets.Clip(
                    f"generated_{seed}", 16000, mixture[None], vocals[None], accompaniment[None]
                )
            )
    return found


def plans(fractions: list[float]) -> dict:
    """{name: function(model, mixture, rate) -> vocals}: today's plan, then overlap-add."""
    table = {
        TODAY: lambda model, audio, rate: offline.estimate_vocals(
            model, audio, rate, warm_up=False, like_live=True
        )
    }
    for fraction in fractions:
        table[f"overlap-add {fraction:g}"] = lambda model, audio, rate, f=fraction: (
            overlap_add.separate_overlap_add(model, audio, rate, hop_fraction=f)
        )
    return table


def score_clip(model, clip: datasets.Clip, table: dict) -> dict:
    row = {"name": clip.name, "seconds": clip.seconds, "plans": {}}
    for name, run in table.items():
        with Stopwatch() as watch:
            vocals = run(model, clip.mixture, clip.sample_rate)
        took = watch.seconds
        row["plans"][name] = {
            "vocals_sdr": metrics.sdr(clip.vocals, vocals),
            "accompaniment_sdr": metrics.sdr(clip.accompaniment, clip.mixture - vocals),
            "seconds": took,
        }
    return row


def summarise(rows: list[dict]) -> dict:
    """{plan: {clips, vocals_sdr, accompaniment_sdr (means), vocals_sdr_median,
    seconds_per_audio_second}}."""
    summary = {}
    for name in rows[0]["plans"]:
        cells = [r["plans"][name] for r in rows]
        summary[name] = {
            "clips": len(cells),
            "vocals_sdr": statistics.fmean(c["vocals_sdr"] for c in cells),
            "accompaniment_sdr": statistics.fmean(c["accompaniment_sdr"] for c in cells),
            "vocals_sdr_median": statistics.median(c["vocals_sdr"] for c in cells),
            "seconds_per_audio_second": sum(c["seconds"] for c in cells)
            / sum(r["seconds"] for r in rows),
        }
    return summary


def paired_difference(rows: list[dict], plan: str) -> dict:
    """Per-clip vocals SDR of ``plan`` minus today's: mean, its standard error, and the
    clips better / worse."""
    diffs = [r["plans"][plan]["vocals_sdr"] - r["plans"][TODAY]["vocals_sdr"] for r in rows]
    spread = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    return {
        "mean_db": statistics.fmean(diffs),
        "standard_error_db": spread,
        "better": sum(d > 0 for d in diffs),
        "worse": sum(d < 0 for d in diffs),
    }


def markdown(report: dict) -> list[str]:
    """The report's body: one table per group of clips."""
    lines = []
    if "rescored" in report:
        lines += [f"Summaries recomputed {report['rescored']} with --rescore.", ""]
    lines += [
        "Mean whole-clip SDR (MDX definition), dB; `today` is the streaming engine at its "
        "defaults (hop 0.5 s, lookahead 0.25 s, crossfade 0.064 s), overlap-add at a hop of "
        "the given fraction of the 4.064 s window. Paired: per-clip vocals SDR minus "
        "today's (mean ± standard error; clips better/worse).",
        "",
    ]
    for group, summary in report["summaries"].items():
        lines += [
            f"### {group}",
            "",
            "| plan | clips | vocals SDR | accompaniment SDR | vs today (vocals) | s per audio s |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, cell in summary.items():
            paired = report["paired"].get(group, {}).get(name)
            versus = (
                f"{paired['mean_db']:+.2f} ± {paired['standard_error_db']:.2f} dB "
                f"({paired['better']}/{paired['worse']})"
                if paired
                else "-"
            )
            lines.append(
                f"| {name} | {cell['clips']} | {cell['vocals_sdr']:.2f} | "
                f"{cell['accompaniment_sdr']:.2f} | {versus} | "
                f"{cell['seconds_per_audio_second']:.3f} |"
            )
        lines.append("")
    return lines


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.rescore:
        run, report = Run.recorded(json.loads(Path(args.rescore).read_text()))
        report["rescored"] = time.strftime("%Y-%m-%d %H:%M")
        plan_names = list(report["clips"][0]["plans"])
        return write(run, report, args.out, report["clips"], plan_names)
    if not args.mir1k and not args.generated:
        print("nothing to score: pass --mir1k DIR and/or --generated N", file=sys.stderr)
        return 2
    run = Run("offline_quality", argv)
    fractions = [float(part) for part in args.hop_fractions.split(",")]
    model = load_model(args.model)
    model.warm_up(1)
    table = plans(fractions)
    rows = []
    chosen = clips(args)
    for index, clip in enumerate(chosen):
        rows.append(score_clip(model, clip, table))
        cells = "  ".join(f"{n} {c['vocals_sdr']:.2f}" for n, c in rows[-1]["plans"].items())
        print(
            f"[{index + 1}/{len(chosen)}] {clip.name} ({clip.seconds:.1f} s): {cells}", flush=True
        )
    report = {"model": str(model.path)}
    return write(run, report, args.out, rows, list(table))


def write(run: Run, report: dict, out: str, rows: list[dict], plan_names: list[str]) -> int:
    """Summaries per group (MIR-1K, generated) into ``report``; writes out.{json,md}."""
    summaries, paired = {}, {}
    mir1k_rows = [r for r in rows if not r["name"].startswith("generated_")]
    generated_rows = [r for r in rows if r["name"].startswith("generated_")]
    for group, chosen_rows in (("MIR-1K", mir1k_rows), ("generated", generated_rows)):
        if chosen_rows:
            summaries[group] = summarise(chosen_rows)
            paired[group] = {n: paired_difference(chosen_rows, n) for n in plan_names if n != TODAY}
    report.update(summaries=summaries, paired=paired, clips=rows)
    print(run.write(*at_stem(out), report, markdown(report)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
