"""Model configuration of TFC_TDF_Net: the seed's hyper-parameters and the presets.

The signal settings (sample rate, FFT size, hop, window length) come from
:mod:`stream_sep.models.contract`, so the trained network and the host agree by construction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from stream_sep.errors import UserError
from stream_sep.models.contract import HOP_LENGTH, N_FFT, SAMPLE_RATE, SOURCES, WINDOW_SAMPLES


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the network; defaults are the seed's (55,697,408 parameters)."""

    n_subbands: int = 4
    channels: int = 64
    growth: int = 128
    n_scales: int = 4
    scale: tuple[int, int] = (2, 2)
    block_size: int = 2
    bottleneck_factor: int = 2
    window_samples: int = WINDOW_SAMPLES
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    sources: tuple[str, ...] = SOURCES
    # Start from a zero estimate (see train/model.py for why); False = the seed's init.
    zero_init_output: bool = True
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", tuple(int(s) for s in self.scale))
        object.__setattr__(self, "sources", tuple(self.sources))
        self.validate()

    @property
    def frames(self) -> int:
        """STFT frames per window (centred STFT)."""
        return 1 + self.window_samples // self.hop_length

    @property
    def n_bins(self) -> int:
        """Frequency bins the network sees (the Nyquist bin is dropped)."""
        return self.n_fft // 2

    @property
    def n_sources(self) -> int:
        return len(self.sources)

    def validate(self) -> None:
        """Refuse configurations the network cannot be built with; raises UserError."""
        for name in ("n_subbands", "channels", "growth", "n_scales", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        if self.window_samples % self.hop_length:
            raise UserError(
                f"window_samples must be a multiple of hop_length={self.hop_length}, "
                f"got {self.window_samples}"
            )
        # Every scale halves time and frequency: both must stay divisible.
        time_factor = self.scale[1] ** self.n_scales
        freq_factor = self.scale[0] ** self.n_scales
        sub_bins = self.n_bins // self.n_subbands
        if self.n_bins % self.n_subbands or sub_bins % freq_factor:
            raise UserError(
                f"n_fft // 2 // n_subbands = {sub_bins} must be divisible by "
                f"scale[0] ** n_scales = {freq_factor}"
            )
        if self.frames % time_factor:
            raise UserError(
                f"window_samples={self.window_samples} gives {self.frames} STFT frames, which must be "
                f"divisible by scale[1] ** n_scales = {time_factor} "
                f"(window_samples = (k * {time_factor} - 1) * {self.hop_length}, e.g. "
                f"{(time_factor - 1) * self.hop_length} or {(8 * time_factor - 1) * self.hop_length})"
            )
        if (sub_bins // freq_factor) % self.bottleneck_factor:
            raise UserError(
                f"bottleneck_factor={self.bottleneck_factor} must divide the bottleneck's "
                f"{sub_bins // freq_factor} frequency bins"
            )
        if not self.sources:
            raise UserError("sources must name at least one stem")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["scale"] = list(self.scale)
        data["sources"] = list(self.sources)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown model config fields: {', '.join(unknown)}")
        return cls(**dict(data))


PRESETS: dict[str, ModelConfig] = {
    "full": ModelConfig(),
    "small": ModelConfig(channels=32, growth=64),
    "tiny": ModelConfig(channels=16, growth=32),
}


def preset_config(name: str, **overrides: Any) -> ModelConfig:
    """The preset ``name`` with any field replaced; raises UserError for an unknown name."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[name].to_dict()
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise UserError(f"unknown model config fields: {', '.join(unknown)}")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return ModelConfig.from_dict(base)
