"""The Python API: what ``import stream_sep`` offers to scripts and other hosts.

Audio arrays are ``(channels, samples)`` float32 everywhere, as demucs and pedalboard take
them; a shape that could be either way round is refused with one line, never guessed.

    import stream_sep
    model = stream_sep.load_model()                       # the bundled model
    stems = stream_sep.separate(audio, 44100, model)      # {"vocals": ..., "karaoke": ...}
    with stream_sep.Separator(model, 48000, 2) as live:   # streaming, any block size
        out = live.process(block)                         # delayed by live.latency_samples
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from stream_sep import offline
from stream_sep.engine import MAX_CHANNELS
from stream_sep.engine import Separator as _EngineSeparator
from stream_sep.errors import UserError
from stream_sep.models.loading import load_model as _load_model
from stream_sep.models.runtime import SeparationModel
from stream_sep.settings import Settings


def load_model(path_or_name: str | os.PathLike | None = None, provider: str = "auto"):
    """An ONNX separation model ready to run; None = the bundled model. provider: auto,
    cuda, tensorrt or cpu."""
    return _load_model(path_or_name, provider)


class Separator(_EngineSeparator):
    """Streaming separation: ``process(block (channels, n)) -> (channels, n)`` float32 for
    any ``n``, output sample ``j`` being input sample ``j - latency_samples``; ``reset()``,
    ``set_mode('karaoke'|'vocals'|'bypass')``, ``set_vocal_level(g)``, ``close()``.

    model: a loaded model, a path, or None (the bundled model). settings: a
    :class:`~stream_sep.settings.Settings` (hop, lookahead, crossfade, stereo); other keyword
    options are the engine's (mode, vocal_level, blocking, ...).
    """

    def __init__(
        self,
        model=None,
        samplerate: int = 48000,
        channels: int = 2,
        *,
        settings: Settings | None = None,
        **options,
    ):
        config = (settings or Settings()).engine_config()
        super().__init__(_as_model(model), samplerate, channels, config, **options)


def separate(
    audio: np.ndarray,
    samplerate: int,
    model=None,
    *,
    settings: Settings | None = None,
    like_live: bool = False,
    clip_mode: str = "none",
) -> dict[str, np.ndarray]:
    """Separate a whole signal: audio (channels, samples) float32 -> {"vocals", "karaoke"},
    each (channels, samples) float32, time-aligned; exact floats (karaoke + vocals == audio)
    unless ``clip_mode`` is 'clamp' or 'rescale'. like_live: the streaming plan of
    ``settings`` (samples equal to :class:`Separator` output, shifted by its latency);
    default the faster offline overlap-add plan. Raises ModelError if the model fails."""
    audio = check_audio(audio)
    plan = (settings or Settings()).offline_plan(like_live)
    return offline.separate_array(
        _as_model(model), audio, samplerate, clip_mode=clip_mode, plan=plan
    )


def separate_file(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    model=None,
    *,
    stems=("karaoke", "vocals"),
    settings: Settings | None = None,
    overwrite: bool = False,
    like_live: bool = False,
    clip_mode: str = "none",
) -> Path:
    """What ``stream-sep separate PATH -o OUT_DIR`` does: writes ``OUT_DIR/<stem>/<stem
    name>.wav`` (32-bit float) and returns that folder."""
    path, folder = Path(path), Path(out_dir) / Path(path).stem
    offline.check_targets(folder, stems, overwrite)
    offline.check_writable(folder)
    plan = (settings or Settings()).offline_plan(like_live)
    offline.separate_file(_as_model(model), path, folder, stems, clip_mode=clip_mode, plan=plan)
    return folder


def check_audio(audio) -> np.ndarray:
    """audio as (channels, samples) float32, or one line saying why it is not."""
    array = np.asarray(audio)
    shape = array.shape
    if array.ndim != 2 or not 1 <= shape[0] <= MAX_CHANNELS or shape[1] < shape[0]:
        hint = " (transpose it: audio.T)" if array.ndim == 2 and shape[1] <= MAX_CHANNELS else ""
        raise UserError(
            f"audio must be (channels, samples) with 1 to {MAX_CHANNELS} channels, got shape "
            f"{shape}{hint}"
        )
    return np.ascontiguousarray(array, np.float32)


def _as_model(model) -> SeparationModel:
    if model is None or isinstance(model, (str, os.PathLike)):
        return _load_model(model)
    return model
