"""Checks a live run against the engine computing every window inline, outside the output
ranges the engine itself records as not separated as configured (``dry_ranges``,
``lighter_ranges``).

A live run in this process builds its engine through ``stream_sep.engine.Separator``;
:func:`tap_engines` replaces it there with :class:`TappedSeparator`, the same engine that also
keeps a copy of every input block it is given. After the run the test knows the engine's
input exactly, so it can compute what the engine gives for it inline, and where the signal
it played began in the engine's sample positions (``start``): capture index ``c`` of the
harness is output position ``start + c``. A recording made file to file starts at output
position 0: :func:`recording_equals_engine` checks it on every sample, the dry ones against
the same engine with the recorded windows falling back.
"""

from __future__ import annotations

import numpy as np

from stream_sep import engine as engine_module
from stream_sep.engine import Separator
from stream_sep.engine.scheduler import Slot

TAP_SECONDS = 90  # input kept per engine; a run is much shorter
# The live engine and the engine computing every window inline run the same model on the
# same windows; only the thread differs (ONNX Runtime's results do not depend on it).
INLINE_TOLERANCE = 1e-5
# A run is checked where it was separated as configured; it proves something only where that
# is most of the signal. A run with less (a very busy machine) may be repeated, bounded.
MIN_SEPARATED = 0.5
ATTEMPTS = 3


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


def fallback_windows(engine: Separator, ranges) -> list[int]:
    """The windows whose supports make up ``ranges`` [(start, stop), ...] (the output
    positions :meth:`Separator.dry_ranges` gives for ``engine``'s plan), ascending. A support
    (hop + crossfade) meets only the next window's while the crossfade is shorter than the
    hop, so each range is the supports of a run of consecutive windows."""
    plan = engine.plan
    hop, support = plan.hop_samples, plan.support_samples
    assert plan.crossfade_samples < hop, "a range could hide a window that arrived"
    offset = engine.latency_samples - plan.latency_samples + plan.compute_samples
    windows: list[int] = []
    for start, stop in ranges:
        first, last = start - offset, stop - offset - support
        assert first % hop == 0 and last % hop == 0 and first <= last, (start, stop)
        windows.extend(range(first // hop, last // hop + 1))
    return windows


def recorded_dry_ranges(engine: Separator) -> list[tuple[int, int]]:
    """``engine.dry_ranges()``, once checked complete: no window beyond the record, and
    every window the engine counted as falling back is in a range."""
    assert engine.unrecorded_windows == 0, "more fallbacks than the record holds"
    dry = engine.dry_ranges()
    windows = fallback_windows(engine, dry)
    assert len(windows) == engine.stats.fallback_windows, (dry, engine.stats)
    return dry


def inline_with_fallbacks(engine: Separator, audio: np.ndarray, windows) -> np.ndarray:
    """(C, n): what ``engine``'s model, plan and options give for ``audio`` (C, n) with
    every window computed inline, except ``windows``, which play the dry signal as a window
    that came too late does live. (The engine takes no order to miss a window: its
    scheduler's run step is replaced for this one inline engine.)"""
    missed = {int(window) for window in windows}
    config = engine.config
    with Separator(engine.model, engine.sample_rate, engine.channels, config,
                   blocking=True, strict=False) as inline:  # fmt: skip
        scheduler = inline._scheduler
        run = scheduler._run

        def run_or_fall_back(slot: Slot) -> None:
            if int(slot.window_index) in missed:
                slot.state = Slot.FAILED  # no estimate: the window falls back when due
            else:
                run(slot)

        scheduler._run = run_or_fall_back
        output = inline.process(np.ascontiguousarray(audio))
        # the inline engine recorded exactly these windows as dry
        assert fallback_windows(inline, inline.dry_ranges()) == sorted(missed)
    return output


def recording_equals_engine(
    recording, engine: Separator, audio, dry, lighter=(), tolerance: float = 0.0, held=None
) -> tuple[float, int]:
    """A live run's recording, (C, m) from output position 0, against an engine computing
    inline with ``engine``'s model, plan and options (the live engine itself, or one built
    alike) given ``audio`` (C, >= m), the input the live engine was given; ``dry`` and
    ``lighter``: the run's recorded ranges. ``held``: (m,) bool, the output positions the
    recording holds (one made through a sound server may miss some); None: every one.

    - Outside ``dry`` and ``lighter``: what ``engine`` gives with every window inline.
    - Outside ``lighter`` (so on every dry sample too): what it gives when the windows the
      run recorded as dry fall back (:func:`inline_with_fallbacks`).
    - Where a dry range's windows alone reach (its first and last crossfade left out: fades
      to a neighbour), past the fade-in: the input delayed by the latency, exactly (the
      output guard must not act: the input stays under the ceiling).

    All to ``tolerance``, on the held positions. Returns the share of the signal's output
    (from the latency on) that was separated as configured (what the first check covers,
    held or not), and the number of output samples the last check compared."""
    length = recording.shape[1]
    held = np.ones(length, bool) if held is None else np.asarray(held, bool)
    assert held.shape == (length,), f"held: {held.shape} for {length} positions"
    assert audio.shape[1] >= length, "the engine was given less than the recording holds"
    audio = np.ascontiguousarray(audio[:, :length])
    latency = engine.latency_samples
    with Separator(engine.model, engine.sample_rate, engine.channels, engine.config,
                   blocking=True) as inline:  # fmt: skip
        expected = inline.process(audio)
    lighter_mask = covered(lighter, 0, length)
    separated = ~(covered(dry, 0, length) | lighter_mask)
    error = np.abs(recording - expected)[:, separated & held].max(initial=0.0)
    assert error <= tolerance, f"live vs inline engine: max error {error:.2e}; dry {dry}"

    if dry:  # (without, the same check again)
        fallback = inline_with_fallbacks(engine, audio, fallback_windows(engine, dry))
        error = np.abs(recording - fallback)[:, ~lighter_mask & held].max(initial=0.0)
        assert error <= tolerance, f"live vs inline engine with its fallbacks: {error:.2e}; {dry}"

    ceiling = 10 ** (engine.config.ceiling_db / 20)
    assert np.abs(audio).max() < ceiling, "the output guard would change the dry signal"
    crossfade = engine.plan.crossfade_samples
    fade_end = latency + round(engine.config.fade_in_seconds * engine.sample_rate)
    cores = [(max(start + crossfade, fade_end), stop - crossfade) for start, stop in dry]
    only_dry = covered(cores, 0, length) & held
    delayed = np.zeros_like(recording)
    delayed[:, latency:] = audio[:, : length - latency]
    error = np.abs(recording - delayed)[:, only_dry].max(initial=0.0)
    assert error <= tolerance, f"dry output vs the delayed input: {error:.2e}; {dry}"
    return float(separated[latency:].mean()), int(only_dry.sum())
