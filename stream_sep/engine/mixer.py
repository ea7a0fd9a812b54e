"""Mixing the delayed dry signal with the vocal estimate: modes, gain ramps, fades, guard.

With ``V`` the weighted vocal estimate, ``c`` the weight of windows that arrived in time (1
normally, less during a fallback), ``a`` the accompaniment gain and ``g`` the vocal gain, the
output is ``(1 - c (1 - a)) * dry + (g - a) * V``. Karaoke is ``a=1, g=level``, vocals
``a=0, g=1``, bypass ``a=1, g=1`` (exactly the delayed dry signal). A missing window therefore
fades to the dry signal over the crossfade. Gains ramp per absolute output sample, so the
output does not depend on how the stream is cut into blocks.
"""

from __future__ import annotations

import numpy as np

from stream_sep.dsp.scratch import SizeCache
from stream_sep.errors import UserError

MODES = ("karaoke", "vocals", "bypass")
VOCAL_LEVEL_RANGE = (0.0, 2.0)
_MODE_GAINS = {"karaoke": None, "vocals": (0.0, 1.0), "bypass": (1.0, 1.0)}


class Ramp:
    """A linear gain ramp defined on absolute output sample indices.

    Changed in place by :meth:`retarget` / :meth:`retarget_from` (the audio thread makes no
    new object: the start value is computed and kept in float64 arrays, with the same
    arithmetic as Python floats); its values are filled into arrays of ``dtype`` with 0-d
    operands of that dtype, the same arithmetic as with Python scalars (which numpy would
    convert, allocating, on every call). Scalar arithmetic runs on pairs (two equal
    elements): a ufunc whose output has one element allocates ~1 kB. The constructor runs
    every ufunc it uses once, on scratch: numpy caches the loop it resolves for a dtype
    combination the first time in a process (an allocation), which would otherwise fall on the
    audio thread's first ramp."""

    def __init__(self, start_index=0, start_value=1.0, end_value=1.0, length=0, dtype=np.float64):
        self._offset = np.zeros((), np.float64)
        self._zero = np.zeros((), dtype)
        self._length = np.zeros((), dtype)
        self._slope = np.zeros((), dtype)
        self._start = np.zeros((), dtype)
        self._end = np.zeros((), dtype)
        # float64 pairs: the start value, the end value, scratch; each with a 0-d view
        self._pair_from, self._pair_to = np.zeros(2), np.zeros(2)
        self._pair_a, self._pair_b = np.zeros(2), np.zeros(2)
        self._from, self._to, self._a = (p[0, ...] for p in (self._pair_from, self._pair_to,
                                                              self._pair_a))  # fmt: skip
        self._prime(dtype)
        self.retarget(start_index, start_value, end_value, length)

    def retarget(self, start_index: int, start_value: float, end_value: float, length: int):
        self._pair_from.fill(start_value)
        self._set(start_index, end_value, length)

    def retarget_from(self, start_index: int, end_value: float, length: int) -> None:
        """Ramp from the value this ramp has at ``start_index`` to ``end_value``."""
        self._value_into(start_index, self._pair_a)
        np.copyto(self._pair_from, self._pair_a)
        self._set(start_index, end_value, length)

    def _set(self, start_index: int, end_value: float, length: int) -> None:
        self.start_index, self.length, self.end_value = start_index, length, end_value
        self._pair_to.fill(end_value)
        self._length.fill(length)
        if length > 0:  # slope = (end - start) / length in float64, rounded once to dtype
            np.subtract(self._pair_to, self._pair_from, out=self._pair_a)
            self._pair_b.fill(length)
            np.divide(self._pair_a, self._pair_b, out=self._pair_a)
            np.copyto(self._slope, self._a, casting="same_kind")
        else:
            self._slope.fill(0.0)
        np.copyto(self._start, self._from, casting="same_kind")
        np.copyto(self._end, self._to, casting="same_kind")

    def _value_into(self, index: int, pair: np.ndarray) -> None:
        """pair (2,) float64 = the value at ``index``: start + (end - start) * progress."""
        if self.done_at(index):
            np.copyto(pair, self._pair_to)
        elif index <= self.start_index:
            np.copyto(pair, self._pair_from)
        else:
            pair.fill(index)
            self._pair_b.fill(self.start_index)
            np.subtract(pair, self._pair_b, out=pair)  # exact: integers below 2**53
            self._pair_b.fill(self.length)
            np.divide(pair, self._pair_b, out=pair)
            np.subtract(self._pair_to, self._pair_from, out=self._pair_b)
            np.multiply(self._pair_b, pair, out=pair)
            np.add(self._pair_from, pair, out=pair)

    def value_at(self, index: int) -> float:
        pair = np.zeros(2)
        self._value_into(index, pair)
        return float(pair[0])

    def done_at(self, index: int) -> bool:
        return self.length <= 0 or index >= self.start_index + self.length

    def fill(self, first_index: int, out: np.ndarray, positions: np.ndarray, work=None) -> None:
        """out[..., i] = value at first_index + i. positions: float64 0, 1, 2, ... shaped
        like out; work: float64 scratch shaped like out when out is not float64 (the
        positions are offset in float64 and rounded once, without a casting buffer)."""
        if self.done_at(first_index):
            out.fill(self.end_value)
            return
        self._offset.fill(first_index - self.start_index)
        self._fill_ramping(out, positions, work)

    def _fill_ramping(self, out: np.ndarray, positions: np.ndarray, work) -> None:
        if work is None:
            np.add(positions, self._offset, out=out)
        else:
            np.add(positions, self._offset, out=work)
            np.copyto(out, work, casting="same_kind")
        np.maximum(out, self._zero, out=out)
        np.minimum(out, self._length, out=out)
        np.multiply(out, self._slope, out=out)
        np.add(out, self._start, out=out)

    def scale(self, out: np.ndarray) -> None:
        """out *= the end value (0-d operand: no conversion)."""
        np.multiply(out, self._end, out=out)

    def _prime(self, dtype) -> None:
        """Every ufunc of the audio thread's calls once, on scratch (see the class)."""
        positions, work = np.zeros((2, 2), np.float64), np.zeros((2, 2), np.float64)
        out = np.zeros((2, 2), dtype)
        self._fill_ramping(out, positions, None if out.dtype == np.float64 else work)
        self.scale(out)
        self.length, self.start_index = 2, 0
        self._value_into(1, self._pair_a)
        self._set(0, 0.0, 2)


class _Sized:
    """The mixer's (C, n) scratch for one block size."""

    def __init__(self, channels: int, n: int):
        shape = (channels, n)
        self.positions = np.ascontiguousarray(
            np.broadcast_to(np.arange(n, dtype=np.float64), shape)
        )
        self.gain_a, self.gain_g = np.zeros(shape, np.float64), np.zeros(shape, np.float64)
        self.dry_coef, self.vocal_coef = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        self.output_gain = np.zeros(shape, np.float32)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UserError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def check_vocal_level(level) -> float:
    low, high = VOCAL_LEVEL_RANGE
    if not isinstance(level, (int, float)) or not low <= level <= high:
        raise UserError(f"--vocal-level must be a number in [{low:g}, {high:g}], got {level!r}")
    return float(level)


class Mixer:
    """Turns (dry, vocals, coverage) chunks of at most ``max_chunk`` samples into output.

    Mode and level changes are requested from any thread and applied by the next
    :meth:`apply_requests` on the audio thread, ramping over ``ramp_samples``. The output
    gain fades in from ``fade_in_start`` over ``fade_in_samples``; :meth:`request_fade_out`
    ramps it to silence, :meth:`request_fade_in` up from silence (after a gap in the output).
    ``guard`` (a :class:`~stream_sep.dsp.safety.OutputGuard`) or None.
    """

    def __init__(
        self, channels: int, ramp_samples: int, fade_in_start: int, fade_in_samples: int, guard
    ):
        self.guard, self.channels = guard, channels
        self._ramp_samples = ramp_samples
        self._fade_in = (fade_in_start, fade_in_samples)
        self._sizes = SizeCache()
        self._one64, self._one32 = np.ones((), np.float64), np.ones((), np.float32)
        self.mode, self.vocal_level = "karaoke", 0.0
        self._accompaniment = Ramp(0, 1.0, 1.0, 0)
        self._vocal = Ramp(0, 0.0, 0.0, 0)
        self._targets_changed = False
        self._fade_request: tuple[float, int] | None = None  # (gain to reach, samples)
        self.output_ramp = Ramp(dtype=np.float32)
        self._fade_in_ramp()

    @property
    def pending(self) -> bool:
        return self._targets_changed or self._fade_request is not None

    def set_targets(self, mode: str, vocal_level: float | None) -> None:
        check_mode(mode)
        if vocal_level is not None:
            self.vocal_level = check_vocal_level(vocal_level)
        self.mode = mode
        self._targets_changed = True  # applied on the audio thread, at its own position

    def request_fade_out(self, samples: int) -> None:
        self._fade_request = (0.0, samples)

    def request_fade_in(self, samples: int) -> None:
        self._fade_request = (1.0, samples)

    def faded_out(self, position: int) -> bool:
        ramp = self.output_ramp
        return self._fade_request is None and ramp.end_value == 0.0 and ramp.done_at(position)

    def apply_requests(self, position: int, immediate: bool = False) -> None:
        if self._targets_changed:
            self._targets_changed = False  # before reading the targets: a newer request wins
            accompaniment, vocal = _MODE_GAINS[self.mode] or (1.0, self.vocal_level)
            length = 0 if immediate else self._ramp_samples
            self._accompaniment.retarget_from(position, accompaniment, length)
            self._vocal.retarget_from(position, vocal, length)
        request = self._fade_request
        if request is not None:
            self._fade_request = None
            target, samples = request
            if target == 0.0:  # down from where the output gain is
                self.output_ramp.retarget_from(position, target, samples)
            else:  # up from silence
                self.output_ramp.retarget(position, 0.0, target, samples)

    def reset(self) -> None:
        self._fade_request = None
        self._fade_in_ramp()
        self._targets_changed = True
        self.apply_requests(0, immediate=True)
        if self.guard is not None:
            self.guard.reset()

    def mix(
        self, start: int, dry: np.ndarray, vocals: np.ndarray, coverage: np.ndarray, out: np.ndarray
    ) -> None:
        """dry, vocals, coverage (C, n) -> out (C, n), the output for samples [start, start +
        n); vocals is scaled in place. A block size seen before allocates nothing."""
        sized = self._sized(out.shape[1])
        gain_a, gain_g = sized.gain_a, sized.gain_g
        self._accompaniment.fill(start, gain_a, sized.positions)
        self._vocal.fill(start, gain_g, sized.positions)
        dry_coef, vocal_coef = sized.dry_coef, sized.vocal_coef
        # dry_coef = 1 - c (1 - a); vocal_coef = g - a: each gain difference in float64, then
        # rounded once to float32 by copyto (a float64 ufunc writing float32 would allocate
        # a casting buffer; so would a Python scalar operand: _one is a 0-d array)
        np.subtract(gain_g, gain_a, out=gain_g)
        np.copyto(vocal_coef, gain_g, casting="same_kind")
        np.subtract(self._one64, gain_a, out=gain_a)
        np.copyto(dry_coef, gain_a, casting="same_kind")
        dry_coef *= coverage
        np.subtract(self._one32, dry_coef, out=dry_coef)
        np.multiply(dry, dry_coef, out=out)
        vocals *= vocal_coef
        out += vocals
        self._apply_output_gain(start, out, sized)
        if self.guard is not None:
            self.guard.process(out)

    def split(
        self, start: int, dry: np.ndarray, vocals: np.ndarray, stems: np.ndarray, halves: tuple
    ) -> None:
        """dry, vocals (C, n) -> stems (2C, n), the two stems for samples [start, start + n):
        rows 0..C-1 the music, ``dry - vocals`` (what karaoke plays with the vocals at 0, to
        the bit), rows C..2C-1 the vocals; halves: (music, vocals), the two (C, n) views of
        ``stems``. Both take the output gain (fade-in, fades) and then one guard over all 2C
        rows, so any limiting scales them alike: their sum stays the delayed input times
        that gain. Mode and vocal level do not apply. A block size seen before allocates
        nothing."""
        sized = self._sized(dry.shape[1])
        music, voice = halves
        np.subtract(dry, vocals, out=music)
        np.copyto(voice, vocals)
        self._apply_output_gain(start, music, sized)
        self._apply_output_gain(start, voice, sized)
        if self.guard is not None:
            self.guard.process(stems)

    def _sized(self, n: int) -> _Sized:
        sized = self._sizes.get(n)
        if sized is None:
            sized = self._sizes.keep(n, _Sized(self.channels, n))
        return sized

    def _apply_output_gain(self, start: int, out: np.ndarray, sized: _Sized) -> None:
        ramp = self.output_ramp
        if ramp.done_at(start):
            if ramp.end_value == 0.0:
                out.fill(0.0)
            elif ramp.end_value != 1.0:
                ramp.scale(out)
            return
        ramp.fill(start, sized.output_gain, sized.positions, sized.gain_a)  # gain_a is spent
        out *= sized.output_gain

    def _fade_in_ramp(self) -> None:
        """Output gain 0 -> 1 from where the delayed input first arrives."""
        start, length = self._fade_in
        if length <= 0:
            self.output_ramp.retarget(start, 1.0, 1.0, 0)
        else:
            self.output_ramp.retarget(start, 0.0, 1.0, length)
