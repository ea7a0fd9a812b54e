"""Quality on real produced songs: ``stream-sep evaluate --format stems`` for one or more models,
offline and streaming, as one table per model (per song and mean, vocals and accompaniment SDR).

Each model is evaluated twice on the stems folder (one folder per song, see docs/evaluation.md):
offline with the settings of ``stream-sep separate`` and ``--streaming`` with the streaming
engine's default plan (hop 0.5 s, lookahead 0.25 s; ``--hop``/``--lookahead`` change it). The
live command's ``--latency auto`` picks its plan from this machine's speed, so it is not what
is scored here. Scores are the command's: whole-clip SDR (MDX) with ``--trim`` seconds left
out at both ends, SI-SDR, museval's SDR with ``--museval``; the L-R centre and mixture
baselines come from the offline run (they do not depend on the model or the plan).

    nice -n 5 python -m benchmarks real_songs --data DIR --mix-from-stems

Writes benchmarks/results/real_songs.{json,md} (numbers and song names, no audio).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import REPO, RESULTS, Run, at_stem
from stream_sep.cli import main as stream_sep_main

MODES = ("offline", "streaming")
STEMS = ("vocals", "accompaniment")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", metavar="DIR", help="the stems folder")
    parser.add_argument(
        "--model",
        action="append",
        metavar="M",
        help="an ONNX model; repeat for several (default: the bundled model)",
    )
    parser.add_argument(
        "--mix-from-stems", action="store_true", help="separate the sum of the stems"
    )
    parser.add_argument("--trim", type=float, help="evaluate's --trim (default its own, 0.05 s)")
    parser.add_argument("--hop", type=float, help="streaming: seconds between windows")
    parser.add_argument("--lookahead", type=float, help="streaming: seconds of lookahead")
    parser.add_argument(
        "--museval", action="store_true", help="also museval's SDR (minutes per song)"
    )
    parser.add_argument("--out", default=str(RESULTS / "real_songs"), help="path stem")
    parser.add_argument(
        "--rescore",
        metavar="JSON",
        help="write the table of an earlier run's JSON again (no separation) to --out's .md",
    )
    return parser


def evaluate_argv(args, model: str | None, mode: str) -> list[str]:
    """The ``stream-sep evaluate`` arguments of one run, without ``--json``."""
    argv = ["evaluate", "--format", "stems", "--data", args.data]
    if model is not None:
        argv += ["--model", model]
    if args.mix_from_stems:
        argv.append("--mix-from-stems")
    if args.trim is not None:
        argv += ["--trim", str(args.trim)]
    if not args.museval:
        argv.append("--no-museval")
    if mode == "streaming":
        argv.append("--streaming")
        for option in ("hop", "lookahead"):
            if getattr(args, option) is not None:
                argv += [f"--{option}", str(getattr(args, option))]
    return argv


def run_evaluations(args) -> list[dict] | None:
    """One evaluate report per (model, mode), or None when a run failed (its error printed)."""
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for model in args.model or [None]:
            for mode in MODES:
                json_path = Path(folder) / f"{len(runs)}.json"
                argv = evaluate_argv(args, model, mode)
                print(f"$ stream-sep {' '.join(argv)}", flush=True)
                if stream_sep_main([*argv, "--json", str(json_path)]) != 0:
                    return None
                report = json.loads(json_path.read_text())
                report["model"] = _shown(report["model"])
                runs.append({"argv": argv, **report})
    return runs


def _shown(path: str) -> str:
    """A model path relative to the repository when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return path


def song_table(runs: list[dict], model: str) -> list[dict]:
    """Per song: {name, seconds, <mode> {stem: SDR}, centre/mixture {stem: SDR}}."""
    by_mode = {run["mode"]: run for run in runs if run["model"] == model}
    rows = []
    for clip in by_mode["offline"]["clips"]:
        row = {"name": clip["name"], "seconds": clip["seconds"]}
        for mode in MODES:
            (match,) = [c for c in by_mode[mode]["clips"] if c["name"] == clip["name"]]
            row[mode] = {stem: match["scores"]["model"][stem]["sdr"] for stem in STEMS}
        for method in ("centre-cancel", "mixture"):
            scores = clip["scores"].get(method)
            row[method] = {stem: scores[stem]["sdr"] if scores else None for stem in STEMS}
        rows.append(row)
    return rows


def column_statistics(rows: list[dict], statistic) -> dict:
    """{column: {stem: statistic over songs}} for every scored column."""
    result = {}
    for column in (*MODES, "centre-cancel", "mixture"):
        result[column] = {}
        for stem in STEMS:
            values = [row[column][stem] for row in rows if row[column][stem] is not None]
            result[column][stem] = statistic(values) if values else None
    return result


def markdown(report: dict) -> list[str]:
    """The report's body: what was scored and how, one table per model."""
    lines = []
    if "rescored" in report:
        lines += [f"Table written again {report['rescored']} with --rescore.", ""]
    lines += [
        f"{_songs_text(report['runs'])}. Whole-clip SDR (MDX definition), dB, with "
        f"{1000 * report['trim_seconds']:g} ms left out at both ends, scored at each song's "
        "own rate; accompaniment = mixture - vocals estimate. Offline: the settings of "
        "`stream-sep separate`; streaming: the streaming engine at "
        f"{report['streaming_plan']}. Mixture separated: "
        + (
            "the sum of the stems (--mix-from-stems)."
            if report["mix_from_stems"]
            else "each song's mixture file (the stems' sum where it has none)."
        ),
        "",
    ]
    for name, reason in report["skipped"].items():
        lines += [f"Skipped {name!r}: {reason}", ""]
    header = (
        "| song | s | offline vocals | offline accomp. | streaming vocals | streaming accomp. "
        "| L-R centre vocals | L-R centre accomp. | mixture vocals | mixture accomp. |"
    )
    for model, table in report["models"].items():
        lines += [f"### {model}", "", header, "| --- " * 10 + "|"]
        for row in table["songs"]:
            lines.append(_row(row["name"], f"{row['seconds']:.1f}", row))
        for statistic in ("mean", "median"):
            lines.append(_row(f"**{statistic}**", "", table[statistic], bold=statistic == "mean"))
        lines.append("")
    return lines


def _songs_text(runs: list[dict]) -> str:
    """'4 songs, 44.1 kHz, stereo' from the clips scored."""
    clips = {clip["name"]: clip for run in runs for clip in run["clips"]}.values()
    rates = sorted({clip["sample_rate"] for clip in clips})
    channels = sorted({clip["channels"] for clip in clips})
    rate_text = ", ".join(f"{rate / 1000:g} kHz" for rate in rates)
    channel_text = " and ".join({1: "mono", 2: "stereo"}.get(n, f"{n} channels") for n in channels)
    return f"{len(clips)} songs, {rate_text}, {channel_text}"


def _row(name: str, seconds: str, cells: dict, bold: bool = False) -> str:
    values = []
    for column in (*MODES, "centre-cancel", "mixture"):
        for stem in STEMS:
            value = cells[column][stem]
            text = "-" if value is None else f"{value:.2f}"
            values.append(f"**{text}**" if bold and column in MODES else text)
    return f"| {name} | {seconds} | " + " | ".join(values) + " |"


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.rescore:
        earlier, report = Run.recorded(json.loads(Path(args.rescore).read_text()))
        report["rescored"] = time.strftime("%Y-%m-%d %H:%M")
        _, md_path = at_stem(args.out)
        print(earlier.write(None, md_path, report, markdown(report)), end="")
        return 0
    if args.data is None:
        print("real_songs.py: --data DIR is needed (or --rescore JSON)", file=sys.stderr)
        return 2
    this_run = Run("real_songs", argv)
    runs = run_evaluations(args)
    if runs is None:
        return 2
    models = {}
    for model in dict.fromkeys(run["model"] for run in runs):
        rows = song_table(runs, model)
        models[model] = {
            "songs": rows,
            "mean": column_statistics(rows, statistics.fmean),
            "median": column_statistics(rows, statistics.median),
        }
    streaming = next(run for run in runs if run["mode"] == "streaming")["engine"]
    report = {
        "data": args.data,
        "mix_from_stems": args.mix_from_stems,
        "trim_seconds": runs[0]["trim_seconds"],
        "streaming_plan": (
            f"hop {streaming['hop_seconds']:g} s, lookahead {streaming['lookahead_seconds']:g} s, "
            f"crossfade {streaming['crossfade_seconds']:g} s"
        ),
        "skipped": {entry["name"]: entry["reason"] for run in runs for entry in run["skipped"]},
        "models": models,
        "runs": runs,
    }
    print(this_run.write(*at_stem(args.out), report, markdown(report)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
