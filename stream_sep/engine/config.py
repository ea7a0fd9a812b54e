"""The streaming engine's options as one validated value (the keyword arguments of
:class:`~stream_sep.engine.separator.Separator`).

Library callers and commands normally build these from a :class:`stream_sep.settings.Settings`
(which owns the user-facing defaults and options); the plan defaults come from
:mod:`stream_sep.engine.plan`, written once there.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stream_sep.dsp import safety
from stream_sep.engine.plan import DEFAULT_CROSSFADE, DEFAULT_HOP, DEFAULT_LOOKAHEAD
from stream_sep.engine.window import STEREO_CHOICES
from stream_sep.errors import UserError

DEFAULT_FADE_SECONDS = 0.05
DEFAULT_MAX_CONSECUTIVE_FAILURES = 8


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """Every option of the streaming engine.

    hop, lookahead, crossfade: seconds (:mod:`stream_sep.engine.plan`); compute: the compute
    allowance in seconds (None = one hop; :mod:`stream_sep.engine.fitting` sizes it from
    measured speed). mode: karaoke, vocals or bypass; vocal_level: karaoke with that share of
    the vocals. stereo: 'batch' (every channel through the model) or 'mid' (the mid channel
    only). postfilter, high_band_voice_removal, denoise: per-window quality options of
    :class:`~stream_sep.engine.window.WindowRunner` (default off).
    blocking: run each window inline (offline) instead of on a worker thread; strict (with
    blocking): a window the model fails on raises :class:`~stream_sep.errors.ModelError`
    instead of playing the dry signal. shed (live, not blocking): shed work under overload
    and never stop for slowness (:mod:`stream_sep.engine.shedding`); stereo_cost: measured
    time of a both-channel window over a mid-channel one.
    ramp_seconds: gain ramps on mode/level changes; limit: pass the output through the
    :class:`~stream_sep.dsp.safety.OutputGuard` (limiter at ``ceiling_db``, NaN guard, clip);
    fade_in: seconds from where the delayed signal first arrives (None: a short one when
    guarded, none otherwise); max_consecutive_failures: unusable windows in a row that latch
    the engine's failure. key: None (no key stage) or semitones in -6..+6 (a
    :class:`~stream_sep.engine.key.KeyShift` whose fixed delay is part of the latency).
    stems: the engine gives the music and the vocals apart (:meth:`Separator.process_stems`)
    instead of one mix; mode and vocal level then do not apply, and there is no key stage.
    """

    hop: float = DEFAULT_HOP
    lookahead: float = DEFAULT_LOOKAHEAD
    crossfade: float = DEFAULT_CROSSFADE
    compute: float | None = None
    mode: str = "karaoke"
    vocal_level: float | None = None
    stereo: str = "batch"
    postfilter: str = "none"
    high_band_voice_removal: float = 0.0
    denoise: bool = False
    blocking: bool = False
    strict: bool = False
    shed: bool = False
    stereo_cost: float = 2.0
    ramp_seconds: float = 0.05
    ceiling_db: float = safety.DEFAULT_CEILING_DB
    limit: bool = True
    fade_in: float | None = None
    max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES
    key: int | None = None
    stems: bool = False

    def __post_init__(self) -> None:
        if self.stereo not in STEREO_CHOICES:
            choices = ", ".join(STEREO_CHOICES)
            raise UserError(f"--stereo must be one of {choices}, got {self.stereo!r}")
        count = self.max_consecutive_failures
        if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 1:
            raise UserError(f"max_consecutive_failures must be an integer >= 1, got {count!r}")
        if self.stems and self.key is not None:
            raise UserError(
                f"--key {self.key} does not apply to --stems (the key change shifts one mixed "
                "output); leave out one of them"
            )

    @classmethod
    def of(cls, config: EngineConfig | None = None, **options) -> EngineConfig:
        """``config`` (default: all defaults) with ``options`` replaced; a name that is not
        an option is one line."""
        return replaced_options(cls, config, options, "engine")

    @property
    def shedding(self) -> bool:
        """Whether the engine sheds work under overload (live only: never when blocking)."""
        return self.shed and not self.blocking

    @property
    def fade_in_seconds(self) -> float:
        if self.fade_in is not None:
            return self.fade_in
        return DEFAULT_FADE_SECONDS if self.limit else 0.0


def replaced_options(cls, config, options: dict, what: str):
    """``config`` (an instance of the frozen dataclass ``cls``; None: all defaults) with
    ``options`` replaced; a name that is not a field of ``cls`` is a TypeError naming it as
    one of ``what``'s options."""
    unknown = sorted(set(options) - {field.name for field in dataclasses.fields(cls)})
    if unknown:
        raise TypeError(f"unknown {what} option(s): {', '.join(unknown)}")
    return dataclasses.replace(config or cls(), **options)
