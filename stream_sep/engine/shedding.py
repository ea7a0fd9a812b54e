"""Graceful overload: when windows start taking longer than the compute allowance (another
program took the CPU), shed work instead of missing deadlines, and recover when it is free.

Two levers, both keeping the latency fixed:
- a ladder of cheaper ways to run a window, each about half the compute of the one above,
  taken one step at a time: with ``--denoise``, first without its sign-inverted pass (the
  smallest loss: +0.06 dB cross-validated), then, for a stereo stream run on both channels,
  the mid channel only. The stream steps down while the recent window time (an exponential
  average) at its step exceeds ``UP`` of the allowance, and back up once the time predicted
  for the step above is below ``DOWN`` of the allowance for ``CALM_WINDOWS`` windows in a row;
- the worker drops a queued window it predicts cannot finish by its deadline rather than
  running it late (which would also delay the next one); that window plays the dry signal.
Slowness is then counted, never fatal: only a model that keeps failing or hangs stops a run.
"""

from __future__ import annotations

from dataclasses import dataclass

UP = 0.8  # fraction of the allowance above which the stream steps to a cheaper way
# Fraction below which (predicted) it returns to the way above. A plan puts the configured
# way's 90th percentile at about half the allowance (fitting.LOAD_CEILING, with the allowance
# the hop), and live windows run about 5% slower than the start-up measured: at 0.5 a stream
# that shed a burst of load stayed on the cheaper way for the rest of the run (seen through
# the JACK dummy device with two busy loops for 8 s). 0.65 is above that speed and below UP.
DOWN = 0.65
CALM_WINDOWS = 8
SMOOTHING = 0.3  # weight of the newest window time in the running average
DENOISE_COST = 2.0  # time with the denoise pass / without it (twice the batch; 1.9 measured)


@dataclass(frozen=True)
class Way:
    """One way to run a window: ``stereo`` ('mid') and ``denoise`` (False) override the
    configured handling; None keeps it. ``name`` completes "N windows run ..."."""

    name: str
    stereo: str | None = None
    denoise: bool | None = None


CONFIGURED = Way("as configured")
WITHOUT_DENOISE = Way("without the denoise pass", denoise=False)
MID = Way("on the mid channel only", stereo="mid", denoise=False)


class Shedding:
    """The shedding state of one stream. ``allowance``: the compute allowance in seconds;
    ``stereo``/``channels``/``denoise``: the configured handling; ``ratio``: both-channel
    time / mid time, measured."""

    def __init__(
        self, allowance: float, stereo: str, channels: int, ratio: float = 2.0, denoise=False
    ):
        self.allowance = allowance
        self.ladder = [CONFIGURED]  # from the configured way down to the cheapest
        self.costs = []  # costs[i]: time of ladder[i] / time of ladder[i + 1]
        if denoise:
            self.ladder.append(WITHOUT_DENOISE)
            self.costs.append(DENOISE_COST)
        if stereo == "batch" and channels > 1:
            self.ladder.append(MID)
            self.costs.append(max(1.0, ratio))
        self.step = 0  # index in the ladder of the way new windows run
        self.recent = [0.0] * len(self.ladder)  # running average seconds per window
        self.runs = [0] * len(self.ladder)  # windows started on each way
        self.calm = 0
        self.dropped = 0  # windows dropped as they could not finish in time
        self.switches = 0  # steps down the ladder
        self._dropped_last = False  # never drop two in a row: the next one measures again

    @property
    def on_mid(self) -> bool:
        return self.ladder[self.step] is MID

    @property
    def mid_windows(self) -> int:
        """Windows run on the mid channel to shed work."""
        return self._runs_of(MID)

    @property
    def without_denoise_windows(self) -> int:
        """Windows run without the denoise pass (and on both channels) to shed work."""
        return self._runs_of(WITHOUT_DENOISE)

    @property
    def shed(self) -> int:
        return sum(self.runs[1:]) + self.dropped

    def cheaper_runs(self) -> list[tuple[Way, int]]:
        """(way, windows run on it) for each cheaper way this stream can take, in order."""
        return list(zip(self.ladder[1:], self.runs[1:], strict=True))

    def _runs_of(self, way: Way) -> int:
        return self.runs[self.ladder.index(way)] if way in self.ladder else 0

    def way_for_next(self) -> Way | None:
        """The cheaper way the next window runs while shedding, else None (as configured)."""
        if self.step == 0:
            return None
        self.runs[self.step] += 1
        return self.ladder[self.step]

    def observe(self, way: Way | None, seconds: float) -> None:
        """A window ran in ``seconds`` on ``way`` (None: as configured)."""
        index = self.ladder.index(way) if way is not None else 0
        previous = self.recent[index]
        self.recent[index] = (
            seconds if previous == 0.0 else (SMOOTHING * seconds + (1 - SMOOTHING) * previous)
        )
        if index != self.step:
            return  # a window started before the last step: it says nothing of this one
        if self.recent[index] > UP * self.allowance and self.step + 1 < len(self.ladder):
            self.step, self.calm = self.step + 1, 0
            self.switches += 1
        elif self.step > 0:
            above = self.recent[index] * self.costs[self.step - 1]
            self.calm = self.calm + 1 if above < DOWN * self.allowance else 0
            if self.calm >= CALM_WINDOWS:
                self.step, self.calm = self.step - 1, 0
                self.recent[self.step] = above

    def hopeless(self, way: Way | None, seconds_left: float) -> bool:
        """Whether a window about to start would finish after its deadline; counts it."""
        expected = self.recent[self.ladder.index(way) if way is not None else 0]
        drop = bool(expected) and expected > seconds_left and not self._dropped_last
        self._dropped_last = drop
        self.dropped += int(drop)
        return drop
