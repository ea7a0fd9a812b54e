"""The overlap-add sums of a run of windows at the model rate.

Column 0 of every sum is the first model sample of the next window to run; a window's
tapered estimate (and with the high band its voice ratio) is added where it lies, the tapers
are summed alongside, and finished columns are divided by them and dropped.
"""

from __future__ import annotations

import numpy as np

from stream_sep.offline.overlap_add.plan import WindowPlan


class OverlapSum:
    """Weighted sums of ``rows`` estimate rows over ``span`` model samples; ``with_ratio``
    keeps a second sum for the high band's voice ratio."""

    def __init__(self, plan: WindowPlan, rows: int, span: int, with_ratio: bool):
        self.plan = plan
        self.estimate = np.zeros((rows, span), np.float64)
        self.ratio = np.zeros((rows if with_ratio else 0, span))
        self.weight = np.zeros(span, np.float64)

    def add(self, offset: int, estimate: np.ndarray, ratio: np.ndarray | None = None) -> None:
        """Add one window's (rows, window) estimate (and ratio) at column ``offset``."""
        weights = self.plan.weights
        columns = slice(offset, offset + self.plan.window)
        self.estimate[:, columns] += estimate * weights
        if ratio is not None:
            self.ratio[:, columns] += ratio * weights
        self.weight[columns] += weights

    def normalised(self, skip: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
        """Columns [skip, columns) divided by the summed tapers: (estimate, ratio) rows."""
        weights = self.weight[skip:columns]
        return self.estimate[:, skip:columns] / weights, self.ratio[:, skip:columns] / weights

    def shift(self, columns: int) -> None:
        """Drop the first ``columns`` columns; new columns start at zero."""
        keep = self.weight.shape[0] - columns
        for accumulator in (self.estimate, self.ratio):
            accumulator[:, :keep] = accumulator[:, columns:]
            accumulator[:, keep:] = 0.0
        self.weight[:keep] = self.weight[columns:]
        self.weight[keep:] = 0.0
