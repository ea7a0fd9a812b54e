"""SDR against algorithmic latency over a sweep of streaming settings (a PNG plot; JSON and
Markdown on request).

For every (hop, lookahead) pair the clips are separated by the streaming engine exactly as
``stream-sep evaluate --streaming --hop H --lookahead L`` does (blocking, so no deadline
misses; delay removed), and the mean and median whole-clip SDR (MDX definition) of vocals and
accompaniment are recorded against the algorithmic latency ``lookahead + hop``. Pairs that do
not fit the model's window are skipped with a note.

    python -m benchmarks sdr_vs_latency --data ../shared/data/mir1k --format mir1k \\
        --singers Ani,Kenshin --limit 20 --out docs/sdr_vs_latency.png --json sweep.json \\
        --md sweep.md

Needs matplotlib (``pip install 'stream-sep[eval]'``).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path

from benchmarks.harness import Run, Stopwatch, table
from stream_sep import atomic, evaluation
from stream_sep.errors import UserError
from stream_sep.evaluation import datasets, metrics
from stream_sep.models.loading import load_model

log = logging.getLogger(__name__)

DEFAULT_HOPS = "0.25,0.5,1.0"
DEFAULT_LOOKAHEADS = "0.05,0.25,0.5,1.0"


def _seconds_list(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(value < 0 for value in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds >= 0, got {text!r}")
    return values


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="ONNX model (default: the bundled model)")
    parser.add_argument("--provider", default="auto")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--format", dest="data_format", required=True, choices=datasets.FORMATS)
    parser.add_argument("--split", choices=datasets.SPLITS)
    parser.add_argument("--singers", type=lambda text: text.split(","), help="mir1k: A,B")
    parser.add_argument("--limit", type=int, default=10, help="clips (default 10)")
    parser.add_argument("--every", type=int, default=1, help="every K-th clip (default 1)")
    parser.add_argument("--hops", type=_seconds_list, default=_seconds_list(DEFAULT_HOPS))
    parser.add_argument(
        "--lookaheads", type=_seconds_list, default=_seconds_list(DEFAULT_LOOKAHEADS)
    )
    parser.add_argument("--out", default="sdr_vs_latency.png", help="PNG path")
    parser.add_argument("--json", help="also write the measurements as JSON")
    parser.add_argument("--md", help="also write the measurements as a Markdown table")
    return parser


def sweep(model, clips: list[datasets.Clip], hops, lookaheads) -> tuple[list[dict], list[dict]]:
    """(rows, skipped): one row per fitting (hop, lookahead) with its latency, SDR statistics
    and separation time; one entry per setting that does not fit the model's window."""
    rows, skipped = [], []
    for hop in hops:
        for lookahead in lookaheads:
            options = evaluation.engine_options(True, hop, lookahead)
            try:
                plan = evaluation.describe_plan(model, options)
            except UserError as error:
                print(f"skipping hop {hop:g} s, lookahead {lookahead:g} s: {error}", flush=True)
                skipped.append({"hop": hop, "lookahead": lookahead, "reason": str(error)})
                continue
            rows.append(_measure(model, clips, options, plan))
            row = rows[-1]
            print(
                f"hop {hop:.3f} s, lookahead {lookahead:.3f} s: algorithmic latency "
                f"{plan['algorithmic_latency_seconds']:.3f} s, vocals SDR mean "
                f"{row['vocals_sdr']['mean']:.2f} dB, median {row['vocals_sdr']['median']:.2f} "
                f"dB ({row['separate_seconds']:.1f} s)",
                flush=True,
            )
    return rows, skipped


def _measure(model, clips, options: dict, plan: dict) -> dict:
    vocals_sdr, accompaniment_sdr = [], []
    with Stopwatch() as watch:
        for clip in clips:
            estimate = evaluation.estimate_vocals(model, clip.mixture, clip.sample_rate, options)
            vocals_sdr.append(metrics.sdr(clip.vocals, estimate))
            accompaniment_sdr.append(metrics.sdr(clip.accompaniment, clip.mixture - estimate))
    return {
        **plan,
        "vocals_sdr": _stats(vocals_sdr),
        "accompaniment_sdr": _stats(accompaniment_sdr),
        "separate_seconds": watch.seconds,
    }


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "median": statistics.median(values)}


def plot(rows: list[dict], baseline_db: float, title: str, path: Path) -> None:
    """Mean vocals SDR against algorithmic latency, one line per hop; written atomically."""
    try:
        import matplotlib
    except ImportError as error:
        raise UserError("matplotlib is needed: pip install 'stream-sep[eval]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for hop in sorted({row["hop_seconds"] for row in rows}):
        points = sorted(
            (row["algorithmic_latency_seconds"], row["vocals_sdr"]["mean"], row)
            for row in rows
            if row["hop_seconds"] == hop
        )
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        axes.plot(xs, ys, marker="o", label=f"hop {hop:g} s")
        for x, y, row in points:
            axes.annotate(
                f"L={row['lookahead_seconds']:g}",
                (x, y),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
            )
    axes.axhline(baseline_db, color="grey", linestyle="--", label="mixture as estimate")
    axes.set_xlabel("algorithmic latency = lookahead + hop (s)")
    axes.set_ylabel("vocals SDR, mean over clips (dB)")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    try:
        with atomic.write_path(path) as temporary:
            figure.savefig(temporary, dpi=120)
    finally:
        plt.close(figure)


def markdown(report: dict) -> list[str]:
    """The report's body: what was separated, one row per (hop, lookahead), the skips."""
    rows = [
        (
            f"{row['hop_seconds']:g}",
            f"{row['lookahead_seconds']:g}",
            f"{row['algorithmic_latency_seconds']:.3f}",
            f"{row['vocals_sdr']['mean']:.2f}",
            f"{row['vocals_sdr']['median']:.2f}",
            f"{row['accompaniment_sdr']['mean']:.2f}",
            f"{row['separate_seconds']:.1f}",
        )
        for row in report["rows"]
    ]
    lines = [
        f"{Path(report['model']).name} on {len(report['clips'])} clip(s), "
        f"{report['audio_seconds']:.0f} s of {report['format']}, the streaming engine "
        f"(blocking); mixture as estimate: {report['mixture_vocals_sdr_mean']:.2f} dB vocals SDR.",
        "",
        *table(
            [
                "hop s",
                "lookahead s",
                "algorithmic latency s",
                "vocals SDR mean",
                "vocals SDR median",
                "accompaniment SDR mean",
                "separation s",
            ],
            rows,
        ),  # fmt: skip
    ]
    for entry in report["skipped"]:
        lines += ["", f"Skipped hop {entry['hop']:g} s, lookahead {entry['lookahead']:g} s: "
                  f"{entry['reason']}"]  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    run = Run("sdr_vs_latency", argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        refs = datasets.find_clips(
            args.data, args.data_format, args.split, args.singers, args.limit, args.every
        )
        clips = [datasets.load_clip(ref) for ref in refs]
        model = load_model(args.model, provider=args.provider)
        rows, skipped = sweep(model, clips, args.hops, args.lookaheads)
        if not rows:
            raise UserError("no (hop, lookahead) pair fits this model's window")
        baseline = statistics.fmean(metrics.sdr(c.vocals, c.mixture) for c in clips)
        seconds = sum(clip.seconds for clip in clips)
        title = (
            f"{Path(str(model.path)).name} on {len(clips)} clip(s), {seconds:.0f} s "
            f"of {args.data_format} (streaming engine, blocking)"
        )
        plot(rows, baseline, title, Path(args.out))
        print(f"wrote {args.out}")
        if args.json or args.md:
            report = {
                "model": str(model.path),
                "data": args.data,
                "format": args.data_format,
                "clips": [clip.name for clip in clips],
                "audio_seconds": seconds,
                "mixture_vocals_sdr_mean": baseline,
                "rows": rows,
                "skipped": skipped,
            }
            run.write(args.json, args.md, report, markdown(report))
            print(f"wrote {' and '.join(path for path in (args.json, args.md) if path)}")
    except UserError as error:
        print(f"sdr_vs_latency: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
