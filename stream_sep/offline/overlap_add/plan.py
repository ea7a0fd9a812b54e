"""The offline plan: where the windows lie and how they are weighted (model-rate samples).

Pure arithmetic, no model: see the package docstring (:mod:`stream_sep.offline.overlap_add`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from stream_sep.errors import UserError
from stream_sep.models.contract import ModelContract

STEREO_CHOICES = ("batch", "mid")
# Measured with the bundled model (benchmarks/results/offline_quality.md): on 30 held-out
# MIR-1K clips every hop from 1/4 to 7/8 of the window scores at least today's streaming
# plan; 3/4 (+0.05 +- 0.10 dB) computes a sixth of today's windows, 1/4 is the best
# (+0.18 +- 0.07 dB) at half of them.
DEFAULT_HOP_FRACTION = 0.75
# Rows of B per model call when batch_windows is None: on the 2-core test machine the bundled
# model is slowest per row at B = 1, and batches larger than 2 were not clearly faster
# (benchmarks/results/offline.md), while they hold more memory and more work per call.
DEFAULT_BATCH_ROWS = 2
HOP_FRACTION_RANGE = (1 / 64, 0.875)  # at 7/8 the tapers are still W/8 long (0.5 s)
MAX_BATCH_WINDOWS = 64


@dataclasses.dataclass(frozen=True)
class WindowPlan:
    """Where the windows lie, in model-rate samples.

    Window ``k`` covers ``[k * hop - pad, k * hop - pad + window)``; its central ``hop``
    samples are ``[k * hop, (k + 1) * hop)``. ``weights``: (window,) float64 taper.
    """

    window: int
    hop: int
    pad: int
    weights: np.ndarray

    def windows_for(self, samples: int) -> int:
        """Windows needed for a signal of ``samples`` model-rate samples (at least one)."""
        return max(1, -(-samples // self.hop))

    def start(self, index: int) -> int:
        """First model sample of window ``index`` (negative: in the leading silence)."""
        return index * self.hop - self.pad


def taper_weights(window: int, hop: int) -> np.ndarray:
    """(window,) float64 weights: raised-cosine ramps of ``T = min(window - hop, window // 2)``
    samples up and down, flat (1.0) in between.

    For ``hop <= window / 2`` this is a Hann window, ``sin^2(pi (n + 0.5) / window)``, whose
    copies shifted by ``window / k`` sum to a constant; for a longer hop it is a flat top
    whose copies shifted by ``hop`` sum to exactly one (``sin^2 + cos^2``). Callers divide by
    the summed weights, so other hops are exact too. The first and last samples weigh
    ``sin^2(pi / (4 T))``, next to nothing.
    """
    ramp_length = min(window - hop, window // 2)
    phase = (np.arange(ramp_length) + 0.5) / ramp_length * (np.pi / 2)
    ramp = np.sin(phase) ** 2
    weights = np.ones(window)
    weights[:ramp_length] = ramp
    weights[window - ramp_length :] = ramp[::-1]
    return weights


def plan_windows(contract: ModelContract, hop_fraction: float) -> WindowPlan:
    """The window plan for ``contract`` at a hop of ``hop_fraction`` of its window.

    Raises :class:`UserError` for a hop fraction outside :data:`HOP_FRACTION_RANGE`.
    """
    low, high = HOP_FRACTION_RANGE
    valid = isinstance(hop_fraction, (int, float)) and not isinstance(hop_fraction, bool)
    if not valid or not math.isfinite(hop_fraction) or not low <= hop_fraction <= high:
        raise UserError(
            f"hop_fraction must be a number in [1/64, {high:g}] (of the model's window), "
            f"got {hop_fraction!r}"
        )
    window = contract.window_samples
    hop = max(1, int(round(hop_fraction * window)))
    return WindowPlan(window, hop, (window - hop) // 2, taper_weights(window, hop))
