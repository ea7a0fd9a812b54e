"""Offline throughput: today's plan against overlap-add, in one run on one machine.

    python -m benchmarks bench_offline                 # the bundled model, a 60 s song
    python -m benchmarks bench_offline --seconds 10 --no-sweeps --out /tmp/offline

Three sections, all in one process so that their ratios share the machine's state:

1. Batch sizes: the model's time per row of ``B`` for 1..8 windows per call, mono
   (``B = 1..8``) and stereo (``B = 2..16``), ``SeparationModel.separate`` (STFT, ONNX
   core, iSTFT), in interleaved rounds.
2. Threads: per-row time of the ONNX core at ``B = 2`` with the host's session options
   (``providers.session_options``: intra-op threads = the cores, one inter-op thread, no
   spinning) and alternatives: one intra-op thread, spinning on, the parallel executor with
   two inter-op threads, and two one-thread sessions run side by side from two threads.
3. Plans: the same generated stereo 44.1 kHz song separated by (a) today's plan,
   ``stream_sep.offline.separate_array(like_live=True)`` (the streaming engine, blocking) and (b)
   ``stream_sep.offline.overlap_add.separate_overlap_add`` at its defaults, in the order b, a, b.
   Real-time factor = wall time / audio seconds; windows per audio second count the rows the
   model computed (a stereo window is two rows) and the window positions.

Writes benchmarks/results/offline.{json,md} (or ``--out STEM``). The machine is shared:
only ratios within one run mean anything; the load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import threading
from pathlib import Path

import numpy as np

from benchmarks.fixtures import song
from benchmarks.harness import RESULTS, ModelProxy, Run, Stopwatch, at_stem, timed
from stream_sep.dsp import spectral
from stream_sep.models import providers
from stream_sep.models.loading import load_model, read_model_file
from stream_sep.offline import overlap_add, separate_array

RATE = 44100
BATCH_ROWS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16)  # B: 1..8 windows, mono or stereo


# ---------------------------------------------------------------------------- 1. batch sizes
def batch_sweep(model, rounds: int, repeats: int) -> list[dict]:
    """Per-row ms of ``model.separate`` for each batch size in :data:`BATCH_ROWS` (medians
    and minima over interleaved rounds): 1..8 windows per call, mono (B = windows) and
    stereo (B = 2 x windows)."""
    rng = np.random.default_rng(0)
    window = model.contract.window_samples
    inputs = {
        rows: (0.1 * rng.standard_normal((rows, window))).astype(np.float32) for rows in BATCH_ROWS
    }
    for batch in inputs.values():
        model.separate(batch)  # buffers for this batch size
    times: dict[int, list[float]] = {rows: [] for rows in BATCH_ROWS}
    for _ in range(rounds):
        for rows, batch in inputs.items():
            for _ in range(repeats):
                times[rows].append(timed(functools.partial(model.separate, batch)) / rows)
    return [
        {
            "rows": rows,
            "ms_per_row_median": 1000 * statistics.median(values),
            "ms_per_row_min": 1000 * min(values),
        }
        for rows, values in times.items()
    ]


# ---------------------------------------------------------------------------- 2. threads
def _session(data: bytes, folder: Path, **changes):
    import onnxruntime

    choice = providers.choose("cpu")
    options = providers.session_options(choice, model_folder=folder)
    if "intra" in changes:
        options.intra_op_num_threads = changes["intra"]
    if changes.get("spinning"):
        with providers.captured_native_output():  # ONNX Runtime warns that it overwrites
            options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    if changes.get("parallel"):
        options.execution_mode = onnxruntime.ExecutionMode.ORT_PARALLEL
        options.inter_op_num_threads = 2
    return onnxruntime.InferenceSession(data, options, providers=choice.providers)


def thread_options(model, rounds: int, repeats: int) -> list[dict]:
    """Per-row ms of the ONNX core at B = 2 for several session settings (medians)."""
    contract = model.contract
    data = read_model_file(model.path)
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal((2, contract.window_samples))).astype(np.float32)
    feed = {contract.input_name: spectral.to_network_input(audio, contract)}
    host = providers.cpu_threads()
    sessions = {
        f"host default (intra-op {host}, inter-op 1, no spinning)": [
            _session(data, model.path.parent)
        ],
        "intra-op 1": [_session(data, model.path.parent, intra=1)],
        f"intra-op {host}, spinning on": [_session(data, model.path.parent, spinning=True)],
        "parallel executor, inter-op 2": [_session(data, model.path.parent, parallel=True)],
        "two sessions x intra-op 1, two threads": [
            _session(data, model.path.parent, intra=1),
            _session(data, model.path.parent, intra=1),
        ],
    }
    for group in sessions.values():
        for session in group:
            session.run(None, feed)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, group in sessions.items():
            times[name].append(_run_side_by_side(group, feed, repeats))
    return [
        {
            "setting": name,
            "ms_per_row_median": 1000 * statistics.median(v),
            "ms_per_row_min": 1000 * min(v),
        }
        for name, v in times.items()
    ]


def _run_side_by_side(group: list, feed: dict, repeats: int) -> float:
    """Seconds per row when each session in ``group`` runs ``repeats`` times from its own
    thread, all at once (ONNX Runtime releases the GIL while it runs)."""

    def loop(session):
        for _ in range(repeats):
            session.run(None, feed)

    threads = [threading.Thread(target=loop, args=(s,)) for s in group]
    with Stopwatch() as watch:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    rows = len(group) * repeats * next(iter(feed.values())).shape[0]
    return watch.seconds / rows


# ---------------------------------------------------------------------------- 3. plans
def run_plan(model, audio: np.ndarray, plan: str, options: dict) -> dict:
    counting = ModelProxy(model)
    with Stopwatch() as watch:
        if plan == "today":
            separate_array(counting, audio, RATE, like_live=True)
        else:
            overlap_add.separate_overlap_add(counting, audio, RATE, **options)
    took = watch.seconds
    seconds = audio.shape[1] / RATE
    positions = (
        counting.rows if options.get("stereo") == "mid" and plan != "today" else counting.rows / 2
    )
    return {
        "plan": plan,
        "wall_s": took,
        "real_time_factor": took / seconds,
        "model_rows": counting.rows,
        "model_calls": counting.calls,
        "rows_per_audio_s": counting.rows / seconds,
        "window_positions_per_audio_s": positions / seconds,
    }


def compare_plans(model, audio: np.ndarray, options: dict) -> dict:
    """Overlap-add, today's plan, overlap-add again; the two overlap-add runs averaged."""
    stream = overlap_add.OverlapAddStream(model, RATE, audio.shape[0], **options)
    for rows in {audio.shape[0], stream.batch_windows * stream.model_channels}:
        model.warm_up(rows)
    runs = [
        run_plan(model, audio, plan, options) for plan in ("overlap-add", "today", "overlap-add")
    ]
    today = runs[1]
    new = [runs[0], runs[2]]
    new_rtf = statistics.fmean(r["real_time_factor"] for r in new)
    return {
        "runs": runs,
        "today_rtf": today["real_time_factor"],
        "overlap_add_rtf": new_rtf,
        "speedup": today["real_time_factor"] / new_rtf,
        "today_rows_per_audio_s": today["rows_per_audio_s"],
        "overlap_add_rows_per_audio_s": new[0]["rows_per_audio_s"],
    }


# ---------------------------------------------------------------------------- report
def markdown(report: dict) -> list[str]:
    """The report's body: the plans, then the batch and thread sweeps when they ran."""
    plans = report["plans"]
    options = report["overlap_add_options"]
    lines = [
        f"onnxruntime {report['onnxruntime']}, CPU provider; model "
        f"{Path(report['model']).name}. {report['note']}",
        "",
        f"### Plans: a {report['seconds']:g} s stereo 44.1 kHz generated song",
        "",
        "| plan | real-time factor | model rows per audio s | window positions per audio s | wall s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for run in plans["runs"]:
        lines.append(
            f"| {run['plan']} | {run['real_time_factor']:.3f} | {run['rows_per_audio_s']:.2f} | "
            f"{run['window_positions_per_audio_s']:.2f} | {run['wall_s']:.1f} |"
        )
    lines += [
        "",
        f"Overlap-add ({', '.join(f'{k} {v}' for k, v in options.items() if v is not None)}):"
        " real-time factor "
        f"{plans['overlap_add_rtf']:.3f} (mean of its two runs) against today's "
        f"{plans['today_rtf']:.3f}: **{plans['speedup']:.1f}x** faster in the same run.",
        "",
    ]
    if report.get("batch_sweep"):
        lines += [
            "### Rows per model call (B = windows x channels), `SeparationModel.separate`",
            "",
            "| rows (B) | windows, mono | windows, stereo | ms per row, median | ms per row, min |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in report["batch_sweep"]:
            stereo = row["rows"] // 2 if row["rows"] % 2 == 0 else "-"
            mono = row["rows"] if row["rows"] <= 8 else "-"
            lines.append(
                f"| {row['rows']} | {mono} | {stereo} | {row['ms_per_row_median']:.1f} | "
                f"{row['ms_per_row_min']:.1f} |"
            )
        lines.append("")
    if report.get("threads"):
        lines += [
            "### ONNX Runtime threads (ONNX core only, B = 2)",
            "",
            "| setting | ms per row, median | ms per row, min |",
            "| --- | --- | --- |",
        ]
        for row in report["threads"]:
            lines.append(
                f"| {row['setting']} | {row['ms_per_row_median']:.1f} | {row['ms_per_row_min']:.1f} |"
            )
        lines.append("")
    return lines


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="ONNX model (default: the bundled model)")
    parser.add_argument("--seconds", type=float, default=60.0, help="song length (default 60)")
    parser.add_argument("--hop-fraction", type=float, default=overlap_add.DEFAULT_HOP_FRACTION)
    parser.add_argument(
        "--batch-windows", type=int, help="windows per model call (default: the module's)"
    )
    parser.add_argument("--stereo", default="batch", choices=overlap_add.STEREO_CHOICES)
    parser.add_argument(
        "--no-sweeps", action="store_true", help="plans only (no batch/thread sweeps)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="sweep rounds (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per sweep cell and round")
    parser.add_argument(
        "--note",
        default="The 2-core machine was shared with other work during the run.",
        help="what else ran on the machine (goes into the results)",
    )
    parser.add_argument("--out", default=str(RESULTS / "offline"), help="path stem for .json/.md")
    return parser


def main(argv: list[str] | None = None) -> int:
    import onnxruntime

    args = get_parser().parse_args(argv)
    run = Run("bench_offline", argv)
    model = load_model(args.model, "cpu")
    options = {
        "hop_fraction": args.hop_fraction,
        "batch_windows": args.batch_windows,
        "stereo": args.stereo,
    }
    audio = song(args.seconds, RATE)
    report = {
        "onnxruntime": onnxruntime.__version__,
        "model": str(model.path),
        "note": args.note,
        "seconds": args.seconds,
        "overlap_add_options": options,
    }
    if not args.no_sweeps:
        print("batch sizes ...", flush=True)
        report["batch_sweep"] = batch_sweep(model, args.rounds, args.repeats)
        print("threads ...", flush=True)
        report["threads"] = thread_options(model, args.rounds, args.repeats)
    print("plans ...", flush=True)
    report["plans"] = compare_plans(model, audio, options)
    print(run.write(*at_stem(args.out), report, markdown(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
