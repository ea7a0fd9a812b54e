"""The streaming window plan: every sample count of the engine, as a pure value.

All counts are at the *stream* rate. ``H`` hop, ``L`` lookahead, ``X`` crossfade, ``D``
compute allowance, ``W`` the model window resampled to the stream rate:

- window ``k`` ends at input sample ``e_k = k * H`` and covers ``[e_k - W, e_k)``;
- only its *support* ``[e_k - L - S, e_k - L)``, ``S = H + X``, is used: the last ``L``
  samples (the lookahead, at least the unreliable iSTFT edge) and the start are discarded;
  supports of neighbouring windows overlap by ``X`` and blend with weights summing to one;
- output sample ``j`` presents input sample ``j - latency`` with ``latency = L + S + D``: the
  window needed for it ended ``D`` samples earlier, which is the time inference may take.

A plan needs only the model's contract (rate, window, n_fft), never a loaded model, so it can
be printed, compared and tested on its own.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from stream_sep.errors import UserError

# The hand-sized streaming plan (seconds): the one place these defaults are written. Settings
# and the engine read them from here; live, --latency auto replaces them by a fitted plan.
DEFAULT_HOP = 0.5
DEFAULT_LOOKAHEAD = 0.25
DEFAULT_CROSSFADE = 0.064
MIN_CROSSFADE_SECONDS = 0.005  # a fallback always fades; a zero crossfade would click
RESAMPLE_PAD = 256  # model-rate samples resampled beyond each side of the support


MAX_CHANNELS = 8
RATE_RANGE = (8000, 384000)


def check_rate(rate) -> int:
    """A stream rate in Hz: a whole number in RATE_RANGE, or a one-line UserError."""
    low, high = RATE_RANGE
    if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or not low <= rate <= high:
        raise UserError(f"sample rate must be an integer in [{low}, {high}] Hz, got {rate!r}")
    return int(rate)


def check_channels(channels) -> int:
    """A channel count in [1, MAX_CHANNELS], or a one-line UserError."""
    if (
        not isinstance(channels, (int, np.integer))
        or isinstance(channels, bool)
        or not 1 <= channels <= MAX_CHANNELS
    ):
        raise UserError(f"channels must be an integer in [1, {MAX_CHANNELS}], got {channels!r}")
    return int(channels)


def seconds_to_samples(name: str, seconds: float, rate: int, minimum: float = 0.0) -> int:
    """``seconds`` at ``rate`` as a whole number of samples; refuses NaN, Inf and < minimum."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < minimum:
        raise UserError(f"--{name} must be a number of seconds >= {minimum:g}, got {seconds!r}")
    return int(round(seconds * rate))


@dataclasses.dataclass(frozen=True)
class WindowPlan:
    """Sample counts of one streaming configuration (see the module docstring)."""

    sample_rate: int
    model_rate: int
    model_window: int  # the contract's window, in model samples
    window_samples: int  # W
    edge_samples: int  # the iSTFT's unreliable edge, in stream samples
    hop_samples: int  # H
    lookahead_samples: int  # L
    crossfade_samples: int  # X
    compute_samples: int  # D

    @classmethod
    def build(
        cls,
        contract,
        sample_rate: int,
        hop: float,
        lookahead: float,
        crossfade: float,
        compute: float | None = None,
    ) -> WindowPlan:
        """The plan for ``contract`` (a :class:`~stream_sep.models.contract.ModelContract`) at
        ``sample_rate``; ``compute`` (seconds, default one hop) is the compute allowance.
        Raises :class:`UserError` naming the option for settings the window cannot hold."""
        rate, model_rate = sample_rate, contract.sample_rate
        edge_model = contract.n_fft // 4
        hop_samples = seconds_to_samples("hop", hop, rate)
        if hop_samples < 1:
            raise UserError(f"--hop must be at least one sample (1/{rate} s), got {hop!r}")
        compute_samples = (
            hop_samples if compute is None else seconds_to_samples("compute", compute, rate)
        )
        if compute_samples > hop_samples:
            raise UserError(f"the compute allowance must be at most the hop, got {compute!r}")
        plan = cls(
            sample_rate=rate,
            model_rate=model_rate,
            model_window=contract.window_samples,
            window_samples=int(round(contract.window_samples * rate / model_rate)),
            edge_samples=int(math.ceil(edge_model * rate / model_rate)),
            hop_samples=hop_samples,
            lookahead_samples=seconds_to_samples("lookahead", lookahead, rate),
            crossfade_samples=seconds_to_samples(
                "crossfade", crossfade, rate, MIN_CROSSFADE_SECONDS
            ),
            compute_samples=compute_samples,
        )
        plan._check(contract, hop, lookahead, crossfade)
        return plan

    def _check(self, contract, hop, lookahead, crossfade) -> None:
        rate = self.sample_rate
        if self.lookahead_samples < self.edge_samples:
            raise UserError(
                f"--lookahead must be at least {self.edge_samples / rate:.3f} s (the window's "
                f"unreliable last {contract.n_fft // 4} model samples), got {lookahead!r}"
            )
        if self.crossfade_samples > self.hop_samples:
            raise UserError(f"--crossfade must be at most the hop ({hop!r} s), got {crossfade!r}")
        if self.support_start < self.edge_samples:
            usable = (self.window_samples - 2 * self.edge_samples) / rate
            raise UserError(
                f"hop + lookahead + crossfade must be at most {usable:.3f} s for this model's "
                f"{contract.window_seconds:.3f} s window, got {hop!r} + {lookahead!r} + "
                f"{crossfade!r}"
            )

    @property
    def support_samples(self) -> int:
        """S = H + X: the stretch of each window that reaches the output."""
        return self.hop_samples + self.crossfade_samples

    @property
    def support_start(self) -> int:
        """First support sample, in window coordinates."""
        return self.window_samples - self.lookahead_samples - self.support_samples

    @property
    def latency_samples(self) -> int:
        return self.lookahead_samples + self.support_samples + self.compute_samples

    @property
    def latency_seconds(self) -> float:
        return self.latency_samples / self.sample_rate

    @property
    def breakdown(self) -> dict[str, float]:
        """Each term of the latency, in seconds."""
        rate = self.sample_rate
        return {
            "lookahead": self.lookahead_samples / rate,
            "hop": self.hop_samples / rate,
            "crossfade": self.crossfade_samples / rate,
            "compute": self.compute_samples / rate,
        }

    def support_first(self, window_index: int) -> int:
        """Input sample index of the first support sample of window ``window_index``."""
        return window_index * self.hop_samples - self.lookahead_samples - self.support_samples

    def windows_meeting(self, start: int, n: int) -> range:
        """Indices of the windows whose support reaches output samples [start, start + n):
        output j uses windows with e_k in (j - S - D, j - D]."""
        hop = self.hop_samples
        lowest = start - self.support_samples - self.compute_samples + 1
        highest = start + n - 1 - self.compute_samples
        return range(max(1, -(-lowest // hop)), highest // hop + 1)

    def crossfade_weights(self) -> np.ndarray:
        """(S,) float32: raised-cosine in, flat, raised-cosine out; shifted by the hop and
        summed they give exactly one (sin^2 + cos^2)."""
        hop, crossfade = self.hop_samples, self.crossfade_samples
        weights = np.ones(hop + crossfade, np.float64)
        if crossfade:
            phase = (np.arange(crossfade) + 0.5) / crossfade * (np.pi / 2)
            weights[:crossfade] = np.sin(phase) ** 2
            weights[hop:] = np.cos(phase) ** 2
        return weights.astype(np.float32)

    def resampled_stretch(self) -> tuple[slice, int]:
        """The model-rate stretch to resample back, and the support's offset inside its
        resampled copy. The stretch starts on a model sample that falls exactly on a stream
        sample, so the estimate stays sample-aligned."""
        rate, model_rate = self.sample_rate, self.model_rate
        step = model_rate // math.gcd(rate, model_rate)  # model samples per aligned point
        first = math.floor(self.support_start * model_rate / rate) - RESAMPLE_PAD
        first = max(0, first // step * step)
        last = math.ceil((self.support_start + self.support_samples) * model_rate / rate)
        last = min(self.model_window, last + RESAMPLE_PAD)
        return slice(first, last), self.support_start - first * rate // model_rate
