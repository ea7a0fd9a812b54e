"""Quality against latency for the bundled models: the plan ``--latency auto`` chooses for each
on this machine, and what that plan scores on real songs and on MIR-1K.

For each model (default: both bundled models), at a 48 kHz stereo stream with 1024-frame
blocks as the live host fits it: the model's speed (:func:`stream_sep.engine.fitting.measure`,
``--starts`` measurements, their median as the host's speed history takes it), then
:func:`~stream_sep.engine.fitting.choose` for the lowest latency at the load ceiling, and
``--latency 0.5`` where it fits. Each plan is then scored with ``stream-sep evaluate
--streaming`` at its hop and lookahead: on ``--songs`` (a stems folder, ``--mix-from-stems``)
and on ``--mir1k`` (every ``--every``-th clip of ``--singers``). Timings need a quiet machine;
scores do not.

    nice -n 5 python -m benchmarks live_frontier --songs DIR --mir1k DIR

Writes benchmarks/results/live_frontier.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.harness import RESULTS, Run
from stream_sep.cli import main as stream_sep_main
from stream_sep.engine import fitting
from stream_sep.errors import UserError
from stream_sep.models.bundled import BUNDLED_MODEL, LIVE_MODEL
from stream_sep.models.loading import load_model
from stream_sep.settings import Settings

RATE, CHANNELS, BLOCK = 48000, 2, 1024
TARGETS = (None, 0.5)  # None: --latency auto's lowest


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", metavar="M", help="default: both bundled")
    parser.add_argument("--songs", metavar="DIR", help="stems folder of real songs")
    parser.add_argument("--mir1k", metavar="DIR", help="the MIR-1K folder")
    parser.add_argument(
        "--singers", default="abjones,amy", help="MIR-1K singers (default %(default)s)"
    )
    parser.add_argument("--every", type=int, default=3, help="MIR-1K: every K-th clip")
    parser.add_argument("--starts", type=int, default=3, help="speed measurements per model")
    parser.add_argument("--out", default=str(RESULTS / "live_frontier"), help="path stem")
    return parser


def plans(path: Path, starts: int) -> list[dict]:
    """The plans the live host would choose for ``path``: auto's and --latency 0.5's."""
    model = load_model(path, "cpu")
    model.warm_up(batch=CHANNELS)
    options = Settings().window_options()
    measured = [fitting.measure(model, RATE, CHANNELS, **options) for _ in range(starts)]
    speed = fitting.typical(measured)
    found = []
    for target in TARGETS:
        try:
            fit = fitting.choose(model.contract, RATE, CHANNELS, speed, target, None, BLOCK / RATE)
        except UserError as refused:
            found.append({"target": target, "refused": str(refused)})
            continue
        found.append({
            "target": target, "latency": fit.latency, "hop": fit.hop,
            "lookahead": fit.lookahead, "stereo": fit.stereo, "load": round(fit.load, 3),
            "window_seconds": round(fit.window_seconds, 4),
            "window_t90_per_start": [round(m.t90(fit.stereo), 4) for m in measured],
        })  # fmt: skip
    return found


def score(path: Path, plan: dict, data: str, data_format: str, extra: list[str]) -> dict:
    """Mean vocals and accompaniment SDR of ``stream-sep evaluate --streaming`` at ``plan``."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        argv = ["evaluate", "--model", str(path), "--data", data, "--format", data_format,
                "--streaming", "--hop", f"{plan['hop']:g}", "--lookahead",
                f"{plan['lookahead']:g}", "--stereo", plan["stereo"], "--no-museval",
                "--json", str(report), *extra]  # fmt: skip
        if stream_sep_main(argv) != 0:
            raise SystemExit(f"evaluate failed: {' '.join(argv)}")
        summary = json.loads(report.read_text())["summary"]["model"]
    return {stem: round(summary[stem]["sdr"]["mean"], 3) for stem in ("vocals", "accompaniment")}


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    run = Run("live_frontier", argv)
    models = [Path(m) for m in args.model] if args.model else [BUNDLED_MODEL, LIVE_MODEL]
    rows = []
    for path in models:
        for plan in plans(path, args.starts):
            row = {"model": path.name, **plan}
            if "refused" not in plan and args.songs:
                row["real_songs"] = score(path, plan, args.songs, "stems", ["--mix-from-stems"])
            if "refused" not in plan and args.mir1k:
                mir1k = ["--singers", args.singers, "--every", str(args.every)]
                row["mir1k"] = score(path, plan, args.mir1k, "mir1k", mir1k)
            rows.append(row)
    text = run.write(f"{args.out}.json", f"{args.out}.md", {"rows": rows}, table(rows, args))
    print(text)
    return 0


def table(rows: list[dict], args) -> list[str]:
    lines = [
        f"48 kHz stereo, {BLOCK}-frame blocks; speed: the median of {args.starts} start-up "
        f"measurements; scores: `stream-sep evaluate --streaming` at each plan's hop, "
        f"lookahead and stereo handling (real songs: the sum of the stems; MIR-1K: every "
        f"{args.every}th clip of {args.singers}). SDR in dB.",
        "",
        "| model | asked | latency | hop | stereo | load | s per window | real songs vocals "
        "| real songs accomp. | MIR-1K vocals |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        asked = "auto" if row["target"] is None else f"{row['target']:g} s"
        if "refused" in row:
            lines.append(f"| {row['model']} | {asked} | refused: {row['refused']} |")
            continue
        songs, mir1k = row.get("real_songs", {}), row.get("mir1k", {})
        lines.append(
            f"| {row['model']} | {asked} | {row['latency']:.3f} s | {row['hop']:.2f} s "
            f"| {row['stereo']} | {row['load']:.2f} | {row['window_seconds']:.3f} "
            f"| {songs.get('vocals', '-')} | {songs.get('accompaniment', '-')} "
            f"| {mir1k.get('vocals', '-')} |"
        )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
