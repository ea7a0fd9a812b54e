"""The Wiener post-filter's effect on quality and its cost per window.

Every clip goes through the streaming engine at the live default settings (what ``stream-sep
evaluate --streaming`` runs) once per post-filter variant; the model's output for each window
is computed once and reused by every variant (the windows are the same samples), so the
variants differ only in the post-filter. Scores: whole-clip vocals SDR and SI-SDR
(:mod:`stream_sep.evaluation.metrics`); the table gives each variant's mean, its mean gain over no
post-filter and that gain's spread over clips.

Variants: ``none``, ``wiener`` (soft mask from the estimates' magnitudes, STFT 2048 / 512
at the model's rate), ``wiener-em`` (the soft mask and one EM iteration), and for comparison
open-unmix's own start (``phase-em1``: the estimates' magnitudes with the mixture's phase,
one EM iteration), two EM iterations (``wiener-em2``) and other STFT sizes
(``wiener-1024``, ``wiener-em-1024``: 1024 / 256; ``wiener-4096``; ``wiener-8192``).

The cost is timed through the engine's window path (:class:`WindowRunner`), with and
without the post-filter, for one mono window at 16 kHz and one stereo window at 48 kHz;
the ratio is what the post-filter adds to the live load.

    python -m benchmarks postfilter_quality --data ../shared/data/mir1k \
        --singers abjones,amy --every 6 --also Ani,bobon,bug,fdps,heycat,jmzen,Kenshin,stool,tammy,yifen \
        --also-every 25 --json benchmarks/results/postfilter.json --md benchmarks/results/postfilter.md
"""

from __future__ import annotations

import argparse
import hashlib
import statistics

import numpy as np

from benchmarks.harness import ModelProxy, Run, Stopwatch, timings
from stream_sep import evaluation
from stream_sep.dsp.postfilter import PostFilter
from stream_sep.engine.plan import WindowPlan
from stream_sep.engine.window import WindowRunner
from stream_sep.evaluation import datasets, metrics
from stream_sep.models.loading import load_model

VARIANTS = {
    "none": lambda: PostFilter("none"),
    "wiener": lambda: PostFilter("wiener"),
    "wiener-em": lambda: PostFilter("wiener-em"),
    "wiener-em2": lambda: PostFilter("wiener-em", iterations=2),
    "phase-em1": lambda: PostFilter("wiener-em", softmask=False),
    "wiener-1024": lambda: PostFilter("wiener", n_fft=1024, hop=256),
    "wiener-em-1024": lambda: PostFilter("wiener-em", n_fft=1024, hop=256),
    "wiener-4096": lambda: PostFilter("wiener", n_fft=4096, hop=1024),
    "wiener-8192": lambda: PostFilter("wiener", n_fft=8192, hop=2048),
}


class ReusedModel(ModelProxy):
    """A model whose output for a batch already seen is returned again, not recomputed;
    ``computed`` counts the calls that ran the model."""

    def __init__(self, model):
        super().__init__(model)
        self._outputs: dict[bytes, np.ndarray] = {}
        self.computed = 0

    def compute(self, audio: np.ndarray, call: int) -> np.ndarray:
        key = hashlib.blake2b(np.ascontiguousarray(audio).tobytes(), digest_size=16).digest()
        if key not in self._outputs:
            self.computed += 1
            self._outputs[key] = self.model.separate(audio)
        return self._outputs[key].copy()

    def forget(self) -> None:
        self._outputs.clear()


def score_clip(model: ReusedModel, clip: datasets.Clip, variants: list[str], plan: dict) -> dict:
    """{variant: {"sdr", "si_sdr"}} of one clip's vocal estimate through the engine;
    plan: streaming (else the offline overlap-add plan), hop and lookahead (None: the
    live defaults)."""
    scores = {}
    for name in variants:
        options = evaluation.engine_options(plan["streaming"], plan["hop"], plan["lookahead"])
        options["postfilter"] = VARIANTS[name]()
        estimate = evaluation.estimate_vocals(model, clip.mixture, clip.sample_rate, options)
        scores[name] = {
            "sdr": metrics.sdr(clip.vocals, estimate),
            "si_sdr": metrics.si_sdr(clip.vocals, estimate),
        }
    model.forget()
    return scores


def time_window(model, rate: int, channels: int, variant: str, runs: int) -> float:
    """Median seconds of one window through the engine's window path with ``variant``."""
    options = evaluation.engine_options(True)
    plan = WindowPlan.build(
        model.contract, rate, options["hop"], options["lookahead"], options["crossfade"]
    )
    runner = WindowRunner(model, plan, postfilter=VARIANTS[variant]())
    audio = 0.1 * np.random.default_rng(0).standard_normal((channels, plan.window_samples))
    audio = audio.astype(np.float32)
    return statistics.median(timings(lambda: runner.estimate(audio), runs))


def time_postfilter(variant: str, rate: int, channels: int, runs: int, model) -> float:
    """Median seconds of the post-filter alone on the stretch the engine filters."""
    options = evaluation.engine_options(True)
    plan = WindowPlan.build(
        model.contract, rate, options["hop"], options["lookahead"], options["crossfade"]
    )
    runner = WindowRunner(model, plan, postfilter=VARIANTS[variant]())
    stretch = runner._filter_slice  # the engine's own stretch, so the timing is its cost
    rng = np.random.default_rng(1)
    mixture = (0.1 * rng.standard_normal((channels, stretch.stop - stretch.start))).astype(
        np.float32
    )
    vocals = 0.5 * mixture
    filter_ = runner.postfilter
    return statistics.median(timings(lambda: filter_.apply(vocals, mixture), runs, warm_up=False))


def summarise(results: list[dict], variants: list[str]) -> dict:
    summary = {}
    for name in variants:
        sdr = [r["scores"][name]["sdr"] for r in results]
        gain = [r["scores"][name]["sdr"] - r["scores"]["none"]["sdr"] for r in results]
        si = [r["scores"][name]["si_sdr"] for r in results]
        summary[name] = {
            "sdr_mean": statistics.fmean(sdr),
            "sdr_median": statistics.median(sdr),
            "si_sdr_mean": statistics.fmean(si),
            "gain_mean": statistics.fmean(gain),
            "gain_stdev": statistics.stdev(gain) if len(gain) > 1 else 0.0,
            "clips_better": sum(g > 0 for g in gain),
            "clips": len(gain),
        }
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="MIR-1K folder")
    parser.add_argument("--model", help="ONNX model (default: the bundled one)")
    parser.add_argument("--singers", default="abjones,amy")
    parser.add_argument("--every", type=int, default=6)
    parser.add_argument("--also", default="", help="more singers, every --also-every-th clip")
    parser.add_argument("--also-every", type=int, default=25)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--hop", type=float, help="seconds (default: the live default)")
    parser.add_argument("--lookahead", type=float, help="seconds (default: the live default)")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="score the offline overlap-add plan (stream-sep separate's default) instead",
    )
    parser.add_argument("--timing-runs", type=int, default=5)
    parser.add_argument("--json")
    parser.add_argument("--md")
    args = parser.parse_args(argv)
    run = Run("postfilter_quality", argv)
    variants = args.variants.split(",")
    if "none" not in variants:
        variants.insert(0, "none")
    refs = datasets.find_clips(args.data, "mir1k", None, args.singers.split(","), None, args.every)
    if args.also:
        refs += datasets.find_clips(
            args.data, "mir1k", None, args.also.split(","), None, args.also_every
        )
    raw = load_model(args.model, provider="cpu")
    model = ReusedModel(raw)
    results = []
    with Stopwatch() as evaluating:
        for ref in refs:
            clip = datasets.load_clip(ref)
            scores = score_clip(
                model,
                clip,
                variants,
                {"streaming": not args.offline, "hop": args.hop, "lookahead": args.lookahead},
            )
            results.append({"name": clip.name, "seconds": clip.seconds, "scores": scores})
            cells = "  ".join(f"{name} {scores[name]['sdr']:6.2f}" for name in variants)
            print(f"{clip.name:<20} {clip.seconds:5.1f} s  {cells}", flush=True)
    evaluate_seconds = evaluating.seconds
    held_out = set(args.singers.split(","))
    groups = {"all clips": results}
    if args.also:
        groups[f"--singers {args.singers}"] = [
            r for r in results if datasets.mir1k_singer(r["name"]) in held_out
        ]
        groups[f"--also {args.also}"] = [
            r for r in results if datasets.mir1k_singer(r["name"]) not in held_out
        ]
    summary = {name: summarise(members, variants) for name, members in groups.items()}
    costs = {}
    for rate, channels in ((16000, 1), (48000, 2)):
        key = f"{rate // 1000} kHz x{channels}"
        window = time_window(raw, rate, channels, "none", args.timing_runs)
        costs[key] = {"window_seconds": window}
        for name in variants[1:]:
            extra = time_postfilter(name, rate, channels, args.timing_runs, raw)
            costs[key][name] = {"postfilter_seconds": extra, "ratio": extra / window}
    report = {
        "model": str(raw.path),
        "plan": "offline overlap-add" if args.offline else "streaming",
        "engine": evaluation.describe_plan(
            raw, evaluation.engine_options(True, args.hop, args.lookahead)
        ),
        "clips": len(results),
        "audio_seconds": sum(r["seconds"] for r in results),
        "model_calls": model.computed,
        "evaluate_seconds": evaluate_seconds,
        "summary": summary,
        "costs": costs,
        "results": results,
    }
    print(run.write(args.json, args.md, report, format_markdown(report, variants)), end="")
    return 0


def format_markdown(report: dict, variants: list[str]) -> list[str]:
    """The report's body: one table per group of clips, then the cost per window."""
    engine = report["engine"]
    plan_text = (
        "the offline overlap-add plan (stream-sep separate's default)"
        if report["plan"] != "streaming"
        else f"streaming with hop {engine['hop_seconds']:g} s and lookahead "
        f"{engine['lookahead_seconds']:g} s"
    )
    lines = [
        f"{report['clips']} clips ({report['audio_seconds']:.0f} s of audio), {plan_text}, "
        "vocals SDR in dB",
    ]
    for group, summary in report["summary"].items():
        lines += [
            "",
            f"{group} ({summary['none']['clips']} clips):",
            "",
            "| post-filter | SDR mean | SDR median | SI-SDR mean | gain over none (mean ± sd) "
            "| clips better |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name in variants:
            row = summary[name]
            lines.append(
                f"| {name} | {row['sdr_mean']:.2f} | {row['sdr_median']:.2f} | "
                f"{row['si_sdr_mean']:.2f} | {row['gain_mean']:+.2f} ± "
                f"{row['gain_stdev']:.2f} | {row['clips_better']} / {row['clips']} |"
            )
    lines += [
        "",
        "Cost per window (median), the engine's window path without post-filter and what "
        "each post-filter adds (share of that time):",
        "",
        "| window | model path | " + " | ".join(variants[1:]) + " |",
    ]
    lines.append("| --- | --- |" + " --- |" * len(variants[1:]))
    for key, cost in report["costs"].items():
        cells = [
            f"+{cost[name]['postfilter_seconds'] * 1000:.1f} ms ({cost[name]['ratio']:.1%})"
            for name in variants[1:]
        ]
        lines.append(
            f"| {key} | {cost['window_seconds'] * 1000:.0f} ms | " + " | ".join(cells) + " |"
        )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
