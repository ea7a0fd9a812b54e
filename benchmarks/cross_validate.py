"""Cross-validation of the training recipe by singer: an SDR that does not depend on which
two singers happened to be held out.

The MIR-1K singers are split into rotating folds (:func:`stream_sep.evaluation.datasets.singer_folds`:
sorted, ``--held-out`` singers per fold, each singer held out in exactly one fold; 12 singers,
2 per fold: 6 folds). For each fold:

1. **train** the recipe on the other singers: ``python -m train --data DIR --format mir1k
   --val-singers <the fold's singers> ...`` for ``--steps`` steps (the bundled model's recipe,
   see :data:`RECIPE`, with its warm-up and a final linear decay over the last quarter; more
   options with ``--train-args``). The held-out singers are training's validation split:
   they only give the logged ``val_sdr`` and ``best.keras``. The recipe always has a
   learning-rate schedule, which turns the plateau rule (the one thing that would act on the
   validation loss) off, and the fold is scored with ``last.keras``, so nothing of the
   held-out singers reaches the weights that are scored;
2. **export** ``last.keras`` with ``python export/to_onnx.py`` (which also checks the ONNX
   file against Keras);
3. **evaluate** the fold's held-out singers (every ``--every``-th clip) exactly as
   ``stream-sep evaluate --streaming`` does at the live default settings
   (:func:`stream_sep.commands.evaluation.evaluate_clip`; museval off): vocals SDR per clip.

The report gives each fold's mean vocals SDR and its singers', then the mean over folds and
its spread (standard deviation, min, max), and the per-singer table (each singer scored by the
one model that never heard it); ``--json``/``--md`` are written after every fold (marked
partial until the last).

Cost on the 2-core CPU machine (tiny preset, batch 4: 1.7-2.0 s per step measured on a
quiet machine, 2026-11-29, including each epoch's validation; export about a minute;
evaluation about (clip seconds / 0.5 s hop) x 0.15-0.3 s):

- the full measure, ``--steps 5550 --every 1`` (the bundled model's length, 5,700 steps in
  whole epochs, all 612 clips): 6 folds x (about 3 h training + 1 min export) + about 25 min
  of evaluation = about 18 h; ``--resume`` lets it run in pieces (each fold's scores are
  kept in its run folder, ``scores.json``, so a finished fold is not scored again unless its
  model or the options changed, or ``--rescore`` asks);
- a cheap variant for iterating, ``--steps 500 --every 6 --folds 2``: 2 x (about 10 min
  training + 1 min export + 1-2 min evaluation) = about 25 min. Few steps score far below
  the shipped model (a recipe is compared with another at the same steps, not with it).

On a GPU machine pass ``--train-args "--distribute"`` or set ``KERAS_BACKEND=jax`` for the
training step (the export needs TensorFlow and runs on the CPU).

    python -m benchmarks cross_validate --data ../shared/data/mir1k --steps 500 --every 6 \\
        --folds 2 --work runs/cv --json cv.json --md cv.md

``--include earlier.json`` reports the folds of an earlier ``--json`` report of the same
measure (checked: recipe, steps, clips, evaluation settings) with this run's, without running
them again: the full measure in pieces on machines that keep nothing between them.

``--postfilter NAME`` and/or ``--denoise`` score every fold's clips a second time with those
options (``stream-sep evaluate --postfilter NAME --denoise``; ``--postfilter none`` = without
the default Wiener filter) and report the paired gain over the default settings per fold and
over folds: the measure that decides whether a quality option is on by default.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import REPO, Run, Stopwatch, table
from stream_sep import atomic, evaluation
from stream_sep.cli_runner import OneLineParser, run_main
from stream_sep.dsp.postfilter import POSTFILTERS, load_norbert
from stream_sep.errors import UserError
from stream_sep.evaluation import datasets
from stream_sep.models.loading import load_model
from train import runs

SONG_TRIM_SECONDS = 0.05  # stream-sep evaluate's --trim default

# The bundled model's recipe (docs/training.md), less what depends on the number of steps.
RECIPE = (
    "--preset tiny --batch-size 4 --accumulation-steps 0 --lr 5e-4 --lr-half-life 3000 "
    "--original-pairs-fraction 0.5 --seed 21"
)
STEPS_PER_EPOCH = 150
SCORES = "scores.json"  # each fold's scorings, kept in its run folder
VAL_EXAMPLES = 16  # validation is only logged here: a few chunks keep each epoch cheap


def train_command(data: Path, fold: datasets.Fold, steps: int, run_dir: Path, extra: str):
    """The ``python -m train`` command line of one fold: (argv, total steps)."""
    per_epoch = min(STEPS_PER_EPOCH, steps)
    epochs = math.ceil(steps / per_epoch)
    total = epochs * per_epoch
    decay_start = int(0.75 * total)
    schedule = (
        f"--warmup-steps {min(200, max(1, total // 10))} "
        f"--lr-decay-start {decay_start} --lr-decay-steps {max(1, total - decay_start)}"
    )
    argv = [
        sys.executable,
        "-m",
        "train",
        "--data",
        str(data),
        "--format",
        "mir1k",
        "--val-singers",
        ",".join(fold.held_out),
        "--val-examples",
        str(VAL_EXAMPLES),
        "--steps-per-epoch",
        str(per_epoch),
        "--epochs",
        str(epochs),
        "--runs-dir",
        str(run_dir.parent),
        "--run-name",
        run_dir.name,
        "--progress",
        "none",
        *shlex.split(RECIPE),
        *shlex.split(schedule),
        *shlex.split(extra),
    ]
    return argv, total


def export_command(run_dir: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "export" / "to_onnx.py"),
        "--checkpoint",
        str(run_dir / "last.keras"),
        "--output",
        str(run_dir / "last.onnx"),
    ]


def run_step(name: str, argv: list[str], log_path: Path) -> float:
    """Run one stage as a subprocess from the repository root (``train`` and ``export`` are
    installed packages), its output into ``log_path``; returns the seconds it took. A failure
    is one line naming the log."""
    with Stopwatch() as watch, open(log_path, "w") as log:
        result = subprocess.run(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        last = (log_path.read_text().strip().splitlines() or [""])[-1]
        raise UserError(
            f"{name} failed (exit {result.returncode}): {last[:200]}; full output in {log_path}"
        )
    return watch.seconds


def evaluate_fold(model_path: Path, refs: list, options: dict):
    """Score the held-out clips ``refs``: (per-clip results, summary, per-singer summary)."""
    model = load_model(str(model_path), provider="cpu")
    results = [
        evaluation.evaluate_clip(model, datasets.load_clip(ref), options, use_museval=False)
        for ref in refs
    ]
    return results, evaluation.summarise(results), evaluation.summarise_groups(results, "mir1k")


def vocals_sdr(summary: dict) -> dict:
    cell = summary["model"]["vocals"]["sdr"]
    return {"mean": cell["mean"], "median": cell["median"], "clips": cell["clips"]}


def spread(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "folds": len(values),
    }


def run_fold(args, fold: datasets.Fold, options: dict) -> dict:
    run_dir = args.work / f"fold-{fold.index}-{'-'.join(fold.held_out)}"
    args.work.mkdir(parents=True, exist_ok=True)
    costs = train_and_export(args, fold, run_dir)
    plain = score_fold(run_dir, args, fold, options)
    row = {
        "fold": fold.index,
        "held_out": list(fold.held_out),
        "run": str(run_dir),
        **costs,
        "evaluate_seconds": plain["seconds"],
        "scored_before": plain["scored_before"],
        "scored_at": plain["commit"],
        "vocals_sdr": plain["vocals_sdr"],
        "by_singer": plain["by_singer"],
        "clips": plain["clips"],
    }
    if args.variant:
        variant = score_fold(run_dir, args, fold, {**options, **args.variant})
        row["variant"] = variant_row(args.variant, plain, variant)
    if args.songs:
        row["real_songs"] = score_songs(run_dir / "last.onnx", args.songs, options)
    print(format_fold(row), flush=True)
    return row


def score_songs(model_path: Path, songs: Path, options: dict) -> dict:
    """The fold's model on real songs (a stems folder, each mixture the sum of its stems,
    :data:`SONG_TRIM_SECONDS` left out at both ends, as ``stream-sep evaluate --format
    stems`` scores them): mean vocals and accompaniment SDR and each song's."""
    model = load_model(str(model_path), provider="cpu")
    refs = datasets.find_clips(songs, "stems")
    results = [
        evaluation.evaluate_clip(
            model,
            datasets.load_clip(ref, mix_from_stems=True),
            options,
            use_museval=False,
            trim_seconds=SONG_TRIM_SECONDS,
        )
        for ref in refs
    ]
    per_song = {
        r["name"]: {stem: r["scores"]["model"][stem]["sdr"] for stem in ("vocals", "accompaniment")}
        for r in results
    }
    return {
        stem: statistics.fmean(song[stem] for song in per_song.values())
        for stem in ("vocals", "accompaniment")
    } | {"songs": per_song}


def train_and_export(args, fold: datasets.Fold, run_dir: Path) -> dict:
    """Train the fold's model and export ``last.onnx``: ``{"steps", "train_seconds",
    "export_seconds"}`` (the training's own seconds, summed over resumes; export seconds
    ``None`` when an earlier export is reused).

    With ``--resume`` a fold run before in the same ``--work`` is continued where its
    training stopped (``python -m train --resume``), or reused when it has all its steps
    and an export at least as new as ``last.keras``: a 12-hour run survives an interruption.
    """
    argv, steps = train_command(args.data, fold, args.steps, run_dir, args.train_args)
    if (run_dir / runs.CONFIG).exists():
        argv = resume_command(args, run_dir, steps)
    logs = args.work / f"fold-{fold.index}"
    if runs.read_state(run_dir)["steps_done"] < steps:
        resuming = "--resume" in argv
        verb = "resuming" if resuming else "training"
        print(f"fold {fold.index}: holding out {', '.join(fold.held_out)}; {verb}", flush=True)
        log = Path(f"{logs}-train{'-resumed' if resuming else ''}.log")
        run_step("training", argv, log)
    model, checkpoint = run_dir / "last.onnx", run_dir / runs.LAST
    export_seconds = None
    if not model.exists() or model.stat().st_mtime < checkpoint.stat().st_mtime:
        export_seconds = run_step("export", export_command(run_dir), Path(f"{logs}-export.log"))
    else:
        print(f"fold {fold.index}: reusing {run_dir.name} (trained and exported before)")
    train_seconds = runs.read_state(run_dir)["train_seconds"]
    return {"steps": steps, "train_seconds": train_seconds, "export_seconds": export_seconds}


def resume_command(args, run_dir: Path, steps: int) -> list[str]:
    """``python -m train --resume`` for a fold's existing run, after checking it is one."""
    if not args.resume:
        raise UserError(
            f"{run_dir} already exists; continue it with --resume, remove it or choose "
            "another --work"
        )
    training = runs.read_run_config(run_dir)["training"]
    planned = training["epochs"] * training["steps_per_epoch"]
    if planned != steps:
        raise UserError(
            f"{run_dir} is a run of {planned} steps, not the {steps} asked for; "
            "choose another --work"
        )
    return [
        sys.executable, "-m", "train", "--resume", "--runs-dir", str(run_dir.parent),
        "--run-name", run_dir.name, "--progress", "none",
    ]  # fmt: skip


def score_fold(run_dir: Path, args, fold: datasets.Fold, options: dict) -> dict:
    """The fold's held-out clips scored with ``options``: ``{"vocals_sdr", "by_singer",
    "clips", "seconds", "commit", "scored_before"}``.

    Each scoring is kept in the run folder's :data:`SCORES`, keyed by the ONNX file's
    SHA-256, the options, the clips and the data folder, so ``--resume`` does not score a
    finished fold again (20-30 minutes per fold at full length) unless its model changed;
    ``--rescore`` scores again (after a change to the host's separation code: ``commit`` says
    which code scored it)."""
    model = run_dir / "last.onnx"
    refs = datasets.find_clips(args.data, "mir1k", None, list(fold.held_out), None, args.every)
    key = json.loads(json.dumps({
        "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "options": options,
        "clips": [ref.name for ref in refs],
        "data": str(args.data.resolve()),
    }))  # fmt: skip
    saved = read_scores(run_dir)
    if not args.rescore:
        for entry in saved:
            if entry["key"] == key:
                return {**entry["score"], "scored_before": True}
    with Stopwatch() as watch:
        results, summary, by_singer = evaluate_fold(model, refs, options)
    score = {
        "vocals_sdr": vocals_sdr(summary),
        "by_singer": {singer: vocals_sdr(s) for singer, s in by_singer.items()},
        "clips": [
            {
                "name": r["name"],
                "seconds": r["seconds"],
                "vocals_sdr": r["scores"]["model"]["vocals"]["sdr"],
            }
            for r in results
        ],
        "seconds": watch.seconds,
        "commit": args.commit,
    }
    kept = [entry for entry in saved if entry["key"] != key]
    write_scores(run_dir, [*kept, {"key": key, "score": score}])
    return {**score, "scored_before": False}


def read_scores(run_dir: Path) -> list[dict]:
    path = run_dir / SCORES
    return json.loads(path.read_text()) if path.exists() else []


def write_scores(run_dir: Path, entries: list[dict]) -> None:
    """Replace :data:`SCORES` whole (:mod:`stream_sep.atomic`): an interrupted write never
    leaves half a file to be read as scores."""
    atomic.write_text(run_dir / SCORES, json.dumps(entries, indent=1) + "\n")


def variant_row(variant: dict, plain: dict, scored: dict) -> dict:
    """The variant's SDR and its paired gain over the default settings (per clip, with
    it minus without, averaged over the fold's clips)."""
    gains = [
        after["vocals_sdr"] - before["vocals_sdr"]
        for before, after in zip(plain["clips"], scored["clips"], strict=True)
    ]
    return {
        "name": variant_name(variant),
        "vocals_sdr": scored["vocals_sdr"],
        "gain": statistics.fmean(gains),
        "clips_better": sum(gain > 0 for gain in gains),
        "scored_before": scored["scored_before"],
    }


def format_fold(row: dict) -> str:
    singers = ", ".join(
        f"{name} {cell['mean']:.2f} ({cell['clips']})" for name, cell in row["by_singer"].items()
    )
    sdr = row["vocals_sdr"]
    export = row["export_seconds"]
    text = (
        f"fold {row['fold']}: vocals SDR mean {sdr['mean']:.2f} dB, median {sdr['median']:.2f} "
        f"over {sdr['clips']} clips [{singers}]; {row['steps']} steps in "
        f"{row['train_seconds'] / 60:.1f} min, export "
        f"{'reused' if export is None else f'{export:.0f} s'}, "
        f"evaluation {row['evaluate_seconds']:.0f} s"
        f"{' (scored before)' if row['scored_before'] else ''}"
    )
    if "real_songs" in row:
        songs = row["real_songs"]
        text += (
            f"; real songs vocals {songs['vocals']:.2f} dB, accompaniment "
            f"{songs['accompaniment']:.2f} dB ({len(songs['songs'])} songs)"
        )
    if "variant" in row:
        post = row["variant"]
        text += (
            f"; with {post['name']} {post['vocals_sdr']['mean']:.2f} dB "
            f"({post['gain']:+.2f} dB paired, {post['clips_better']}/{sdr['clips']} clips better)"
        )
    return text


def format_markdown(report: dict) -> list[str]:
    """The report's body: the folds, the mean over them, the singers, the variant's gain."""
    overall = report["over_folds"]
    done, split = overall["folds"], report.get("folds_in_split", overall["folds"])
    folds = f"{done} fold(s)"
    if not report["complete"]:
        folds = f"{done} of {report['folds_planned']} folds so far (a partial report)"
    elif done < split:
        folds = f"{done} of the {split} folds"
    lines = [
        f"Cross-validation by singer: {folds}, {report['held_out']} singer(s) "
        f"held out per fold, {fold_steps(report)} steps per fold, every {report['every']} clip(s), "
        f"streaming with hop {report['evaluation']['hop_seconds']:g} s and lookahead "
        f"{report['evaluation']['lookahead_seconds']:g} s, post-filter "
        f"{report['evaluation']['postfilter']}, vocals SDR (dB)",
        "",
        *table(
            ("fold", "held out", "clips", "mean", "median", "train min"),
            (
                (
                    row["fold"],
                    ", ".join(row["held_out"]),
                    row["vocals_sdr"]["clips"],
                    f"{row['vocals_sdr']['mean']:.2f}",
                    f"{row['vocals_sdr']['median']:.2f}",
                    f"{row['train_seconds'] / 60:.1f}",
                )
                for row in report["folds"]
            ),
        ),  # fmt: skip
        "",
        f"Mean over {'the' if folds.endswith('fold(s)') else 'these'} folds "
        f"**{overall['mean']:.2f} "
        f"dB**, standard deviation "
        f"{overall['stdev']:.2f} dB, range {overall['min']:.2f} to {overall['max']:.2f} dB "
        f"(mean over all {report['clips']} clips: {report['clip_mean']:.2f} dB).",
        "",
        *table(
            ("singer", "clips", "mean", "median"),
            (
                (singer, cell["clips"], f"{cell['mean']:.2f}", f"{cell['median']:.2f}")
                for singer, cell in report["by_singer"].items()
            ),
        ),
    ]
    with_songs = [row for row in report["folds"] if "real_songs" in row]
    if with_songs:
        lines += ["", "Each fold's model on the real songs (`--songs`), SDR (dB):", ""]
        lines += table(
            ("fold", "vocals", "accompaniment", "songs"),
            (
                (
                    row["fold"],
                    f"{row['real_songs']['vocals']:.2f}",
                    f"{row['real_songs']['accompaniment']:.2f}",
                    len(row["real_songs"]["songs"]),
                )
                for row in with_songs
            ),
        )
        vocals = [row["real_songs"]["vocals"] for row in with_songs]
        lines += ["", f"Mean over those folds: vocals {statistics.fmean(vocals):.2f} dB."]
    if "variant" in report:
        lines += ["", *variant_lines(report)]
    return lines


def fold_steps(report: dict) -> str:
    """The steps each fold trained ("600"), or their range: ``--steps`` rounded up to whole
    epochs of training."""
    steps = sorted({row["steps"] for row in report["folds"]})
    return str(steps[0]) if len(steps) == 1 else f"{steps[0]}-{steps[-1]}"


def variant_name(variant: dict) -> str:
    """The variant's options as command-line flags: '--postfilter none --denoise'."""
    flags = []
    if "postfilter" in variant:
        flags.append(f"--postfilter {variant['postfilter']}")
    if variant.get("denoise"):
        flags.append("--denoise")
    return " ".join(flags)


def variant_lines(report: dict) -> list[str]:
    post = report["variant"]
    lines = [
        f"With `{post['name']}` (same clips, paired gain = with it - defaults):",
        "",
        *table(
            ("fold", "mean", "gain", "clips better"),
            (
                (
                    row["fold"],
                    f"{row['variant']['vocals_sdr']['mean']:.2f}",
                    f"{row['variant']['gain']:+.2f}",
                    f"{row['variant']['clips_better']}/{row['vocals_sdr']['clips']}",
                )
                for row in report["folds"]
            ),
        ),  # fmt: skip
    ]
    over, gain = post["over_folds"], post["gain_over_folds"]
    lines += [
        "",
        f"Mean over folds with `{post['name']}` **{over['mean']:.2f} dB** (standard deviation "
        f"{over['stdev']:.2f} dB); gain {gain['mean']:+.2f} dB (fold range {gain['min']:+.2f} "
        f"to {gain['max']:+.2f}).",
    ]
    return lines


def parse_args(argv):
    parser = OneLineParser(
        prog="cross_validate.py",
        description=__doc__.split("\n")[0],
        dash_values=("--train-args",),
    )
    parser.add_argument("--data", type=Path, required=True, help="the MIR-1K folder")
    parser.add_argument("--steps", type=int, default=5550, help="training steps per fold")
    parser.add_argument("--every", type=int, default=1, help="evaluate every K-th clip")
    parser.add_argument("--folds", type=int, help="run only the first F folds (default: all)")
    parser.add_argument(
        "--only-folds",
        metavar="K,...",
        help="run only these folds (0-based, e.g. 2,3 for the weakest pairs of singers)",
    )
    parser.add_argument("--held-out", type=int, default=2, help="singers held out per fold")
    parser.add_argument("--work", type=Path, help="run folders (default runs/cv-<date-time>)")
    parser.add_argument(
        "--train-args",
        default="",
        help="more options for python -m train, after the recipe's (so they override it)",
    )
    parser.add_argument(
        "--songs",
        type=Path,
        metavar="DIR",
        help="also score each fold's model on these real songs (a stems folder, as "
        "stream-sep evaluate --format stems --mix-from-stems reads it)",
    )
    parser.add_argument("--hop", type=float, help="evaluation hop (default: the live default)")
    parser.add_argument("--lookahead", type=float, help="evaluation lookahead (live default)")
    parser.add_argument(
        "--postfilter",
        choices=POSTFILTERS,
        help="also score every fold with this post-filter (none: without the default one) "
        "and report the paired gain over the default settings",
    )
    parser.add_argument(
        "--denoise",
        action="store_true",
        help="also score every fold with --denoise (and --postfilter, when given) and report "
        "the paired gain over the default settings",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the folds already in --work: finish an interrupted training, reuse a "
        "finished and exported one and its scores (kept in the fold's scores.json)",
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="score every fold's clips again, even those scored before with the same model "
        "and options (after a change to the host's separation code)",
    )
    parser.add_argument(
        "--include",
        type=Path,
        metavar="REPORT.json",
        help="take the folds of an earlier --json report of the same measure (recipe, "
        "steps, clips, evaluation settings: checked) as done and report them with this run's: "
        "a long measure run in pieces on machines that keep nothing between them",
    )
    parser.add_argument("--json", type=Path, help="write the report as JSON")
    parser.add_argument("--md", type=Path, help="write the tables as Markdown")
    args = parser.parse_args(argv)
    for name in ("steps", "every", "folds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name} must be a positive integer, got {value}")
    if args.only_folds is not None and args.folds is not None:
        raise UserError("--folds and --only-folds are two ways to choose folds: give one")
    args.only_folds = fold_indices(args.only_folds)
    if args.postfilter not in (None, "none"):
        load_norbert()  # one line naming the extra if norbert is missing
    args.variant = {"postfilter": args.postfilter} if args.postfilter is not None else {}
    if args.denoise:
        args.variant["denoise"] = True
    if args.work is None:
        args.work = REPO / "runs" / f"cv-{time.strftime('%Y%m%d-%H%M%S')}"
    args.commit = runs.git_commit(REPO)  # the code that scores: read now, not after hours
    return args


def fold_indices(text: str | None) -> list[int] | None:
    """``--only-folds 2,3`` as [2, 3] (sorted, no repeats); None when not given."""
    if text is None:
        return None
    try:
        indices = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise UserError(f"--only-folds takes fold numbers like 2,3, got {text!r}") from None
    if indices[0] < 0:
        raise UserError(f"--only-folds takes fold numbers from 0, got {text!r}")
    return indices


def chosen_folds(args, folds: list[datasets.Fold]) -> list[datasets.Fold]:
    """The folds ``--folds`` or ``--only-folds`` chose (all by default)."""
    if args.only_folds is None:
        return folds[: args.folds] if args.folds else folds
    missing = [index for index in args.only_folds if index >= len(folds)]
    if missing:
        raise UserError(
            f"--only-folds {','.join(map(str, missing))}: there are {len(folds)} folds "
            f"(0 to {len(folds) - 1}) with --held-out {args.held_out}"
        )
    return [folds[index] for index in args.only_folds]


def run(argv=None) -> dict:
    this_run = Run("cross_validate", argv)
    args = parse_args(argv)
    folds = datasets.singer_folds(datasets.mir1k_singers(args.data), args.held_out)
    options = evaluation.engine_options(True, args.hop, args.lookahead)
    earlier = load_report(args.include, "--include", complete=True) if args.include else None
    included = included_folds(args, earlier, folds, options)
    chosen = {fold.index: fold for fold in chosen_folds(args, folds)}
    planned = sorted(chosen.keys() | included.keys())
    rows = []
    for index in planned:
        if index in included:
            rows.append(included[index])
            print(f"{format_fold(included[index])} (from {args.include})", flush=True)
        else:
            rows.append(run_fold(args, chosen[index], options))
        report = build_report(
            args, options, rows, planned=len(planned), split=len(folds), earlier=earlier
        )
        # after every fold: a long run's folds so far are kept
        text = this_run.write(args.json, args.md, report, format_markdown(report))
    print(text, end="", flush=True)
    return report


def included_folds(
    args, report: dict | None, folds: list[datasets.Fold], options: dict
) -> dict[int, dict]:
    """The folds of ``--include``'s ``report``, ``{fold index: row}``, after checking that it
    measured the same thing as this run: the same recipe, steps, clips (the same held-out
    singers and clip names from ``--data``) and evaluation settings. Those folds are not run
    again: a measure of 18 CPU hours can be run in pieces on machines that keep nothing
    between them, and brought together in one report."""
    if report is None:
        return {}
    where = f"--include {args.include}"
    expected = {
        "recipe": recipe(args),
        "steps": args.steps,
        "every": args.every,
        "held_out": args.held_out,
        "variant options": args.variant or None,
    }
    found = {**report, "variant options": report.get("variant", {}).get("options")}
    for name, value in expected.items():
        if found.get(name) != value:
            raise UserError(
                f"{where} was measured with {name} {found.get(name)!r}, this run with "
                f"{value!r}: not the same measure"
            )
    check_evaluation(where, report["evaluation"], options)
    rows = {}
    for row in report["folds"]:
        rows[row["fold"]] = {**row, "included_from": row.get("included_from", str(args.include))}
        check_included_fold(where, row, folds, args)
    return rows


def load_report(path: Path, option: str = "", complete: bool = False) -> dict:
    """A ``--json`` report of this script, or one line saying why ``path`` is not one.

    Every report has per-clip scores per fold (what comparisons read); ``complete`` also asks
    for the recipe, steps and evaluation settings that ``--include`` checks, which reports
    older than ``--include`` lack. ``option`` names the option that gave ``path``."""
    name = f"{option} {path}".strip()
    try:
        report = json.loads(path.read_text())
    except OSError as error:
        raise UserError(f"{name}: cannot read it ({error.strerror})") from None
    except ValueError:
        raise UserError(f"{name} is not JSON") from None
    if not has_clip_scores(report) or (complete and not is_complete_report(report)):
        raise UserError(f"{name} is not a report of cross_validate.py --json")
    return report


def has_clip_scores(report) -> bool:
    """Whether ``report`` holds folds with their held-out singers and per-clip scores."""
    folds = report.get("folds") if isinstance(report, dict) else None
    return isinstance(folds, list) and all(
        isinstance(fold, dict) and "held_out" in fold and isinstance(fold.get("clips"), list)
        for fold in folds
    )


def is_complete_report(report: dict) -> bool:
    """Whether ``report`` has all that :func:`included_folds` reads of a ``--json`` report."""
    keys = ("recipe", "steps", "every", "held_out", "evaluation", "folds")
    fold_keys = ("fold", "held_out", "clips", "vocals_sdr", "by_singer", "steps")
    plan_keys = [f"{name}_seconds" for name in ("hop", "lookahead", "crossfade")]
    plan_keys += ["postfilter", "high_band_voice_removal", "denoise"]
    return (
        all(key in report for key in keys)
        and isinstance(report["evaluation"], dict)
        and all(key in report["evaluation"] for key in plan_keys)
        and all(all(key in row for key in fold_keys) for row in report["folds"])
    )


def check_evaluation(where: str, scored: dict, options: dict) -> None:
    """The included report's evaluation settings (:func:`evaluation.describe_plan`) are this
    run's ``options``: hop, lookahead and crossfade to the sample (within 1 ms), the window
    options exactly."""
    for name in ("hop", "lookahead", "crossfade"):
        if abs(scored[f"{name}_seconds"] - options[name]) > 1e-3:
            raise UserError(
                f"{where} was scored with --{name} {scored[f'{name}_seconds']:g} s, this run "
                f"with {options[name]:g} s: not the same measure"
            )
    for name in ("postfilter", "high_band_voice_removal", "denoise"):
        if scored[name] != options[name]:
            raise UserError(
                f"{where} was scored with {name} {scored[name]!r}, this run with "
                f"{options[name]!r}: not the same measure"
            )


def check_included_fold(where: str, row: dict, folds: list[datasets.Fold], args) -> None:
    """An included fold holds out the same singers as this split's fold of its number and
    scored the same clips as this run's ``--data`` and ``--every`` give."""
    index = row["fold"]
    if index >= len(folds) or list(folds[index].held_out) != row["held_out"]:
        here = ", ".join(folds[index].held_out) if index < len(folds) else "no such fold"
        raise UserError(
            f"{where}: its fold {index} held out {', '.join(row['held_out'])}, this split's "
            f"fold {index} {here} (another --data or --held-out?)"
        )
    refs = datasets.find_clips(args.data, "mir1k", None, row["held_out"], None, args.every)
    if [clip["name"] for clip in row["clips"]] != [ref.name for ref in refs]:
        raise UserError(
            f"{where}: its fold {index} scored {len(row['clips'])} clips, not the "
            f"{len(refs)} of {', '.join(row['held_out'])} in {args.data} (another --data?)"
        )


def recipe(args) -> str:
    """The training options of every fold: the recipe and ``--train-args``."""
    return f"{RECIPE} {args.train_args}".strip()


def build_report(
    args, options: dict, rows: list[dict], planned: int, split: int, earlier: dict | None
) -> dict:
    """The report over the folds done so far (``complete`` once all ``planned`` are;
    ``split``: the number of folds of the singers' split; ``earlier``: ``--include``'s
    report, if any)."""
    clip_sdrs = [clip["vocals_sdr"] for row in rows for clip in row["clips"]]
    by_singer = {}
    for row in rows:
        by_singer.update(row["by_singer"])
    report = {
        "data": str(args.data),
        "steps": args.steps,
        "every": args.every,
        "held_out": args.held_out,
        "recipe": recipe(args),
        "evaluation": evaluation_plan(args, options, rows, earlier),
        "folds_planned": planned,
        "folds_in_split": split,
        "complete": len(rows) == planned,
        "folds": rows,
        "over_folds": spread([row["vocals_sdr"]["mean"] for row in rows]),
        "clips": len(clip_sdrs),
        "clip_mean": statistics.fmean(clip_sdrs),
        "by_singer": dict(sorted(by_singer.items(), key=lambda item: item[0].lower())),
    }
    if args.variant:
        report["variant"] = {
            "name": variant_name(args.variant),
            "options": args.variant,
            "over_folds": spread([row["variant"]["vocals_sdr"]["mean"] for row in rows]),
            "gain_over_folds": spread([row["variant"]["gain"] for row in rows]),
        }
    return report


def evaluation_plan(args, options: dict, rows: list[dict], earlier: dict | None) -> dict:
    """The evaluation settings of the report: described from the first model this run
    scored (checked against the ``earlier`` included report's), else the included report's."""
    included = earlier["evaluation"] if earlier else None
    run_here = [row for row in rows if "included_from" not in row]
    if not run_here:
        return included
    model = load_model(str(Path(run_here[0]["run"]) / "last.onnx"), provider="cpu")
    plan = evaluation.describe_plan(model, options)
    if included is not None and plan != included:
        raise UserError(
            f"--include {args.include} was scored with {included}, this run's model with "
            f"{plan}: not the same measure"
        )
    return plan


def main(argv=None) -> int:
    """Exit 0; a user error is one line and exit 2, Ctrl-C one line and exit 130."""
    return run_main("cross_validate.py", lambda: run(argv) and 0)  # run gives the report


if __name__ == "__main__":
    raise SystemExit(main())
