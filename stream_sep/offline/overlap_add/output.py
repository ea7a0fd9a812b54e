"""The stream-rate side of the offline run: finished model-rate rows resampled back once,
held until due, cut to exactly the input's length, the high band added, channels restored.
"""

from __future__ import annotations

import numpy as np
import soxr

from stream_sep.engine import highband

RESAMPLE_QUALITY = "HQ"


def resampler(from_rate: int, to_rate: int, channels: int):
    """soxr's streaming resampler for (samples, channels) chunks, or None at one rate."""
    if from_rate == to_rate:
        return None
    return soxr.ResampleStream(
        from_rate, to_rate, channels, dtype="float32", quality=RESAMPLE_QUALITY
    )


class HeldOutput:
    """Model-rate rows in, stream-rate vocal blocks out, never ahead of the input.

    Rows per model channel: the estimate, and with the high band (``removal`` > 0 and a
    stream rate above the model's) also the voice ratio and the model-rate input, whose
    round trip is the input's low band. ``channels``: the stream's (a mid estimate is copied
    to each).
    """

    def __init__(self, model_rate: int, rate: int, model_channels: int, channels: int, removal):
        self.high_band = highband.is_active(removal, rate, model_rate)
        self.removal, self.channels = removal, channels
        back_rows = 3 if self.high_band else 1
        self._to_stream = resampler(model_rate, rate, back_rows * model_channels)
        self._held = np.zeros((back_rows * model_channels, 0), np.float32)
        # With the high band: the stream-rate input not yet released, (model channels, n).
        self._stream_input = np.zeros((model_channels, 0), np.float32)
        self.samples_in = 0  # stream-rate samples taken
        self.samples_out = 0  # stream-rate samples returned

    @property
    def held_samples(self) -> int:
        """Stream-rate samples resampled and waiting to be due."""
        return self._held.shape[1]

    def take(self, audio: np.ndarray) -> None:
        """Count (model channels, n) stream-rate input (kept for the high band)."""
        self.samples_in += audio.shape[1]
        if self.high_band:
            self._stream_input = np.concatenate([self._stream_input, audio], axis=1)

    def hold(self, rows: np.ndarray, last: bool = False) -> None:
        """(rows, n) model-rate float32 -> resampled and held until due."""
        if self._to_stream is not None:
            rows = self._to_stream.resample_chunk(np.ascontiguousarray(rows.T), last=last).T
        if rows.shape[1]:
            self._held = np.concatenate([self._held, rows], axis=1)

    def release(self, last: bool) -> np.ndarray:
        """The held output that is due -> (channels, m) float32: never more samples than
        were taken, and at the end exactly as many (the resampler's rounding is cut or
        padded with silence)."""
        if last:
            self.hold(np.zeros((self._held.shape[0], 0), np.float32), last=True)
            due = self.samples_in - self.samples_out
            if self._held.shape[1] < due:
                missing = due - self._held.shape[1]
                self._held = np.pad(self._held, ((0, 0), (0, missing)))
        else:
            due = min(self._held.shape[1], self.samples_in - self.samples_out)
        out, self._held = self._held[:, :due], self._held[:, due:]
        self.samples_out += due
        if self.high_band:
            out = self._add_high_band(out, due)
        if out.shape[0] != self.channels:
            return np.repeat(out, self.channels, axis=0)
        return np.ascontiguousarray(out)

    def _add_high_band(self, held: np.ndarray, due: int) -> np.ndarray:
        """held: (3 x model channels, due) resampled estimate, ratio and model-rate input
        -> (model channels, due) estimate with the high band's share added."""
        vocals, ratio, low_band = np.split(held, 3)
        audio, self._stream_input = self._stream_input[:, :due], self._stream_input[:, due:]
        ratio = np.clip(ratio, 0.0, 1.0)  # the resampler may overshoot a little
        share = highband.high_band_share(self.removal, audio, low_band, ratio)
        return (vocals + share).astype(np.float32)
