"""Separation quality on a dataset, the way the field measures it (what ``stream-sep
evaluate`` prints, as functions scripts and benchmarks call).

For every clip, and for vocals and accompaniment, three measures (see :mod:`stream_sep.evaluation.metrics`):
whole-clip SDR (MDX challenge), museval's SiSEC18 median-of-frames SDR, and SI-SDR, for three
estimates: ``model`` (the model through the engine, delay removed; accompaniment = mixture -
vocals), ``mixture`` (the floor to beat) and ``centre-cancel`` (L-R karaoke, stereo only).
Arrays are (channels, samples).
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from collections.abc import Iterable

import numpy as np

from stream_sep import offline, settings
from stream_sep.engine import WindowPlan
from stream_sep.errors import AudioFileError
from stream_sep.evaluation import datasets, metrics
from stream_sep.offline.config import OfflinePlan

STEMS = ("vocals", "accompaniment")
METHODS = ("model", "mixture", "centre-cancel")
MEASURES = ("sdr", "museval_sdr", "si_sdr")


# ---------------------------------------------------------------------- estimates


def engine_options(
    streaming: bool,
    hop: float | None = None,
    lookahead: float | None = None,
    **window_options,
) -> dict:
    """Options for an evaluation run: the engine defaults (hop, lookahead, crossfade,
    stereo, post-filter, high band), with ``hop``/``lookahead`` replaced when streaming and
    the window options (``postfilter``, ``high_band_voice_removal``, ``denoise``) as given;
    ``like_live`` = streaming (otherwise the offline throughput plan of
    :mod:`stream_sep.offline.overlap_add` is scored)."""
    if not streaming:
        hop = lookahead = None
    options = settings.Settings(hop=hop, lookahead=lookahead, **window_options).engine_options()
    return {**options, "like_live": streaming}


def offline_plan(
    streaming: bool,
    hop: float | None = None,
    lookahead: float | None = None,
    **window_options,
) -> OfflinePlan:
    """What :func:`engine_options` describes, as the typed plan the offline functions run:
    the streaming engine with ``hop``/``lookahead`` when streaming, else the throughput plan,
    with the window options (and ``stereo``) as given."""
    if not streaming:
        hop = lookahead = None
    chosen = settings.Settings(hop=hop, lookahead=lookahead, **window_options)
    return chosen.offline_plan(like_live=streaming)


def _as_plan(plan: OfflinePlan | dict) -> OfflinePlan:
    """``plan``, or the plan of the options :func:`engine_options` gives."""
    return plan if isinstance(plan, OfflinePlan) else OfflinePlan.of(**plan)


@contextlib.contextmanager
def _quiet_engine_input_checks():
    """Mute the engine's warnings while evaluating: an evaluation mixture may exceed full
    scale on purpose (MIR-1K's channel sum does), which is not clipping in float, and model
    failures are reported here with their reason instead."""
    engine_log = logging.getLogger("stream_sep.engine")
    level = engine_log.level
    if not engine_log.isEnabledFor(logging.DEBUG):
        engine_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        engine_log.setLevel(level)


def estimate_vocals(
    model, mixture: np.ndarray, sample_rate: int, plan: OfflinePlan | dict
) -> np.ndarray:
    """The model's time-aligned vocal estimate of ``mixture`` with ``plan`` (an
    :class:`~stream_sep.offline.config.OfflinePlan`, or the options of :func:`engine_options`).

    mixture: (channels, samples) float32 -> (channels, samples) float32. The same engine run
    as ``stream-sep separate``, but without the output guard that it applies for listening:
    a -1 dBFS limiter on a loud mixture would change the samples being measured. A window
    the model failed on raises :class:`ModelError` rather than being scored as the dry mix.
    """
    with _quiet_engine_input_checks():
        return offline.estimate_vocals(
            model, mixture, sample_rate, warm_up=False, plan=_as_plan(plan)
        )


def centre_cancel(mixture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L-R karaoke of a stereo mixture (2, samples) -> (vocals, accompaniment) estimates.

    vocals = the mid (L + R) / 2 on both channels; accompaniment = mixture - vocals =
    ((L - R) / 2, (R - L) / 2): whatever is equal in both channels is taken to be voice.
    """
    mid = mixture.mean(axis=0, keepdims=True)
    vocals = np.repeat(mid, 2, axis=0)
    return vocals, mixture - vocals


def describe_plan(model, plan: OfflinePlan | dict) -> dict:
    """The engine's latency and settings for ``plan`` (as for :func:`estimate_vocals`) at the
    model's own rate."""
    rate = model.contract.sample_rate
    config = _as_plan(plan).engine
    windows = WindowPlan.build(model.contract, rate, config.hop, config.lookahead, config.crossfade)
    return {
        "hop_seconds": windows.hop_samples / rate,
        "lookahead_seconds": windows.lookahead_samples / rate,
        "crossfade_seconds": windows.crossfade_samples / rate,
        "latency_seconds": windows.latency_seconds,
        "algorithmic_latency_seconds": (windows.lookahead_samples + windows.hop_samples) / rate,
        "postfilter": config.postfilter,
        "high_band_voice_removal": config.high_band_voice_removal,
        "denoise": config.denoise,
    }


# ---------------------------------------------------------------------- scoring


def score(
    vocals: np.ndarray,
    accompaniment: np.ndarray,
    vocals_estimate: np.ndarray,
    accompaniment_estimate: np.ndarray,
    sample_rate: int,
    use_museval: bool,
) -> dict[str, dict[str, float]]:
    """{stem: {measure: dB}} for one estimate pair; all arrays (channels, samples)."""
    pairs = {
        "vocals": (vocals, vocals_estimate),
        "accompaniment": (accompaniment, accompaniment_estimate),
    }
    scores = {}
    for stem, (reference, estimate) in pairs.items():
        scores[stem] = {
            "sdr": metrics.sdr(reference, estimate),
            "museval_sdr": (
                metrics.museval_sdr(reference, estimate, sample_rate) if use_museval else math.nan
            ),
            "si_sdr": metrics.si_sdr(reference, estimate),
        }
    return scores


def trim_samples(clip: datasets.Clip, trim_seconds: float) -> int:
    """Samples left out of the scores at each end of ``clip``; :class:`AudioFileError` when
    nothing would be left."""
    trim = int(round(trim_seconds * clip.sample_rate))
    if 2 * trim >= clip.mixture.shape[1]:
        raise AudioFileError(
            f"{clip.name}: {clip.seconds:.3f} s is too short to score with "
            f"{trim_seconds:g} s trimmed at both ends (--trim)"
        )
    return trim


def evaluate_clip(
    model,
    clip: datasets.Clip,
    plan: OfflinePlan | dict,
    use_museval: bool = True,
    trim_seconds: float = 0.0,
) -> dict:
    """Separate one clip with ``plan`` (as for :func:`estimate_vocals`) and score the model
    and the baselines on it.

    The whole clip is separated; the scores leave ``trim_seconds`` out at both ends (of the
    references and the estimates alike), where a separator starts and stops without context.
    """
    trim = trim_samples(clip, trim_seconds)
    started = time.perf_counter()
    vocals_estimate = estimate_vocals(model, clip.mixture, clip.sample_rate, plan)
    separate_seconds = time.perf_counter() - started
    mixture = clip.mixture.astype(np.float64)
    estimates = {
        "model": (vocals_estimate, mixture - vocals_estimate),
        "mixture": (mixture, mixture),
    }
    if clip.channels == 2:
        estimates["centre-cancel"] = centre_cancel(mixture)
    kept = slice(trim, clip.mixture.shape[1] - trim)
    started = time.perf_counter()
    scores = {
        method: score(
            clip.vocals[:, kept],
            clip.accompaniment[:, kept],
            *(estimate[:, kept] for estimate in pair),
            clip.sample_rate,
            use_museval,
        )
        for method, pair in estimates.items()
    }
    result = {
        "name": clip.name,
        "seconds": clip.seconds,
        "sample_rate": clip.sample_rate,
        "channels": clip.channels,
        "scored_seconds": (kept.stop - kept.start) / clip.sample_rate,
        "separate_seconds": separate_seconds,
        "score_seconds": time.perf_counter() - started,
        "scores": scores,
    }
    if clip.mixture_source is not None:
        result["mixture"] = clip.mixture_source
    return result


def summarise(results: list[dict]) -> dict:
    """{method: {stem: {measure: {"mean", "median", "clips"}}}} over the clips that have it."""
    summary = {}
    for method in METHODS:
        per_clip = [result["scores"][method] for result in results if method in result["scores"]]
        if not per_clip:
            continue
        summary[method] = {
            stem: {
                measure: _mean_median([scores[stem][measure] for scores in per_clip])
                for measure in MEASURES
            }
            for stem in STEMS
        }
    return summary


def group_of(name: str, data_format: str) -> str | None:
    """The group a clip's numbers are also summarised under: its singer for MIR-1K."""
    return datasets.mir1k_singer(name) if data_format == "mir1k" else None


def summarise_groups(results: list[dict], data_format: str) -> dict:
    """{group: summary} for each singer (MIR-1K), so a hard singer is not hidden in the mean.
    Empty for formats without groups."""
    groups: dict[str, list[dict]] = {}
    for result in results:
        group = group_of(result["name"], data_format)
        if group is not None:
            groups.setdefault(group, []).append(result)
    return {group: summarise(members) for group, members in sorted(groups.items())}


def _mean_median(values: Iterable[float]) -> dict:
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return {"mean": None, "median": None, "clips": 0}
    return {
        "mean": statistics.fmean(finite),
        "median": statistics.median(finite),
        "clips": len(finite),
    }
