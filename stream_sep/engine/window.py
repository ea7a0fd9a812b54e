"""Running the model on one window: stream rate in, the vocal estimate over the support out."""

from __future__ import annotations

import numpy as np
import soxr

from stream_sep.engine.health import NonFiniteEstimate
from stream_sep.engine.plan import WindowPlan
from stream_sep.families import separate_rows

RESAMPLE_QUALITY = "HQ"
STEREO_CHOICES = ("batch", "mid")


class WindowRunner:
    """Separates one stream-rate window with ``model`` according to ``plan``.

    The window is resampled to the model rate as a whole (soxr), separated (the model does
    STFT -> ONNX -> iSTFT; the window's channels are one signal, see
    :func:`~stream_sep.families.separate_rows`), and only the stretch around the support is resampled back, starting
    on a sample-aligned point, so the estimate has no resampling delay. ``stereo="mid"`` runs
    the mean of the channels (half the compute for stereo) and returns one channel.
    """

    def __init__(self, model, plan: WindowPlan, stereo: str = "batch"):
        self.model = model
        self.plan = plan
        self.stereo = stereo
        self.contract = model.contract
        self._vocals_index = self.contract.source_index("vocals")
        self._resample = plan.sample_rate != plan.model_rate
        self._model_slice, self._slice_offset = plan.resampled_stretch()

    def estimate(self, audio: np.ndarray, stereo: str | None = None) -> np.ndarray:
        """audio (C, W) stream rate -> (C, S) vocal estimate over the support, or (1, S) for
        the mid channel. Raises on a model error, a wrong shape or NaN/Inf."""
        mode = stereo or self.stereo
        model_in = audio.mean(axis=0, keepdims=True) if mode == "mid" else audio
        if self._resample:
            model_in = self.to_model_rate(model_in)
        model_in = np.ascontiguousarray(model_in, np.float32)
        sources = separate_rows(self.model, model_in, channels=model_in.shape[0])
        expected = (model_in.shape[0], len(self.contract.sources), self.contract.window_samples)
        if getattr(sources, "shape", None) != expected:
            raise ValueError(
                f"model returned shape {getattr(sources, 'shape', None)}, expected {expected}"
            )
        vocals = sources[:, self._vocals_index]
        if not np.isfinite(vocals).all():
            raise NonFiniteEstimate("model returned NaN or Inf")
        return self._support_of(vocals)

    def _support_of(self, vocals: np.ndarray) -> np.ndarray:
        """(B, model window) model-rate estimate -> (B, S) at the stream rate."""
        support = self.plan.support_samples
        if not self._resample:
            first = self.plan.support_start
            return vocals[:, first : first + support]
        stretch = soxr.resample(
            vocals[:, self._model_slice].T,
            self.plan.model_rate,
            self.plan.sample_rate,
            RESAMPLE_QUALITY,
        ).T
        first = self._slice_offset
        return fit(stretch, first + support)[:, first:]

    def to_model_rate(self, audio: np.ndarray) -> np.ndarray:
        """(C, W) stream rate -> (C, model window) model rate."""
        resampled = soxr.resample(
            audio.T, self.plan.sample_rate, self.plan.model_rate, RESAMPLE_QUALITY
        )
        return fit(np.ascontiguousarray(resampled.T), self.plan.model_window)


def fit(audio: np.ndarray, length: int) -> np.ndarray:
    """(C, n) -> (C, length): trim or zero-pad at the end (resamplers round lengths)."""
    if audio.shape[1] >= length:
        return audio[:, :length]
    return np.pad(audio, ((0, 0), (0, length - audio.shape[1])))
