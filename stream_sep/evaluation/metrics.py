"""Separation quality measures, as the field defines them.

Every function takes a reference and an estimate of the same shape, ``(channels, samples)``
(or ``(samples,)``), in float, time-aligned, and returns decibels.

- :func:`sdr`: whole-clip SDR as the Music Demixing Challenge (MDX 2021/2023) defines it,
  ``10 log10((sum s^2 + eps) / (sum (s - s_hat)^2 + eps))`` with ``eps = 1e-7``, the sums
  running over channels and samples. A perfect estimate scores the epsilon-limited value
  ``10 log10((sum s^2 + eps) / eps)``, not infinity.
- :func:`si_sdr`: scale-invariant SDR (Le Roux et al., "SDR - half-baked or well done?",
  ICASSP 2019), with one scale factor for the whole clip (all channels together), no mean
  removal, and the same ``eps`` in numerator and denominator.
- :func:`museval_sdr`: the SiSEC 2018 figure, BSSEval v4 from the ``museval`` package over
  1-second windows with a 1-second hop, reduced by the median over windows (windows where the
  reference is silent give NaN and are skipped, as museval's own aggregation does).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from stream_sep.errors import UserError

log = logging.getLogger(__name__)

EPSILON = 1e-7  # the MDX challenge's delta, in numerator and denominator


def _as_float64_pair(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference = np.asarray(reference, np.float64)
    estimate = np.asarray(estimate, np.float64)
    if reference.shape != estimate.shape:
        raise ValueError(
            f"reference and estimate must have the same shape, got {reference.shape} "
            f"and {estimate.shape}"
        )
    return reference, estimate


def sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = EPSILON) -> float:
    """Whole-clip SDR in dB (MDX challenge definition), summed over channels and samples.

    reference, estimate: (channels, samples) or (samples,), same shape.
    """
    reference, estimate = _as_float64_pair(reference, estimate)
    signal = np.sum(reference**2)
    error = np.sum((reference - estimate) ** 2)
    return float(10.0 * np.log10((signal + eps) / (error + eps)))


def si_sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = EPSILON) -> float:
    """Scale-invariant SDR in dB: the estimate is compared with its best scaled reference.

    ``alpha = <s_hat, s> / <s, s>``, target ``alpha s``, SI-SDR =
    ``10 log10((|alpha s|^2 + eps) / (|alpha s - s_hat|^2 + eps))``. One ``alpha`` for the
    whole clip. reference, estimate: (channels, samples) or (samples,), same shape.
    """
    reference, estimate = _as_float64_pair(reference, estimate)
    reference, estimate = reference.ravel(), estimate.ravel()
    alpha = np.dot(estimate, reference) / (np.dot(reference, reference) + eps)
    target = alpha * reference
    error = target - estimate
    return float(10.0 * np.log10((np.dot(target, target) + eps) / (np.dot(error, error) + eps)))


def require_museval():
    """The museval module, or :class:`UserError` saying how to install it (or go without)."""
    try:
        import museval
    except ImportError as error:
        raise UserError(
            "the museval package is needed for the SiSEC18 SDR; install it with "
            "pip install 'stream-sep[eval]' (or pip install museval), or pass --no-museval"
        ) from error
    return museval


def museval_sdr(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """SiSEC18 SDR in dB: median over 1-s windows of museval's BSSEval v4 SDR.

    reference, estimate: (channels, samples), same shape. Returns NaN when museval cannot
    score the clip (a silent reference or estimate, which BSSEval refuses, or no window with
    sound in the reference).
    """
    reference, estimate = _as_float64_pair(reference, estimate)
    reference, estimate = np.atleast_2d(reference), np.atleast_2d(estimate)
    museval = require_museval()
    # museval wants (sources, samples, channels): one source here.
    references, estimates = reference.T[np.newaxis], estimate.T[np.newaxis]
    try:
        framewise = museval.evaluate(references, estimates, win=sample_rate, hop=sample_rate)[0]
    except ValueError as error:  # museval refuses all-zero references or estimates
        log.info("museval could not score this clip: %s", error)
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames: NaN is the answer
        return float(np.nanmedian(framewise[0]))
