"""The streaming separation engine: any stream in, a separated stream out, a fixed delay.

One-way arrows: ``plan`` (pure sample arithmetic) <- ``window`` (run the model on one window)
<- ``scheduler`` (slots, worker thread or inline) <- ``separator`` (composes them with
``delay`` (the input ring), ``health`` (counters and failure) and ``mixer`` (modes, ramps,
fades, output guard)). See docs/architecture.md.
"""

from stream_sep.engine.config import (
    DEFAULT_FADE_SECONDS,
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    EngineConfig,
)
from stream_sep.engine.health import DC_OFFSET_LIMIT, FULL_SCALE, EngineStats, NonFiniteEstimate
from stream_sep.engine.mixer import MODES, VOCAL_LEVEL_RANGE
from stream_sep.engine.plan import MAX_CHANNELS, MIN_CROSSFADE_SECONDS, WindowPlan
from stream_sep.engine.scheduler import SLOTS
from stream_sep.engine.separator import Separator
from stream_sep.engine.window import RESAMPLE_QUALITY, STEREO_CHOICES

__all__ = [
    "DC_OFFSET_LIMIT",
    "DEFAULT_FADE_SECONDS",
    "DEFAULT_MAX_CONSECUTIVE_FAILURES",
    "FULL_SCALE",
    "MAX_CHANNELS",
    "MIN_CROSSFADE_SECONDS",
    "MODES",
    "RESAMPLE_QUALITY",
    "SLOTS",
    "STEREO_CHOICES",
    "VOCAL_LEVEL_RANGE",
    "EngineConfig",
    "EngineStats",
    "NonFiniteEstimate",
    "Separator",
    "WindowPlan",
]
