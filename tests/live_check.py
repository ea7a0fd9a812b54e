"""Checks a live run against the engine computing every window inline, outside the output
ranges the engine itself records as not separated as configured (``dry_ranges``,
``lighter_ranges``).

A live run in this process builds its engine through ``stream_sep.engine.Separator``;
:func:`tap_engines` replaces it there with :class:`TappedSeparator`, the same engine that also
keeps a copy of every input block it is given. After the run the test knows the engine's
input exactly, so it can compute what the engine gives for it inline, and where the signal
it played began in the engine's sample positions (``start``): capture index ``c`` of the
harness is output position ``start + c``.
"""

from __future__ import annotations

import numpy as np

from stream_sep import engine as engine_module
from stream_sep.engine import Separator

TAP_SECONDS = 90  # input kept per engine; a run is much shorter
# The live engine and the engine computing every window inline run the same model on the
# same windows; only the thread differs (ONNX Runtime's results do not depend on it).
INLINE_TOLERANCE = 1e-5


class TappedSeparator(Separator):
    """The engine, keeping its input: ``heard[:, :position]`` (C, n) float32."""

    made: list[TappedSeparator] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.heard = np.zeros((self.channels, TAP_SECONDS * self.sample_rate), np.float32)
        self.heard_count = 0
        TappedSeparator.made.append(self)

    def process(self, block, out=None, **options):
        n = block.shape[1]
        end = min(self.heard_count + n, self.heard.shape[1])
        self.heard[:, self.heard_count : end] = block[:, : end - self.heard_count]
        self.heard_count += n
        return super().process(block, out, **options)

    @property
    def input(self) -> np.ndarray:
        """(C, n): every sample given to :meth:`process` (the run must fit TAP_SECONDS)."""
        assert self.heard_count <= self.heard.shape[1], "the run outgrew the tap"
        return self.heard[:, : self.heard_count]

    def inline_output(self) -> np.ndarray:
        """(C, n): what the same engine (model, plan, mode, key) gives for :attr:`input`
        with every window computed inline, in one call."""
        config = self.config
        with Separator(self.model, self.sample_rate, self.channels, config, blocking=True) as e:
            return e.process(np.ascontiguousarray(self.input))


def tap_engines(monkeypatch) -> list[TappedSeparator]:
    """Live runs in this test build :class:`TappedSeparator`; returns the list they join."""
    TappedSeparator.made = []
    monkeypatch.setattr(engine_module, "Separator", TappedSeparator)
    return TappedSeparator.made


def start_of(heard: np.ndarray, signal: np.ndarray) -> int:
    """Where ``signal`` (C, n) begins in ``heard`` (C, m), found by cross-correlation and
    then checked sample for sample (the input path must be exact)."""
    from tests.jack_harness import find_delay

    start = find_delay(heard, signal)
    np.testing.assert_array_equal(heard[:, start : start + signal.shape[1]], signal)
    return start


def covered(ranges, first: int, length: int) -> np.ndarray:
    """(length,) bool: True where output positions ``first .. first + length - 1`` fall in
    any of ``ranges`` [(start, stop), ...]."""
    mask = np.zeros(length, bool)
    for start, stop in ranges:
        lo, hi = max(start - first, 0), min(stop - first, length)
        if lo < hi:
            mask[lo:hi] = True
    return mask


def not_separated(engine: Separator, first: int, length: int) -> np.ndarray:
    """(length,) bool: output positions from ``first`` the engine played dry, faded or
    separated a cheaper way (the record must be complete)."""
    assert engine.unrecorded_windows == 0, "more fallbacks than the record holds"
    return covered(engine.dry_ranges() + engine.lighter_ranges(), first, length)


def vocal_reduction_db(heard: np.ndarray, mixture: np.ndarray, accompaniment: np.ndarray):
    """How much quieter the vocals are in ``heard`` than in ``mixture`` (dB): the energy of
    ``heard - accompaniment`` against that of ``mixture - accompaniment``. The dry mixture
    scores 0 dB; a karaoke that removes the voice scores well above."""
    left = np.sum((heard - accompaniment) ** 2, dtype=np.float64)
    voice = np.sum((mixture - accompaniment) ** 2, dtype=np.float64)
    return 10 * np.log10(voice / max(left, 1e-20))


def capture_equals_engine(harness, engine: TappedSeparator, signal, delay: int, seconds: float):
    """What reached the harness's ``headphones`` while ``signal`` (C, n) played, against
    the inline engine's output for the input the live engine was given: equal (to
    ``INLINE_TOLERANCE``) on every sample the engine did not record as dry, faded or lighter,
    capture index ``c`` being output position ``start + c``; the delay is exact so. At least
    ``seconds`` of the signal must have been heard. Returns (heard, expected, separated):
    (C, m), (C, m), (m,) bool, from capture index 0 (m = delay + the signal heard)."""
    start = start_of(engine.input, signal)
    expected = engine.inline_output()[:, start : start + signal.shape[1] + delay]
    length = min(expected.shape[1], harness.captured)  # the end may not have played
    assert length - delay >= seconds * harness.rate, f"{length - delay} samples heard"
    expected, heard = expected[:, :length], harness.capture[:, :length]
    separated = ~not_separated(engine, start, length)
    error = np.abs(heard[:, separated] - expected[:, separated]).max()
    assert error <= INLINE_TOLERANCE, f"live vs inline engine: max error {error:.2e}"
    return heard, expected, separated
