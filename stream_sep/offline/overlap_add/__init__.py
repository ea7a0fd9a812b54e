"""Offline separation at full throughput: centred windows, overlap-add, one resampling.

The streaming engine (:mod:`stream_sep.engine`) is built for latency: a window every hop,
the estimate taken near the window's end, each window resampled on its own. Offline there
is no deadline, so this module plans for throughput instead:

- The signal is resampled **once** to the model rate (soxr's ``ResampleStream``, which gives
  the same samples as a one-shot ``soxr.resample`` however the signal is cut into blocks).
- Windows of the model's length ``W`` (``contract.window_samples``) lie every ``hop`` model
  samples: window ``k`` covers model samples ``[k * hop - pad, k * hop - pad + W)`` with
  ``pad = (W - hop) // 2`` of silence before the signal, so every signal sample lies in the
  central ``hop`` samples of some window (never only at an unreliable edge).
- Each window's vocal estimate is multiplied by a taper (:func:`taper_weights`: raised-cosine
  ramps, near zero at the window's edges, where a GroupNorm model reconstructs badly), added
  up, and divided by the summed tapers, so any hop gives exactly the model's output for a
  model whose estimate does not depend on the window's position.
- Several windows (and all channels) go to the model in one call, ``(B, W)`` with
  ``B = windows x channels``, where that is faster.
- The vocal estimate is resampled back to the stream rate **once** and cut to exactly the
  input's length: output sample ``t`` is the estimate for input sample ``t`` (no delay).

:class:`OverlapAddStream` does this block by block with memory bounded by a few windows
(for files); :func:`separate_overlap_add` does it for a whole array, with the same samples.
"""

from stream_sep.offline.overlap_add.plan import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_HOP_FRACTION,
    HOP_FRACTION_RANGE,
    MAX_BATCH_WINDOWS,
    STEREO_CHOICES,
    WindowPlan,
    plan_windows,
    taper_weights,
)
from stream_sep.offline.overlap_add.stream import (
    OverlapAddConfig,
    OverlapAddStream,
    separate_blocks,
    separate_overlap_add,
)

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_HOP_FRACTION",
    "HOP_FRACTION_RANGE",
    "MAX_BATCH_WINDOWS",
    "STEREO_CHOICES",
    "OverlapAddConfig",
    "OverlapAddStream",
    "WindowPlan",
    "plan_windows",
    "separate_blocks",
    "separate_overlap_add",
    "taper_weights",
]
