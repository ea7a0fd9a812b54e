"""A spectral post-filter on the model's estimate: norbert's multichannel Wiener filter.

The model gives a vocal estimate ``v`` of a mixture ``x`` (one window, at the model's rate).
The post-filter treats ``v`` and ``x - v`` as the two sources' estimates, as open-unmix does
with its models' outputs, and re-separates the mixture's STFT with ``norbert.wiener``:

- ``wiener``: the magnitudes of both estimates as a soft mask on the mixture
  (``norbert.wiener(..., iterations=0, use_softmask=True)``): vocals =
  ``|V| / (|V| + |X - V|) * X`` per time-frequency bin and channel;
- ``wiener-em``: the same start refined by :data:`EM_ITERATIONS` iteration(s) of norbert's
  expectation-maximisation, which fits each source's power spectrum and (for several
  channels) its spatial covariance;
- ``none``: the model's estimate as it is.

The STFT is :data:`N_FFT` / :data:`HOP` at the model's rate (:mod:`stream_sep.dsp.spectral`).
``wiener`` is the host's default (:data:`stream_sep.settings.DEFAULTS`). norbert is a
dependency of the host, imported only when a filter other than ``none`` runs.
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np

from stream_sep.dsp import spectral
from stream_sep.errors import UserError

POSTFILTERS = ("none", "wiener", "wiener-em")
# The model's own STFT size: measured on 30 held-out MIR-1K clips with the bundled model
# (benchmarks/results/postfilter.md), the soft mask gained 0.13 dB at 2048 / 512 on every
# clip, 0.03 dB at 1024 / 256, and 4096 / 1024 no more than 2048.
N_FFT = 2048  # 128 ms at 16 kHz
HOP = 512
EM_ITERATIONS = 1  # open-unmix's default


def check_postfilter(name) -> str:
    """``name`` if it is one of :data:`POSTFILTERS`, else one line naming the choices."""
    if name not in POSTFILTERS:
        raise UserError(f"--postfilter must be one of {', '.join(POSTFILTERS)}, got {name!r}")
    return name


def load_norbert():
    """The norbert module, or one line saying which extra installs it."""
    try:
        with warnings.catch_warnings():  # norbert 0.2.1 imports scipy.ndimage.filters
            warnings.simplefilter("ignore", DeprecationWarning)
            return importlib.import_module("norbert")
    except ImportError:
        raise UserError(
            "the Wiener post-filter needs norbert (a dependency of stream-sep): "
            "pip install norbert, or run with --postfilter none"
        ) from None


class PostFilter:
    """One post-filter setting; :meth:`apply` filters one window's estimate.

    kind: one of :data:`POSTFILTERS`. Building it imports norbert (or raises
    :class:`UserError` naming the extra), so a missing package is found before any audio.
    """

    def __init__(
        self,
        kind: str = "none",
        n_fft: int = N_FFT,
        hop: int = HOP,
        *,
        iterations: int | None = None,
        softmask: bool = True,
    ):
        self.kind = check_postfilter(kind)
        self.n_fft, self.hop = n_fft, hop
        self._norbert = None if kind == "none" else load_norbert()
        default = EM_ITERATIONS if kind == "wiener-em" else 0
        self.iterations = default if iterations is None else iterations
        # False: start from the estimates' magnitudes with the mixture's phase (open-unmix's
        # default start) instead of the soft mask; with 0 iterations that is no filter at all.
        self.softmask = softmask

    @classmethod
    def of(cls, postfilter: str | PostFilter) -> PostFilter:
        """A :data:`POSTFILTERS` name as a filter; a :class:`PostFilter` as it is."""
        return postfilter if isinstance(postfilter, PostFilter) else cls(postfilter)

    @property
    def active(self) -> bool:
        return self.kind != "none"

    def apply(self, vocals: np.ndarray, mixture: np.ndarray) -> np.ndarray:
        """vocals, mixture: (C, n) float32 at the model's rate, the channels of one window
        -> (C, n) float32, the filtered vocal estimate (``vocals`` itself for ``none``).

        Samples within ``n_fft`` of either end see silence beyond the stretch; callers
        filter a stretch that reaches at least that far beyond the samples they keep."""
        if not self.active:
            return vocals
        samples = mixture.shape[1]
        # n_fft of silence on both sides puts the iSTFT's incomplete frame overlap (its first
        # and last n_fft / 2 samples) outside the signal; the end pad also rounds the length
        # up to a whole number of hops, which the iSTFT returns.
        edge = self.n_fft
        length = -(-(samples + 2 * edge) // self.hop) * self.hop
        mixture = _padded(np.asarray(mixture, np.float32), edge, length)
        vocals = _padded(np.asarray(vocals, np.float32), edge, length)
        # norbert's layout: (frames, bins, channels) for the mixture, plus sources last.
        mix_spec = self._stft(mixture)
        magnitudes = np.stack(
            [np.abs(self._stft(vocals)), np.abs(self._stft(mixture - vocals))], axis=-1
        )
        sources = self._norbert.wiener(
            magnitudes, mix_spec, self.iterations, use_softmask=self.softmask
        )
        vocal_spec = np.ascontiguousarray(sources[..., 0].transpose(2, 0, 1))
        filtered = spectral.istft(vocal_spec, self.n_fft, self.hop)
        return np.ascontiguousarray(filtered[:, edge : edge + samples], np.float32)

    def _stft(self, audio: np.ndarray) -> np.ndarray:
        """(C, n) float32 -> (frames, bins, C) complex128 (norbert asks for double)."""
        spectrum = spectral.stft(audio, self.n_fft, self.hop)
        return spectrum.transpose(1, 2, 0).astype(np.complex128)


def _padded(audio: np.ndarray, before: int, length: int) -> np.ndarray:
    """(C, n) -> (C, length): ``before`` zeros, the audio, zeros up to ``length``."""
    out = np.zeros((audio.shape[0], length), np.float32)
    out[:, before : before + audio.shape[1]] = audio
    return out
