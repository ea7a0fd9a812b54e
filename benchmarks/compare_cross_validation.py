"""Compare two cross-validation reports clip by clip: is one recipe (or length, or option)
better than another on the same singers and the same clips?

Two reports of ``benchmarks/cross_validate.py --json`` are matched fold by fold (the same
held-out singers) and, within a fold, clip by clip (the same clip names); only what both
scored is compared. For each fold the paired gain is the mean over its common clips of
(other - base) vocals SDR, with the count of clips that got better; over folds, the mean and
spread of the per-fold gains, the folds that got better, and each singer's paired gain. A
paired gain is far less noisy than the difference of two means over different clips: the
singers move a fold's mean by 2-3 dB, the same clip scored by two models differs far less.

It also compares a long run with a short one on the short run's clips, e.g. the full measure
(every clip) against the cheap one (every 6th clip)::

    python -m benchmarks compare_cross_validation \\
        benchmarks/results/cross-validation-cheap.json \\
        benchmarks/results/cross-validation-full.json --md compare.md

The first report is the base. What differs between the two runs (steps, recipe, evaluation
settings) is printed first, so a gain is read for what it is. Reading two JSON files costs
nothing; no model runs.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from benchmarks.cross_validate import load_report, spread
from benchmarks.harness import Run, table
from stream_sep.cli_runner import run_main
from stream_sep.errors import UserError
from stream_sep.evaluation.datasets import mir1k_singer

# The settings of a run that a reader must know to read a gain: a report key and its label.
SETTINGS = (("recipe", "recipe"), ("every", "every K-th clip"))


def clip_scores(fold: dict) -> dict[str, float]:
    """``{clip name: vocals SDR}`` of one fold row."""
    return {clip["name"]: clip["vocals_sdr"] for clip in fold["clips"]}


def fold_key(fold: dict) -> tuple[str, ...]:
    return tuple(sorted(fold["held_out"]))


def compare_fold(base: dict, other: dict) -> dict | None:
    """The paired comparison of one fold's common clips (None when they share no clip).

    ``clips`` holds ``(name, base SDR, other SDR)`` in the base's order."""
    base_scores, other_scores = clip_scores(base), clip_scores(other)
    clips = [(name, sdr, other_scores[name]) for name, sdr in base_scores.items()
             if name in other_scores]  # fmt: skip
    if not clips:
        return None
    gains = [b - a for _, a, b in clips]
    return {
        "fold": base["fold"],
        "held_out": list(base["held_out"]),
        "clips": len(clips),
        "base": statistics.fmean(a for _, a, _ in clips),
        "other": statistics.fmean(b for _, _, b in clips),
        "gain": statistics.fmean(gains),
        "clips_better": sum(gain > 0 for gain in gains),
        "per_clip": [{"name": n, "base": a, "other": b} for n, a, b in clips],
    }


def singer_gains(rows: list[dict]) -> dict[str, dict]:
    """Each singer's paired gain over the compared clips: ``{singer: {clips, base, other,
    gain}}``, singers in the order met."""
    pairs: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        for clip in row["per_clip"]:
            pairs.setdefault(mir1k_singer(clip["name"]), []).append((clip["base"], clip["other"]))
    return {
        singer: {
            "clips": len(scores),
            "base": statistics.fmean(a for a, _ in scores),
            "other": statistics.fmean(b for _, b in scores),
            "gain": statistics.fmean(b - a for a, b in scores),
        }
        for singer, scores in pairs.items()
    }


def trained_steps(report: dict) -> str:
    """The steps its folds were trained for: '600', or '5550, 5700' where they differ."""
    return ", ".join(
        str(steps) for steps in sorted({fold.get("steps") or 0 for fold in report["folds"]})
    )


def setting(value) -> str:
    return "not recorded" if value is None else str(value)


def differences(base: dict, other: dict) -> list[str]:
    """What differs between the two runs, one line each: 'steps trained per fold: 600 -> 5550'."""
    lines = []
    if trained_steps(base) != trained_steps(other):
        lines.append(f"steps trained per fold: {trained_steps(base)} -> {trained_steps(other)}")
    lines += [
        f"{label}: {setting(base.get(key))} -> {setting(other.get(key))}"
        for key, label in SETTINGS
        if base.get(key) != other.get(key)
    ]
    base_eval, other_eval = base.get("evaluation") or {}, other.get("evaluation") or {}
    for key in sorted(set(base_eval) | set(other_eval)):
        if base_eval.get(key) != other_eval.get(key):
            lines.append(
                f"evaluation {key}: {setting(base_eval.get(key))} -> {setting(other_eval.get(key))}"
            )
    return lines


def compare(base: dict, other: dict) -> dict:
    """The comparison of two reports (see the module's docstring)."""
    others = {fold_key(fold): fold for fold in other["folds"]}
    in_base = {fold_key(fold) for fold in base["folds"]}
    rows = []
    unmatched = [", ".join(key) for key in others if key not in in_base]
    for fold in base["folds"]:
        match = others.get(fold_key(fold))
        row = compare_fold(fold, match) if match is not None else None
        if row is None:
            unmatched.append(", ".join(fold["held_out"]))
        else:
            rows.append(row)
    if not rows:
        raise UserError(
            "the two reports share no fold with common clips (folds are matched by their "
            "held-out singers, clips by name)"
        )
    clips = [clip for row in rows for clip in row["per_clip"]]
    return {
        "differences": differences(base, other),
        "folds": rows,
        "not_compared": unmatched,
        "gain_over_folds": spread([row["gain"] for row in rows]),
        "base_over_folds": spread([row["base"] for row in rows]),
        "other_over_folds": spread([row["other"] for row in rows]),
        "folds_better": sum(row["gain"] > 0 for row in rows),
        "clips": len(clips),
        "clips_better": sum(clip["other"] > clip["base"] for clip in clips),
        "by_singer": singer_gains(rows),
    }


def format_text(result: dict) -> str:
    lines = [*(f"differs: {line}" for line in result["differences"])]
    for row in result["folds"]:
        lines.append(
            f"fold {row['fold']} ({', '.join(row['held_out'])}): {row['clips']} clips, "
            f"base {row['base']:.2f} dB, other {row['other']:.2f} dB, gain {row['gain']:+.2f} dB "
            f"({row['clips_better']}/{row['clips']} clips better)"
        )
    gain = result["gain_over_folds"]
    lines.append(
        f"over {gain['folds']} fold(s): base {result['base_over_folds']['mean']:.2f} dB, other "
        f"{result['other_over_folds']['mean']:.2f} dB, gain {gain['mean']:+.2f} ± "
        f"{gain['stdev']:.2f} dB (range {gain['min']:+.2f} to {gain['max']:+.2f}), "
        f"{result['folds_better']}/{gain['folds']} folds and {result['clips_better']}/"
        f"{result['clips']} clips better"
    )
    if result["not_compared"]:
        lines.append(f"not compared (in one report only, or no common clip): "
                     f"{'; '.join(result['not_compared'])}")  # fmt: skip
    return "\n".join(lines)


def format_markdown(result: dict, base_name: str, other_name: str) -> list[str]:
    """The report's body: what differs, the folds, the gain over them, the singers."""
    lines = [
        f"Paired comparison of cross-validation reports: other = `{other_name}`, base = "
        f"`{base_name}`; gain = other - base, per clip, on the clips both scored.",
        "",
        *(f"- differs: {line}" for line in result["differences"]),
        "",
    ]
    lines += table(
        ("fold", "held out", "clips", "base", "other", "gain", "clips better"),
        [
            (row["fold"], ", ".join(row["held_out"]), row["clips"], f"{row['base']:.2f}",
             f"{row['other']:.2f}", f"{row['gain']:+.2f}", f"{row['clips_better']}/{row['clips']}")
            for row in result["folds"]
        ],
    )  # fmt: skip
    gain = result["gain_over_folds"]
    lines += [
        "",
        f"Gain over {gain['folds']} fold(s) **{gain['mean']:+.2f} dB** (standard deviation "
        f"{gain['stdev']:.2f} dB, range {gain['min']:+.2f} to {gain['max']:+.2f}); "
        f"{result['folds_better']}/{gain['folds']} folds and {result['clips_better']}/"
        f"{result['clips']} clips better.",
        "",
    ]
    lines += table(
        ("singer", "clips", "base", "other", "gain"),
        [
            (singer, cell["clips"], f"{cell['base']:.2f}", f"{cell['other']:.2f}",
             f"{cell['gain']:+.2f}")
            for singer, cell in result["by_singer"].items()
        ],
    )  # fmt: skip
    if result["not_compared"]:
        lines += ["", f"Not compared: {'; '.join(result['not_compared'])}."]
    return lines


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path, help="the base report (cross_validate.py --json)")
    parser.add_argument("other", type=Path, help="the report compared with it")
    parser.add_argument("--json", type=Path, help="write the comparison as JSON")
    parser.add_argument("--md", type=Path, help="write the comparison as Markdown")
    return parser.parse_args(argv)


def run(argv=None) -> dict:
    this_run = Run("compare_cross_validation", argv)
    args = parse_args(argv)
    result = compare(load_report(args.base), load_report(args.other))
    print(format_text(result))
    body = format_markdown(result, args.base.name, args.other.name)
    this_run.write(args.json, args.md, result, body)
    return result


def main(argv=None) -> int:
    """Exit 0; a user error is one line and exit 2."""
    return run_main("compare_cross_validation.py", lambda: run(argv) and 0)  # run gives a dict


if __name__ == "__main__":
    raise SystemExit(main())
