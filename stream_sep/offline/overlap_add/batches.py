"""One model call on a batch of offline windows, checked and post-filtered.

A model that raises, returns a wrong shape or NaN/Inf (or a post-filter that returns
NaN/Inf) is one :class:`~stream_sep.errors.ModelError` line naming the windows and their
times in the signal.
"""

from __future__ import annotations

import numpy as np

from stream_sep.dsp.postfilter import PostFilter
from stream_sep.errors import ModelError, first_line
from stream_sep.models.families import separate_rows
from stream_sep.offline.overlap_add.plan import WindowPlan


class WindowBatches:
    """Runs ``model`` on (B, W) batches of windows with ``rows`` rows per window
    (B = windows x rows) and returns their vocal estimates; ``denoise``: each batch and its
    sign inverse in one call (:func:`~stream_sep.models.families.separate_rows`)."""

    def __init__(
        self, model, plan: WindowPlan, rows: int, postfilter: PostFilter, denoise: bool = False
    ):
        self.model, self.contract, self.plan = model, model.contract, plan
        self.rows, self.postfilter, self.denoise = rows, postfilter, denoise
        self.vocals_index = self.contract.source_index("vocals")

    def run(self, batch: np.ndarray, first: int) -> np.ndarray:
        """batch (B, W) float32, windows ``first``.. -> (B, W) float32 vocal estimates."""
        vocals = self._separate(batch, first)
        if self.postfilter.active:
            self._postfilter(vocals, batch, first)
        return vocals

    def _separate(self, batch: np.ndarray, first: int) -> np.ndarray:
        where = self.describe(first, batch.shape[0] // self.rows)
        try:
            sources = separate_rows(self.model, batch, self.rows, self.denoise)
        except Exception as error:  # the model may fail in any way: one line for the user
            raise ModelError(f"the model failed on {where}: {first_line(error)}") from None
        expected = (batch.shape[0], len(self.contract.sources), self.plan.window)
        shape = getattr(sources, "shape", None)
        if shape != expected:
            raise ModelError(
                f"the model failed on {where}: it returned shape {shape}, expected {expected}"
            )
        vocals = np.asarray(sources[:, self.vocals_index], np.float32)
        if not np.isfinite(vocals).all():
            raise ModelError(f"the model failed on {where}: it returned NaN/Inf")
        return vocals

    def _postfilter(self, vocals: np.ndarray, batch: np.ndarray, first: int) -> None:
        """Filter each window's rows of vocals (B, W) in place, with its mixture from batch."""
        rows = self.rows
        for i in range(vocals.shape[0] // rows):
            window = slice(i * rows, (i + 1) * rows)
            vocals[window] = self.postfilter.apply(vocals[window], batch[window])
            if not np.isfinite(vocals[window]).all():
                where = self.describe(first + i, 1)
                raise ModelError(f"the post-filter returned NaN/Inf on {where}")

    def describe(self, first: int, count: int) -> str:
        """'window 3 (8.1-12.2 s)' or 'windows 3-4 (...)', times in the signal."""
        rate, plan = self.contract.sample_rate, self.plan
        begin = max(0, plan.start(first)) / rate
        end = (plan.start(first + count - 1) + plan.window) / rate
        label = f"window {first}" if count == 1 else f"windows {first}-{first + count - 1}"
        return f"{label} ({begin:.1f}-{end:.1f} s)"
