"""How a whole signal is separated offline, as one typed value: :class:`OfflinePlan`.

The throughput plan (:mod:`stream_sep.offline.overlap_add`, centred windows) by default, or,
``like_live``, the streaming engine with the live plan, whose samples equal a live run's.
:meth:`stream_sep.settings.Settings.offline_plan` builds one from the user's settings.
"""

from __future__ import annotations

import dataclasses

from stream_sep.engine.config import EngineConfig
from stream_sep.offline.overlap_add import OverlapAddConfig

# Options of both plans: the stereo handling and the per-window quality options.
SHARED = ("stereo", "postfilter", "high_band_voice_removal", "denoise")


@dataclasses.dataclass(frozen=True)
class OfflinePlan:
    """like_live: separate with the streaming engine configured by ``engine`` (its mode,
    blocking, strictness and guard are set for whole files by :mod:`stream_sep.offline`);
    otherwise with the throughput plan ``overlap_add``."""

    like_live: bool = False
    engine: EngineConfig = EngineConfig()
    overlap_add: OverlapAddConfig = OverlapAddConfig()

    @classmethod
    def of(cls, plan: OfflinePlan | None = None, **options) -> OfflinePlan:
        """``plan`` (default: all defaults) with keyword options replaced: ``like_live``,
        the engine's options, the throughput plan's (``batch_windows``, ``hop_fraction``);
        the stereo handling and the window options go to both. A name that is neither's is
        one line."""
        plan = plan or cls()
        like_live = options.pop("like_live", plan.like_live)
        engine_names = {field.name for field in dataclasses.fields(EngineConfig)}
        overlap_names = {field.name for field in dataclasses.fields(OverlapAddConfig)}
        unknown = sorted(set(options) - engine_names - overlap_names)
        if unknown:
            raise TypeError(f"unknown offline option(s): {', '.join(unknown)}")
        engine = {name: value for name, value in options.items() if name in engine_names}
        overlap = {name: value for name, value in options.items() if name in overlap_names}
        return cls(
            like_live,
            EngineConfig.of(plan.engine, **engine),
            OverlapAddConfig.of(plan.overlap_add, **overlap),
        )

    @property
    def stereo(self) -> str:
        """The stereo handling of the plan that runs."""
        return self.engine.stereo if self.like_live else self.overlap_add.stereo
