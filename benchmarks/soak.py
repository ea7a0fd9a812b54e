"""Soak: a long stream through the live engine with a jittery, failing model, then an audit.

    python -m benchmarks soak                       # 30 minutes of audio (about 1.5 min here)
    python -m benchmarks soak --minutes 5 --speed 60 --out /tmp/soak.json

What runs: band-limited noise (with +6 dBFS bursts and NaN/Inf samples sprinkled in) at
16 kHz mono goes through ``Separator(blocking=False)`` in karaoke mode, in random blocks of 1
to 8192 samples, paced by a virtual device clock ``speed`` times faster than real time. The
model is the tests' ONNX identity (vocal estimate = the mixture) at a 0.896 s window, wrapped
so that each call may sleep (up to a few hops, or a long hang), raise, or return NaN, from a
seeded generator.

Why that model: karaoke of an identity is the delayed input minus itself. Where a window's
estimate was used the output is ~0 (measured residual ~1e-7 on this band-limited input);
where it fell back the output is exactly the delayed input. So the output itself says, window
by window, which fell back, and any misalignment (one sample is enough) shows up as a large
residual. The audit:

- each window's flat part (where it alone contributes) is either ~0 (used) or equal to the
  dry signal (fallback); anything else is a lost window;
- the number of fallback windows equals the engine's ``fallback_windows`` counter, and its
  failure counters equal the faults the model really injected;
- every output sample equals ``guard(dry * (1 - coverage))`` within ``TOLERANCE``, with the
  coverage built from the crossfade weights of the used windows and an independent
  :class:`OutputGuard`: samples that differ are "lost outside counted fallback" (must be 0);
- output length, finiteness and the ceiling; Python heap growth (tracemalloc) over the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import signal

from benchmarks.harness import RESULTS, ModelProxy, Run, Stopwatch, at_stem
from stream_sep.dsp.safety import OutputGuard
from stream_sep.engine import Separator

WINDOW = 28 * 512  # model samples: 0.896 s, fits hop 0.5 + lookahead 0.25 + crossfade 0.064
# Samples replaced by zero for NaN/Inf input are clicks whose highest bin the model drops:
# up to ~1e-4 there. A one-sample misalignment would leave ~0.1.
TOLERANCE = 1e-3


@dataclasses.dataclass
class SoakConfig:
    minutes: float = 30.0
    rate: int = 16000
    speed: float = 30.0  # virtual device clock, times real time
    seed: int = 0
    max_block: int = 8192
    delay_probability: float = 0.04  # a call sleeps 0.5-2.5 hops (of virtual time)
    hang_probability: float = 0.004  # a call sleeps 12 hops: windows behind it are skipped
    raise_probability: float = 0.01
    nan_probability: float = 0.01
    burst_probability: float = 0.02  # per second of audio: a +6 dBFS burst of 50-300 ms
    nonfinite_per_minute: float = 20.0  # NaN/Inf input samples


class JitteryModel(ModelProxy):
    """A real model whose calls are slowed, broken or NaN-ed at random (seeded per call)."""

    def __init__(self, model, config: SoakConfig, hop_wall_seconds: float):
        super().__init__(model)
        self.config = config
        self.hop_wall = hop_wall_seconds
        self.injected = {"delay": 0, "hang": 0, "raise": 0, "nan": 0}

    def compute(self, audio: np.ndarray, call: int) -> np.ndarray:
        rng = np.random.default_rng([self.config.seed, call])
        draw, config = rng.random(4), self.config
        if draw[0] < config.hang_probability:
            self.injected["hang"] += 1
            time.sleep(12 * self.hop_wall)
        elif draw[0] < config.hang_probability + config.delay_probability:
            self.injected["delay"] += 1
            time.sleep(rng.uniform(0.5, 2.5) * self.hop_wall)
        if draw[1] < config.raise_probability:
            self.injected["raise"] += 1
            raise RuntimeError("injected failure")
        result = self.model.separate(audio)
        if draw[2] < config.nan_probability:
            self.injected["nan"] += 1
            result = result.copy()
            result[..., rng.integers(result.shape[-1])] = np.nan
        return result


def make_input(config: SoakConfig) -> np.ndarray:
    """(1, samples) float32: noise below 6 kHz at ~-20 dBFS RMS, loud bursts, NaN/Inf."""
    rng = np.random.default_rng(config.seed)
    samples = int(config.minutes * 60 * config.rate)
    sos = signal.butter(10, 6000, fs=config.rate, output="sos")
    audio = signal.sosfilt(sos, rng.standard_normal(samples)).astype(np.float32)
    audio *= np.float32(0.1 / max(float(np.std(audio)), 1e-9))
    seconds = samples // config.rate
    for second in np.flatnonzero(rng.random(seconds) < config.burst_probability):
        start = second * config.rate
        length = int(rng.uniform(0.05, 0.3) * config.rate)
        # x10 (peaks around 2.0, +6 dBFS), rising and falling over a sixth of its length.
        envelope = 1.0 + 9.0 * np.sin(np.pi * np.arange(length) / length).clip(0, 0.5) * 2
        audio[start : start + length] *= envelope.astype(np.float32)
    count = int(config.nonfinite_per_minute * config.minutes)
    where = rng.integers(0, samples, count)
    audio[where] = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32), count)
    return audio[None]


def _random_blocks(rng, total: int, largest: int):
    """Block sizes 1..largest: half uniform, half log-uniform (many tiny blocks)."""
    position = 0
    while position < total:
        if rng.random() < 0.5:
            size = int(rng.integers(1, largest + 1))
        else:
            size = int(np.exp(rng.uniform(0.0, np.log(largest))))
        size = max(1, min(size, total - position))
        yield position, size
        position += size


def stream(engine: Separator, audio: np.ndarray, out: np.ndarray, config: SoakConfig) -> dict:
    """Run audio (1, n) through the engine into out (1, n), paced at config.speed; returns
    run facts."""
    rng = np.random.default_rng(config.seed + 1)
    blocks = queued_max = 0
    memory = []  # (audio minute, traced bytes now)
    next_minute = 0
    with Stopwatch() as clock:  # the virtual device's clock
        for position, size in _random_blocks(rng, audio.shape[1], config.max_block):
            block = slice(position, position + size)
            engine.process(audio[:, block], out=out[:, block])
            blocks += 1
            queued_max = max(queued_max, engine.queued_jobs)
            done = position + size
            if done >= next_minute * 60 * config.rate:
                memory.append((next_minute, tracemalloc.get_traced_memory()[0]))
                next_minute += 1
            ahead = done / config.rate / config.speed - clock.elapsed
            if ahead > 0:
                time.sleep(ahead)
    return {"blocks": blocks, "queued_max": queued_max, "wall": clock.seconds, "memory": memory}


def audit(engine: Separator, audio: np.ndarray, out: np.ndarray) -> dict:
    """Classify every decided window from the output and compare every sample with the
    output the fallback pattern implies. audio, out: (1, n)."""
    hop, support = engine.hop_samples, engine.support_samples
    crossfade, compute = engine.crossfade_samples, engine.compute_samples
    latency, n = engine.latency_samples, audio.shape[1]
    dry = np.zeros(n, np.float32)
    clean = np.nan_to_num(audio[0], nan=0.0, posinf=0.0, neginf=0.0)  # the engine's sanitizing
    dry[latency:] = clean[: n - latency]
    weights = _weights(hop, crossfade)
    decided = [k for k in range(1, n // hop + 1) if k * hop + compute < n]
    used, fallback, lost_windows = set(), set(), []
    for k in decided:
        flat = slice(k * hop + compute + crossfade, min(n, k * hop + compute + hop))
        level = float(np.sqrt(np.mean(dry[flat] ** 2)))
        if level < 1e-3:
            lost_windows.append(k)  # cannot tell: should not happen with this input
            continue
        ratio = float(np.sqrt(np.mean(out[0, flat] ** 2))) / level
        if ratio < 1e-2:
            used.add(k)
        elif ratio > 0.3:  # the dry signal, perhaps limited (a burst: >= 0.45)
            fallback.add(k)
        else:
            lost_windows.append(k)
    coverage = np.zeros(n, np.float32)
    for k in used:
        first = k * hop + compute
        span = coverage[first : first + support]
        span += weights[: span.shape[0]]
    expected = (dry * (1.0 - coverage))[None]
    OutputGuard(1, engine.sample_rate, max_block=65536).process(expected)
    error = np.abs(out - expected)
    return {
        "windows_decided": len(decided),
        "windows_used": len(used),
        "fallback_windows_seen": len(fallback),
        "unclassified_windows": len(lost_windows),
        "samples_lost_outside_counted_fallback": int(np.count_nonzero(error > TOLERANCE)),
        "max_error": float(error.max()),
    }


def _weights(hop: int, crossfade: int) -> np.ndarray:
    """The engine's crossfade weights (sin^2 in, 1, cos^2 out), from its documentation."""
    weights = np.ones(hop + crossfade, np.float32)
    phase = (np.arange(crossfade) + 0.5) / crossfade * (np.pi / 2)
    weights[:crossfade] = np.sin(phase) ** 2
    weights[hop:] = np.cos(phase) ** 2
    return weights


def run_soak(model, config: SoakConfig) -> dict:
    """Stream, audit, and return every number (JSON-ready) plus the checks' inputs."""
    audio = make_input(config)
    hop_seconds = 0.5
    jittery = JitteryModel(model, config, hop_seconds / config.speed)
    engine = Separator(
        jittery,
        config.rate,
        1,
        mode="karaoke",
        hop=hop_seconds,
        fade_in=0.0,  # compare from the first delayed sample; fades are tested elsewhere
        blocking=False,
        max_consecutive_failures=10**9,  # keep going: the soak counts, the host would stop
    )
    out = np.zeros_like(audio)  # before tracing: the heap measured is the engine's and model's
    tracemalloc.start()
    try:
        facts = stream(engine, audio, out, config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        engine.close()
    memory = facts.pop("memory")
    stats = dataclasses.asdict(engine.stats)
    result = {
        "config": dataclasses.asdict(config),
        "audio_seconds": audio.shape[1] / config.rate,
        "wall_seconds": facts["wall"],
        "blocks": facts["blocks"],
        "queued_jobs_max": facts["queued_max"],
        "model_calls": jittery.calls,
        "injected": dict(jittery.injected),
        "nonfinite_input_injected": int(np.count_nonzero(~np.isfinite(audio))),
        "stats": stats,
        "output_length_ok": out.shape == audio.shape,
        "output_finite": bool(np.isfinite(out).all()),
        "output_peak": float(np.abs(out).max()),
        "ceiling": engine.limiter.ceiling,
        "limited_blocks": engine.limiter.limited_blocks,
        "traced_peak_mib": peak / 2**20,
        "traced_growth_mib": (memory[-1][1] - memory[min(1, len(memory) - 1)][1]) / 2**20,
        "failed": engine.failed,
    }
    result.update(audit(engine, audio, out))
    return result


def build_model(folder: Path):
    from stream_sep.models.loading import load_model
    from tests.helpers import gain_model, small_contract

    return load_model(gain_model(folder / "identity.onnx", 1.0, contract=small_contract(WINDOW)))


def summary_lines(result: dict) -> list[str]:
    """The report's body: what ran, what was injected, what the engine counted, the audit."""
    stats = result["stats"]
    return [
        f"- {result['audio_seconds'] / 60:.1f} min of audio in {result['wall_seconds']:.1f} s "
        f"({result['audio_seconds'] / result['wall_seconds']:.1f}x real time), "
        f"{result['blocks']} blocks, {result['model_calls']} model calls",
        f"- injected: {result['injected']}, {result['nonfinite_input_injected']} NaN/Inf input "
        "samples",
        f"- engine: {stats['model_failures']} failures ({stats['nonfinite_model_outputs']} NaN), "
        f"{stats['deadline_misses']} misses, {stats['windows_skipped']} skipped, "
        f"{stats['fallback_windows']} fallback windows of {result['windows_decided']}",
        f"- audit: {result['fallback_windows_seen']} fallback windows seen, "
        f"{result['unclassified_windows']} unclassified, "
        f"{result['samples_lost_outside_counted_fallback']} samples lost outside counted "
        f"fallback (max error {result['max_error']:.1e}), output peak "
        f"{result['output_peak']:.3f} (ceiling {result['ceiling']:.3f}), traced heap peak "
        f"{result['traced_peak_mib']:.1f} MiB, growth {result['traced_growth_mib']:+.2f} MiB",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--speed", type=float, default=30.0, help="times real time (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "soak.json", help="the JSON; the .md beside it"
    )
    args = parser.parse_args(argv)
    run = Run("soak", argv)
    config = SoakConfig(minutes=args.minutes, speed=args.speed, seed=args.seed)
    with tempfile.TemporaryDirectory() as folder:
        result = run_soak(build_model(Path(folder)), config)
    print(run.write(*at_stem(args.out), result, summary_lines(result), TITLE), end="")
    return 0


TITLE = "Soak: a jittery, failing model through the live engine"


if __name__ == "__main__":
    sys.exit(main())
