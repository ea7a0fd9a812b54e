"""Mixing the delayed dry signal with the vocal estimate: modes, gain ramps, fades, guard.

With ``V`` the weighted vocal estimate, ``c`` the weight of windows that arrived in time (1
normally, less during a fallback), ``a`` the accompaniment gain and ``g`` the vocal gain, the
output is ``(1 - c (1 - a)) * dry + (g - a) * V``. Karaoke is ``a=1, g=level``, vocals
``a=0, g=1``, bypass ``a=1, g=1`` (exactly the delayed dry signal). A missing window therefore
fades to the dry signal over the crossfade. Gains ramp per absolute output sample, so the
output does not depend on how the stream is cut into blocks.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stream_sep.errors import UserError

MODES = ("karaoke", "vocals", "bypass")
VOCAL_LEVEL_RANGE = (0.0, 2.0)
_MODE_GAINS = {"karaoke": None, "vocals": (0.0, 1.0), "bypass": (1.0, 1.0)}


@dataclasses.dataclass(frozen=True)
class Ramp:
    """A linear gain ramp defined on absolute output sample indices."""

    start_index: int
    start_value: float
    end_value: float
    length: int

    def value_at(self, index: int) -> float:
        if self.length <= 0 or index >= self.start_index + self.length:
            return self.end_value
        progress = max(0, index - self.start_index) / self.length
        return self.start_value + (self.end_value - self.start_value) * progress

    def done_at(self, index: int) -> bool:
        return self.length <= 0 or index >= self.start_index + self.length

    def fill(self, first_index: int, out: np.ndarray, positions: np.ndarray) -> None:
        """out[i] = value at first_index + i. positions: preallocated float64 0, 1, 2, ..."""
        n = out.shape[0]
        if self.done_at(first_index):
            out.fill(self.end_value)
            return
        np.add(positions[:n], first_index - self.start_index, out=out)
        np.clip(out, 0.0, self.length, out=out)
        out *= (self.end_value - self.start_value) / self.length
        out += self.start_value


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
    ``guard`` (a :class:`~stream_sep.safety.OutputGuard`) or None.
    """

    def __init__(
        self, max_chunk: int, ramp_samples: int, fade_in_start: int, fade_in_samples: int, guard
    ):
        self.guard = guard
        self._ramp_samples = ramp_samples
        self._fade_in = (fade_in_start, fade_in_samples)
        self._gain_a = np.zeros(max_chunk, np.float64)
        self._gain_g = np.zeros(max_chunk, np.float64)
        self._dry_coef = np.zeros(max_chunk, np.float32)
        self._vocal_coef = np.zeros(max_chunk, np.float32)
        self._output_gain = np.zeros(max_chunk, np.float32)
        self._positions = np.arange(max_chunk, dtype=np.float64)
        self._one64, self._one32 = np.ones((), np.float64), np.ones((), np.float32)
        self.mode, self.vocal_level = "karaoke", 0.0
        self._accompaniment = Ramp(0, 1.0, 1.0, 0)
        self._vocal = Ramp(0, 0.0, 0.0, 0)
        self._targets_changed = False
        self._fade_request: tuple[float, int] | None = None  # (gain to reach, samples)
        self.output_ramp = self._fade_in_ramp()

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
            self._accompaniment = Ramp(
                position, self._accompaniment.value_at(position), accompaniment, length
            )
            self._vocal = Ramp(position, self._vocal.value_at(position), vocal, length)
        request = self._fade_request
        if request is not None:
            self._fade_request = None
            target, samples = request
            start = self.output_ramp.value_at(position) if target == 0.0 else 0.0
            self.output_ramp = Ramp(position, start, target, samples)

    def reset(self) -> None:
        self._fade_request = None
        self.output_ramp = self._fade_in_ramp()
        self._targets_changed = True
        self.apply_requests(0, immediate=True)
        if self.guard is not None:
            self.guard.reset()

    def mix(
        self, start: int, dry: np.ndarray, vocals: np.ndarray, coverage: np.ndarray, out: np.ndarray
    ) -> None:
        """out (C, n) = the output for samples [start, start + n); vocals is scaled in place."""
        n = out.shape[1]
        gain_a, gain_g = self._gain_a[:n], self._gain_g[:n]
        self._accompaniment.fill(start, gain_a, self._positions)
        self._vocal.fill(start, gain_g, self._positions)
        dry_coef, vocal_coef = self._dry_coef[:n], self._vocal_coef[:n]
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
        self._apply_output_gain(start, out)
        if self.guard is not None:
            self.guard.process(out)

    def _apply_output_gain(self, start: int, out: np.ndarray) -> None:
        ramp = self.output_ramp
        if ramp.done_at(start):
            if ramp.end_value == 0.0:
                out.fill(0.0)
            elif ramp.end_value != 1.0:
                out *= ramp.end_value
            return
        gain = self._output_gain[: out.shape[1]]
        ramp.fill(start, gain, self._positions)
        out *= gain

    def _fade_in_ramp(self) -> Ramp:
        """Output gain 0 -> 1 from where the delayed input first arrives."""
        start, length = self._fade_in
        return Ramp(start, 1.0, 1.0, 0) if length <= 0 else Ramp(start, 0.0, 1.0, length)
