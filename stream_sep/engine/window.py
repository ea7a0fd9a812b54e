"""Running the model on one window: stream rate in, the vocal estimate over the support out."""

from __future__ import annotations

import numpy as np
import soxr

from stream_sep.dsp.postfilter import PostFilter
from stream_sep.engine.health import NonFiniteEstimate
from stream_sep.engine.highband import RATIO_FFT, HighBandVoice
from stream_sep.engine.plan import WindowPlan
from stream_sep.models.families import check_denoise, separate_rows

RESAMPLE_QUALITY = "HQ"
STEREO_CHOICES = ("batch", "mid")


class WindowRunner:
    """Separates one stream-rate window with ``model`` according to ``plan``.

    The window is resampled to the model rate as a whole (soxr), separated (the model does
    STFT -> ONNX -> iSTFT; the window's channels are one signal, see
    :func:`~stream_sep.models.families.separate_rows`), and only the stretch around the support is resampled back, starting
    on a sample-aligned point, so the estimate has no resampling delay. ``stereo="mid"`` runs
    the mean of the channels (half the compute for stereo) and returns one channel.

    postfilter: a :data:`~stream_sep.dsp.postfilter.POSTFILTERS` name (or a
    :class:`~stream_sep.dsp.postfilter.PostFilter`), applied to the model-rate
    estimate of the stretch around the support (:mod:`stream_sep.dsp.postfilter`).
    high_band_voice_removal: the share of the voice above the model's band added to the
    estimate (:mod:`stream_sep.engine.highband`; 0 = off).
    denoise: separate the window and its sign inverse and average the two
    (:func:`~stream_sep.models.families.separate_rows`; twice the model's compute).
    """

    def __init__(
        self,
        model,
        plan: WindowPlan,
        stereo: str = "batch",
        postfilter: str = "none",
        high_band_voice_removal: float = 0.0,
        denoise: bool = False,
    ):
        self.model = model
        self.denoise = check_denoise(denoise)
        self.plan = plan
        self.stereo = stereo
        self.contract = model.contract
        self._vocals_index = self.contract.source_index("vocals")
        self._resample = plan.sample_rate != plan.model_rate
        self._model_slice, self._slice_offset = plan.resampled_stretch()
        self.postfilter = PostFilter.of(postfilter)
        self.high_band = HighBandVoice(plan, high_band_voice_removal)
        self._filter_slice = self._stretch_with_margin(max(self.postfilter.n_fft, RATIO_FFT))

    def _stretch_with_margin(self, margin: int) -> slice:
        """The model-rate samples the support is made of, widened by ``margin`` on each side
        (within the window): what the post-filter and the voice ratio look at."""
        if self._resample:
            first, last = self._model_slice.start, self._model_slice.stop
        else:
            first = self.plan.support_start
            last = first + self.plan.support_samples
        return slice(max(0, first - margin), min(self.plan.model_window, last + margin))

    def estimate(
        self, audio: np.ndarray, stereo: str | None = None, denoise: bool | None = None
    ) -> np.ndarray:
        """audio (C, W) stream rate -> (C, S) vocal estimate over the support, or (1, S) for
        the mid channel. ``stereo``/``denoise``: this window's handling instead of the
        configured one (shedding), None keeps it. Raises on a model error, a wrong shape or
        NaN/Inf."""
        mode = stereo or self.stereo
        denoise = self.denoise if denoise is None else denoise
        model_in = audio.mean(axis=0, keepdims=True) if mode == "mid" else audio
        if self._resample:
            model_in = self.to_model_rate(model_in)
        model_in = np.ascontiguousarray(model_in, np.float32)
        sources = separate_rows(self.model, model_in, model_in.shape[0], denoise)
        expected = (model_in.shape[0], len(self.contract.sources), self.contract.window_samples)
        if getattr(sources, "shape", None) != expected:
            raise ValueError(
                f"model returned shape {getattr(sources, 'shape', None)}, expected {expected}"
            )
        vocals = sources[:, self._vocals_index]
        if not np.isfinite(vocals).all():
            raise NonFiniteEstimate("model returned NaN or Inf")
        stretch = self._filter_slice
        if self.postfilter.active:
            vocals = np.array(vocals, np.float32)  # the model's own buffer is left alone
            vocals[:, stretch] = self.postfilter.apply(vocals[:, stretch], model_in[:, stretch])
            if not np.isfinite(vocals[:, stretch]).all():
                raise NonFiniteEstimate("the post-filter returned NaN or Inf")
        estimate = self._support_of(vocals)
        if self.high_band.active:
            estimate = estimate + self._high_band_share(audio, mode, vocals, model_in)
        return estimate

    def _high_band_share(self, audio, mode, vocals, model_in) -> np.ndarray:
        """(B, S): the input above the model's band, weighted by how much voice the model
        found at the top of its band (:class:`~stream_sep.engine.highband.HighBandVoice`)."""
        stretch, first = self._filter_slice, self.plan.support_start
        rows = audio.mean(axis=0, keepdims=True) if mode == "mid" else audio
        ratio = self.high_band.voice_ratio(vocals[:, stretch], model_in[:, stretch], stretch.start)
        support = rows[:, first : first + self.plan.support_samples]
        return self.high_band.share(support, self._support_of(model_in), ratio)

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
