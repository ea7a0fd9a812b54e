"""The models shipped with the package: this folder's ``vocals-mir1k.onnx`` and its live
variant ``vocals-live.onnx`` (the same weights on a 2.016 s window instead of 4.064 s: half
the work per window, so a lower latency on a slow machine, at a small cost in quality)."""

from __future__ import annotations

from pathlib import Path

from stream_sep.errors import ModelError

BUNDLED_MODEL = Path(__file__).parent / "vocals-mir1k.onnx"
LIVE_MODEL = Path(__file__).parent / "vocals-live.onnx"
LIVE_WINDOW_SAMPLES = 32256  # the live variant's window: 2.016 s at 16 kHz, 64 STFT frames


def bundled_model_path() -> Path:
    """Path of the model shipped with the package; :class:`ModelError` if it is absent."""
    if not BUNDLED_MODEL.is_file():
        raise ModelError(
            f"no bundled model is installed ({BUNDLED_MODEL} is missing); "
            "pass --model PATH with a model exported by export/to_onnx.py"
        )
    return BUNDLED_MODEL


def bundled_live_model_path() -> Path | None:
    """Path of the shipped live variant, or None when this install has none."""
    return LIVE_MODEL if LIVE_MODEL.is_file() else None
