"""``stream-sep evaluate``: separation quality on a dataset, the way the field measures it.

For every clip, and for vocals and accompaniment, three measures (see :mod:`stream_sep.evaluation.metrics`):
whole-clip SDR (MDX challenge), museval's SiSEC18 median-of-frames SDR, and SI-SDR. Three
estimates are scored on the same clips:

- ``model``: the model run through the streaming engine (blocking, so no deadline misses),
  with the delay removed; accompaniment = mixture - vocal estimate (karaoke).
- ``mixture``: the mixture itself as the estimate of both stems (the floor to beat).
- ``centre-cancel``: classic L-R karaoke, for stereo mixtures only. The vocal estimate is the
  mid signal ``(L + R) / 2`` on both channels; the accompaniment estimate is the mixture minus
  it, ``((L - R) / 2, (R - L) / 2)``, so the two estimates sum to the mixture like the model's.

Offline (the default) uses the settings of ``stream-sep separate``; ``--streaming`` uses the
live settings (``--hop``, ``--lookahead``).

``--format stems`` reads real songs, one folder each (see :mod:`stream_sep.evaluation.datasets`): a song
that cannot be scored (no vocals, files that differ in rate or length, an unreadable file) is
skipped with one warning line naming the file, and the summary counts the songs skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from pathlib import Path

from stream_sep import atomic, settings
from stream_sep.errors import AudioFileError, UserError, first_line
from stream_sep.evaluation import (
    MEASURES,
    METHODS,
    STEMS,
    datasets,
    describe_plan,
    evaluate_clip,
    metrics,
    offline_plan,
    summarise,
    summarise_groups,
)
from stream_sep.models.loading import load_model
from stream_sep.offline.config import OfflinePlan

log = logging.getLogger(__name__)

STEMS_TRIM_SECONDS = 0.05
MEASURE_TITLES = {"sdr": "SDR", "museval_sdr": "museval", "si_sdr": "SI-SDR"}
METHOD_TITLES = {"model": "model", "mixture": "mixture", "centre-cancel": "L-R centre"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        metavar="M",
        help="ONNX separation model (default: the bundled model)",
    )
    parser.add_argument("--data", metavar="DIR", required=True, help="the dataset folder")
    parser.add_argument(
        "--format",
        dest="data_format",
        required=True,
        choices=datasets.EVALUATION_FORMATS,
        help=(
            "musdb: <DIR>/{train,test}/<song>/{drums,bass,other,vocals}.wav at 16 kHz, "
            "mixture.wav optional; musdb-hq: the same at 44.1 kHz; mir1k: stereo "
            "<singer>_<song>_<clip>.wav|.flac in DIR, channel 0 accompaniment, channel 1 "
            "vocals; stems: <DIR>/<song>/ with vocals and accompaniment (or drums, bass, "
            "other), mixture optional, in any format soundfile reads (wav, flac, mp3, ogg), "
            "scored at the song's own rate"
        ),
    )
    parser.add_argument(
        "--mix-from-stems",
        action="store_true",
        help=(
            "stems: separate the sum of the stems instead of the mixture file (for mixtures "
            "encoded apart from their stems); songs without a mixture file always use the sum"
        ),
    )
    parser.add_argument(
        "--trim",
        type=_non_negative_seconds,
        metavar="S",
        help=(
            "seconds left out of the scores at both ends of each clip, where a separator "
            f"starts and stops without context (default {STEMS_TRIM_SECONDS:g} for stems, 0 "
            "for the other formats)"
        ),
    )
    parser.add_argument(
        "--split",
        choices=datasets.SPLITS,
        help="musdb formats: which split to evaluate (default: test)",
    )
    parser.add_argument(
        "--singers",
        type=_comma_list,
        metavar="A,B",
        help="mir1k: evaluate only these singers, e.g. the ones held out of training: abjones,amy",
    )
    parser.add_argument(
        "--every",
        type=_positive_int,
        default=1,
        metavar="K",
        help="evaluate every K-th clip only: a quick sample spread over all singers or songs",
    )
    parser.add_argument(
        "--limit", type=_positive_int, metavar="N", help="evaluate the first N clips only"
    )
    parser.add_argument(
        "--streaming",
        action="store_true",
        help=(
            "separate as the live engine does, with --hop and --lookahead, instead of with "
            "the offline settings of 'stream-sep separate'. The engine runs each window "
            "inline (blocking), which gives exactly the samples of a live run that misses no "
            "deadline, so the numbers show what the live settings cost in quality, not what "
            "this machine's speed costs"
        ),
    )
    settings.add_options(parser, "evaluate", ("hop", "lookahead", "stereo"))
    settings.add_quality_arguments(parser, "evaluate")
    parser.add_argument(
        "--provider",
        default="auto",
        help="ONNX Runtime execution provider: auto, cpu, cuda, ... (default: auto)",
    )
    parser.add_argument(
        "--no-museval",
        dest="museval",
        action="store_false",
        help="skip museval's SiSEC18 SDR (the slowest measure on long songs)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the full report as JSON")


def _comma_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    if not args.streaming and (args.hop is not None or args.lookahead is not None):
        raise UserError("--hop and --lookahead apply to --streaming only")
    if args.mix_from_stems and args.data_format != "stems":
        raise UserError("--mix-from-stems applies to --format stems only")
    if args.trim is None:
        args.trim = STEMS_TRIM_SECONDS if args.data_format == "stems" else 0.0
    if args.museval:
        metrics.require_museval()
    json_path = _check_json_path(args.json)
    refs = datasets.find_clips(
        args.data, args.data_format, args.split, args.singers, args.limit, args.every
    )
    skipped: list[dict] = []
    if args.data_format == "stems":
        refs = _songs_with_sound_headers(refs, args.mix_from_stems, skipped)
    model = load_model(args.model, provider=args.provider)
    chosen = offline_plan(
        args.streaming,
        args.hop,
        args.lookahead,
        postfilter=args.postfilter,
        high_band_voice_removal=args.high_band_voice_removal,
        denoise=args.denoise,
        stereo=args.stereo,
    )
    plan = describe_plan(model, chosen)
    print(_plan_line(args, model, plan, len(refs)), flush=True)
    results = []
    print(_clip_header(), flush=True)
    for ref in refs:
        result = _evaluate_one(args, model, ref, chosen, skipped)
        if result is not None:
            results.append(result)
            print(_clip_line(result), flush=True)
    if not results:
        raise _nothing_left(skipped)
    report = build_report(args, model, plan, results, skipped)
    print(format_summary(report["summary"], report["notes"]), flush=True)
    if len(report["by_group"]) > 1:
        print(format_groups(report["by_group"]), flush=True)
    if json_path is not None:
        write_json_atomically(json_path, report)
        print(f"wrote {json_path}", flush=True)
    return 0


def _evaluate_one(args, model, ref, chosen: OfflinePlan, skipped: list[dict]) -> dict | None:
    """Score one clip; for stems, a song that cannot be scored is warned about, added to
    ``skipped`` and gives None (the other formats stop with the error)."""
    try:
        clip = datasets.load_clip(ref, args.mix_from_stems)
        log.info(
            "%s: %.1f s, %d channel(s) at %d Hz",
            clip.name,
            clip.seconds,
            clip.channels,
            clip.sample_rate,
        )
        return evaluate_clip(model, clip, chosen, args.museval, args.trim)
    except AudioFileError as error:
        if args.data_format != "stems":
            raise
        _skip(ref, error, skipped)
        return None


def _songs_with_sound_headers(refs, mix_from_stems: bool, skipped: list[dict]) -> list:
    """The songs whose files are all there and agree in rate, channels and length by their
    headers: a bad song is reported before the table, not in the middle of it."""
    kept = []
    for ref in refs:
        try:
            datasets.check_song_headers(datasets.song_files(ref.path, mix_from_stems))
        except AudioFileError as error:
            _skip(ref, error, skipped)
        else:
            kept.append(ref)
    if not kept:
        raise _nothing_left(skipped)
    return kept


def _skip(ref, error: AudioFileError, skipped: list[dict]) -> None:
    reason = first_line(error)
    log.warning("skipping song %r: %s", ref.name, reason)
    skipped.append({"name": ref.name, "reason": reason})


def _nothing_left(skipped: list[dict]) -> UserError:
    return UserError(
        f"no song left to evaluate: all {len(skipped)} song folder(s) were skipped "
        "(see the warnings above)"
    )


# ---------------------------------------------------------------------- report


def build_report(
    args: argparse.Namespace, model, plan: dict, results: list[dict], skipped: list[dict]
) -> dict:
    seconds = sum(result["seconds"] for result in results)
    separating = sum(result["separate_seconds"] for result in results)
    return {
        "model": str(model.path),
        "provider": model.provider,
        "data": str(args.data),
        "format": args.data_format,
        "split": args.split,
        "singers": args.singers,
        "mode": "streaming" if args.streaming else "offline",
        "engine": plan,
        "museval": bool(args.museval),
        "trim_seconds": args.trim,
        "mix_from_stems": bool(args.mix_from_stems),
        "clips": results,
        "skipped": skipped,
        "audio_seconds": seconds,
        "separate_seconds": separating,
        "real_time_factor": separating / seconds if seconds else None,
        "summary": summarise(results),
        "by_group": summarise_groups(results, args.data_format),
        "notes": _notes(results, skipped, args.mix_from_stems),
    }


def _notes(results: list[dict], skipped: list[dict], mix_from_stems: bool) -> list[str]:
    notes = []
    summed = [result["name"] for result in results if result.get("mixture") == "sum of stems"]
    if summed and mix_from_stems:
        notes.append("the mixture separated is the sum of the stems (--mix-from-stems)")
    elif summed:
        notes.append(
            f"{len(summed)} song(s) have no mixture file; the mixture separated is the sum of "
            f"their stems: {', '.join(summed)}"
        )
    if skipped:
        notes.append(
            f"{len(skipped)} song(s) skipped (see the warnings): "
            + ", ".join(entry["name"] for entry in skipped)
        )
    mono = sum(1 for result in results if result["channels"] != 2)
    if mono:
        notes.append(
            f"L-R centre cancellation needs a stereo mixture; {mono} clip(s) have a mono one "
            "(MIR-1K's mixture is channel 0 + channel 1, so it never applies there)"
        )
    return notes


def write_json_atomically(path: Path, report: dict) -> None:
    """Write ``report`` as JSON (NaN/Inf as null), whole or not at all."""
    atomic.write_text(path, json.dumps(_finite(report), indent=2, allow_nan=False) + "\n")


def _finite(value):
    """A copy of a JSON-able structure with non-finite floats replaced by None."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _check_json_path(text: str | None) -> Path | None:
    """Refuse an unwritable --json before any clip is separated, not after."""
    if text is None:
        return None
    path = Path(text)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"--json {text!r} is a directory; give a file name")
    if not folder.is_dir():
        raise UserError(f"--json {text!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"--json {text!r}: folder {str(folder)!r} is not writable")
    return path


# ---------------------------------------------------------------------- terminal table


def _plan_line(args, model, plan: dict, clips: int) -> str:
    mode = "streaming" if args.streaming else "offline"
    return (
        f"{clips} clip(s) from {args.data} ({args.data_format}); model {model.path} on "
        f"{model.provider}; {mode}: hop {plan['hop_seconds']:.3f} s, lookahead "
        f"{plan['lookahead_seconds']:.3f} s, algorithmic latency (lookahead + hop) "
        f"{plan['algorithmic_latency_seconds']:.3f} s, engine delay "
        f"{plan['latency_seconds']:.3f} s" + _window_options_text(plan) + _scoring_text(args)
    )


def _scoring_text(args) -> str:
    """'' for untrimmed scores of the dataset's own mixtures, else what differs."""
    parts = []
    if args.trim:
        parts.append(f"scored without the first and last {args.trim:g} s")
    if args.mix_from_stems:
        parts.append("mixture = sum of the stems")
    return "".join(f"; {part}" for part in parts)


def _window_options_text(plan: dict) -> str:
    """'' at the defaults, else '; post-filter wiener, ...'."""
    parts = []
    if plan["postfilter"] != "none":
        parts.append(f"post-filter {plan['postfilter']}")
    if plan["high_band_voice_removal"]:
        parts.append(f"high-band voice removal {plan['high_band_voice_removal']:g}")
    if plan["denoise"]:
        parts.append("denoise")
    return "".join(f"; {part}" for part in parts)


_CLIP_COLUMNS = "{:<28} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}"


def _clip_header() -> str:
    top = _CLIP_COLUMNS.format("", "", "vocals", "", "", "accomp", "", "", "")
    names = [MEASURE_TITLES[measure] for measure in MEASURES]
    return top + "\n" + _CLIP_COLUMNS.format("clip", "sec", *names, *names, "sep s")


def _clip_line(result: dict) -> str:
    scores = result["scores"]["model"]
    values = [_db(scores[stem][measure]) for stem in STEMS for measure in MEASURES]
    return _CLIP_COLUMNS.format(
        result["name"][:28],
        f"{result['seconds']:.1f}",
        *values,
        f"{result['separate_seconds']:.2f}",
    )


def _db(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.2f}"


def format_summary(summary: dict, notes: list[str]) -> str:
    """The overall table: method x statistic rows, stem x measure columns, in dB."""
    columns = "{:<12} {:<7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}"
    names = [MEASURE_TITLES[measure] for measure in MEASURES]
    lines = [
        "",
        "overall (dB)",
        columns.format("", "", "vocals", "", "", "accomp", "", "", ""),
        columns.format("method", "", *names, *names, "clips"),
    ]
    for method in METHODS:
        if method not in summary:
            lines.append(columns.format(METHOD_TITLES[method], "n/a", *[""] * 7))
            continue
        for statistic in ("mean", "median"):
            cells = [summary[method][stem][measure] for stem in STEMS for measure in MEASURES]
            count = summary[method]["vocals"]["sdr"]["clips"]
            lines.append(
                columns.format(
                    METHOD_TITLES[method] if statistic == "mean" else "",
                    statistic,
                    *[_db(cell[statistic]) for cell in cells],
                    count if statistic == "mean" else "",
                )
            )
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines)


def format_groups(by_group: dict) -> str:
    """One line per singer: the model's vocals SDR (mean, median) and the clip count."""
    columns = "{:<12} {:>8} {:>8} {:>6}"
    lines = [
        "",
        "model, vocals SDR by singer (dB)",
        columns.format("singer", "mean", "median", "clips"),
    ]
    for group, summary in by_group.items():
        cell = summary["model"]["vocals"]["sdr"]
        lines.append(
            columns.format(group[:12], _db(cell["mean"]), _db(cell["median"]), cell["clips"])
        )
    return "\n".join(lines)
