"""Paired gains on songs a model never trained on: models fine-tuned with real multitrack songs
(``python -m train --multitrack``), each scored on every song, against a control run.

Each ``--model`` report and the ``--control`` report are JSON files written by ``stream-sep
evaluate --format stems --json`` on the same songs. The songs a model trained on are read from
its ONNX metadata (``provenance.training``: ``multitrack_songs``, every song of
``multitrack`` when empty); the others are its held-out songs. For each held-out song the
table gives the control's and the model's vocals and accompaniment SDR and their difference;
the trained songs are listed apart (they measure memory, not separation). Optionally
``--mir1k MODEL_JSON CONTROL_JSON`` pairs add the MIR-1K guard (mean vocals SDR). One
``--control`` serves every model; one per ``--model`` (in order) pairs each model with its
own (a step taken from each fold's weights, against those weights).

    python -m benchmarks held_out_songs --control control.json --model foldA.json \
        --model foldB.json --out benchmarks/results/multitrack-finetune/held-out

Writes ``--out``.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import onnx

from benchmarks.harness import RESULTS, Run, table

STEMS = ("vocals", "accompaniment")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--control",
        action="append",
        required=True,
        metavar="JSON",
        help="the control's report: one for every model, or one per --model in order",
    )
    parser.add_argument(
        "--model", action="append", required=True, metavar="JSON", help="a model's report"
    )
    parser.add_argument(
        "--mir1k",
        nargs=2,
        action="append",
        metavar=("MODEL_JSON", "CONTROL_JSON"),
        help="MIR-1K reports of a model and of the control (repeat per model)",
    )
    parser.add_argument("--out", default=str(RESULTS / "held_out_songs"), help="path stem")
    return parser


def scores(report: dict) -> dict[str, dict[str, float]]:
    """{song: {stem: SDR}} of an evaluate report."""
    return {
        clip["name"]: {stem: clip["scores"]["model"][stem]["sdr"] for stem in STEMS}
        for clip in report["clips"]
    }


def trained_songs(model_path: str, songs: list[str]) -> list[str]:
    """The songs of ``songs`` the model at ``model_path`` trained on (its provenance)."""
    metadata = {
        p.key: p.value for p in onnx.load(model_path, load_external_data=False).metadata_props
    }
    training = json.loads(metadata.get("provenance.training", "{}") or "{}")
    if not training.get("multitrack_share"):
        return []
    named = training.get("multitrack_songs")
    return [song for song in songs if not named or song in named]


def pair(model_report: dict, control: dict[str, dict[str, float]]) -> dict:
    """A model's held-out songs against ``control`` ({song: {stem: SDR}})."""
    model = scores(model_report)
    trained = trained_songs(model_report["model"], list(model))
    held_out = [song for song in model if song not in trained]
    rows = []
    for song in held_out:
        row = {"song": song}
        for stem in STEMS:
            row[stem] = {"control": control[song][stem], "model": model[song][stem]}
            row[stem]["gain"] = model[song][stem] - control[song][stem]
        rows.append(row)
    return {"model": model_report["model"], "trained_on": trained, "held_out": rows}


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    run = Run("held_out_songs", argv)
    if len(args.control) not in (1, len(args.model)):
        raise SystemExit(
            f"held_out_songs: give one --control, or one per --model ({len(args.model)}), "
            f"got {len(args.control)}"
        )
    controls = args.control * len(args.model) if len(args.control) == 1 else args.control
    results = [
        pair(json.loads(Path(path).read_text()), scores(json.loads(Path(control).read_text())))
        for path, control in zip(args.model, controls, strict=True)
    ]
    rows = [row for result in results for row in result["held_out"]]
    summary = {
        stem: {
            "mean_gain": statistics.mean(row[stem]["gain"] for row in rows),
            "min_gain": min(row[stem]["gain"] for row in rows),
            "max_gain": max(row[stem]["gain"] for row in rows),
            "songs": len(rows),
        }
        for stem in STEMS
    }
    mir1k = [mir1k_pair(model, control_path) for model, control_path in args.mir1k or []]
    data = {"controls": controls, "models": results, "summary": summary, "mir1k": mir1k}
    print(run.write(f"{args.out}.json", f"{args.out}.md", data, body(results, summary, mir1k)))
    return 0


def mir1k_pair(model_json: str, control_json: str) -> dict:
    def mean(path: str) -> float:
        return json.loads(Path(path).read_text())["summary"]["model"]["vocals"]["sdr"]["mean"]

    model, control = mean(model_json), mean(control_json)
    return {"model": model_json, "vocals": model, "control": control, "gain": model - control}


def body(results: list[dict], summary: dict, mir1k: list[dict]) -> list[str]:
    header = ["model", "held-out song", "vocals: control", "model", "gain",
              "accomp.: control", "model", "gain"]  # fmt: skip
    rows = []
    for result in results:
        name = Path(result["model"]).name
        for row in result["held_out"]:
            vocals, band = row["vocals"], row["accompaniment"]
            rows.append([name, row["song"]] + [
                f"{part[key]:+.2f}" if key == "gain" else f"{part[key]:.2f}"
                for part in (vocals, band) for key in ("control", "model", "gain")
            ])  # fmt: skip
    lines = [
        "Whole-clip SDR (dB) of each model on the songs it did not train on, against the control.",
        "",
    ]
    lines += table(header, rows)
    lines += [""]
    for stem in STEMS:
        part = summary[stem]
        lines.append(
            f"- {stem}: mean gain {part['mean_gain']:+.2f} dB over {part['songs']} held-out "
            f"songs (from {part['min_gain']:+.2f} to {part['max_gain']:+.2f})"
        )
    for result in results:
        trained = ", ".join(result["trained_on"]) or "none"
        lines.append(f"- {Path(result['model']).name} trained on: {trained}")
    for entry in mir1k:
        lines.append(
            f"- MIR-1K guard, {Path(entry['model']).name}: vocals {entry['vocals']:.2f} dB "
            f"against the control's {entry['control']:.2f} ({entry['gain']:+.2f})"
        )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
