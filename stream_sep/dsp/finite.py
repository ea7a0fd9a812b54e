"""Non-finite input (NaN, +-Inf) in a file or an array, replaced by silence before separating.

A frame holding a non-finite sample in any channel becomes silence on every channel, and the
audio fades to it and back over ``FADE_SECONDS``: the gain at frame ``t`` is
``min(1, d / fade)``, ``d`` being the distance in frames to the nearest such frame. Frames
``fade`` or more away are untouched, bit for bit. The gain depends only on where the bad
frames are, so a file read block by block (:class:`FiniteReader`) gets exactly the samples
that :func:`replace_nonfinite` gives for the whole signal at once.
"""

from __future__ import annotations

import numpy as np

FADE_SECONDS = 0.005
_FAR = 1 << 62  # a distance beyond any fade


def fade_frames(sample_rate: int) -> int:
    return max(1, int(round(FADE_SECONDS * sample_rate)))


def _gains(bad: np.ndarray, fade: int, last_bad: int) -> np.ndarray:
    """bad: (m,) bool frames; last_bad: index (<= -1) of the last bad frame before them.
    Returns (m,) float32 gains: min(1, distance to the nearest bad frame / fade)."""
    index = np.arange(bad.size, dtype=np.int64)
    previous = np.maximum.accumulate(np.where(bad, index, last_bad))
    following = np.minimum.accumulate(np.where(bad, index, _FAR)[::-1])[::-1]
    distance = np.minimum(index - previous, following - index)
    return np.minimum(distance / fade, 1.0).astype(np.float32)


def _clean(audio: np.ndarray, bad: np.ndarray, gains: np.ndarray) -> None:
    """audio (C, m) in place: bad frames -> 0, frames near them faded by gains (m,)."""
    audio[:, bad] = 0.0
    near = gains < 1.0
    audio[:, near] *= gains[near]


def replace_nonfinite(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """audio (channels, samples) float32 -> (the audio with every non-finite sample replaced
    as described above, how many samples were non-finite). The input itself is returned
    when all is finite; a copy otherwise."""
    finite = np.isfinite(audio)
    count = int(finite.size - np.count_nonzero(finite))
    if not count:
        return audio, 0
    bad = ~finite.all(axis=0)
    clean = audio.copy()
    _clean(clean, bad, _gains(bad, fade_frames(sample_rate), -_FAR))
    return clean, count


class FiniteReader:
    """Wraps a reader with ``read_into(out (C, n))`` (an :class:`~stream_sep.audio_files.
    FileReader`): the same samples, non-finite ones replaced as :func:`replace_nonfinite`
    does. It reads ``fade`` frames ahead, to fade in before a bad frame. ``replaced``:
    non-finite samples handed out so far."""

    def __init__(self, reader, channels: int, sample_rate: int):
        self._reader = reader
        self._fade = fade_frames(sample_rate)
        self._ahead = np.zeros((channels, 0), np.float32)  # read, not yet handed out
        self._last_bad = -_FAR  # index of the last bad frame handed out, relative to the next
        self.replaced = 0

    def read_into(self, out: np.ndarray) -> None:
        n = out.shape[1]
        raw = np.zeros((out.shape[0], n + self._fade - self._ahead.shape[1]), np.float32)
        self._reader.read_into(raw)
        window = np.concatenate([self._ahead, raw], axis=1)  # (C, n + fade)
        self._ahead = window[:, n:].copy()
        finite = np.isfinite(window)
        if finite.all() and self._last_bad <= -self._fade:
            out[...] = window[:, :n]
            self._last_bad = max(self._last_bad - n, -_FAR)
            return
        self.replaced += int(finite[:, :n].size - np.count_nonzero(finite[:, :n]))
        bad = ~finite.all(axis=0)
        gains = _gains(bad, self._fade, self._last_bad)
        head = window[:, :n]
        _clean(head, bad[:n], gains[:n])
        out[...] = head
        bad_here = np.flatnonzero(bad[:n])
        last = int(bad_here[-1]) if bad_here.size else self._last_bad
        self._last_bad = max(last - n, -_FAR)
