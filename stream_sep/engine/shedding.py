"""Graceful overload: when windows start taking longer than the compute allowance (another
program took the CPU), shed work instead of missing deadlines, and recover when it is free.

Two levers, both keeping the latency fixed:
- a stereo stream run on both channels switches to the mid channel (half the compute) while
  the recent window time (an exponential average) exceeds ``UP`` of the allowance, and back
  once the both-channel time predicted from it is below ``DOWN`` of the allowance for
  ``CALM_WINDOWS`` windows in a row;
- the worker drops a queued window it predicts cannot finish by its deadline rather than
  running it late (which would also delay the next one); that window plays the dry signal.
Slowness is then counted, never fatal: only a model that keeps failing or hangs stops a run.
"""

from __future__ import annotations

UP = 0.8  # fraction of the allowance above which the stream sheds to the mid channel
DOWN = 0.5  # fraction below which (predicted) it returns to both channels
CALM_WINDOWS = 8
SMOOTHING = 0.3  # weight of the newest window time in the running average


class Shedding:
    """The shedding state of one stream. ``allowance``: the compute allowance in seconds;
    ``stereo``: the configured handling; ``ratio``: both-channel time / mid time, measured."""

    def __init__(self, allowance: float, stereo: str, channels: int, ratio: float = 2.0):
        self.allowance = allowance
        self.can_switch = stereo == "batch" and channels > 1
        self.ratio = max(1.0, ratio)
        self.on_mid = False
        self.recent = {"batch": 0.0, "mid": 0.0}  # running average seconds per window
        self.calm = 0
        self.mid_windows = 0  # windows run on the mid channel to shed work
        self.dropped = 0  # windows dropped as they could not finish in time
        self.switches = 0  # times the stream moved to the mid channel
        self._dropped_last = False  # never drop two in a row: the next one measures again

    @property
    def shed(self) -> int:
        return self.mid_windows + self.dropped

    def stereo_for_next(self) -> str | None:
        """'mid' while shedding to the mid channel, else None (the configured handling)."""
        if self.on_mid:
            self.mid_windows += 1
            return "mid"
        return None

    def observe(self, stereo: str | None, seconds: float) -> None:
        """A window ran in ``seconds`` with ``stereo`` (None: the configured handling)."""
        key = stereo or "batch"
        previous = self.recent[key]
        self.recent[key] = (
            seconds if previous == 0.0 else (SMOOTHING * seconds + (1 - SMOOTHING) * previous)
        )
        if not self.can_switch:
            return
        if not self.on_mid and self.recent["batch"] > UP * self.allowance:
            self.on_mid, self.calm = True, 0
            self.switches += 1
        elif self.on_mid and key == "mid":
            calm = self.recent["mid"] * self.ratio < DOWN * self.allowance
            self.calm = self.calm + 1 if calm else 0
            if self.calm >= CALM_WINDOWS:
                self.on_mid = False
                self.recent["batch"] = self.recent["mid"] * self.ratio

    def hopeless(self, stereo: str | None, seconds_left: float) -> bool:
        """Whether a window about to start would finish after its deadline; counts it."""
        expected = self.recent[stereo or "batch"]
        drop = bool(expected) and expected > seconds_left and not self._dropped_last
        self._dropped_last = drop
        self.dropped += int(drop)
        return drop
