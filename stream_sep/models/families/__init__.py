"""Model families: one interface for the engine, one module per kind of network.

The engine, the live path and the commands talk to every model through the same small
interface, whatever network is inside:

- ``model.contract``: ``sample_rate`` (Hz), ``window_samples`` (the model's input length at
  that rate), ``window_seconds``, ``n_fft`` (sets the unreliable edge the plan keeps out of
  the support: ``n_fft // 4`` model samples), ``sources`` and ``source_index(name)`` (the
  engine asks for ``"vocals"``);
- ``model.separate(audio)``: ``(B, window_samples)`` float32 at ``contract.sample_rate``, each
  row one mono signal -> ``(B, S, window_samples)`` float32, one waveform per source;
- optionally ``model.separate_channels(audio, channels)``: the same, but consecutive groups
  of ``channels`` rows are the channels of one signal (a network that sees stereo as a whole).

Callers that hold several channels of one stream go through :func:`separate_rows`, which
passes the grouping on to a model that can use it and calls plain ``separate`` otherwise
(so any object with ``contract`` and ``separate`` still runs in the engine). It also runs
the host's ``denoise`` option for every family: the model on the signal and on its sign
inverse, the two estimates averaged (Ultimate Vocal Remover's "Denoise Output").

A family module (``tfc_tdf``: ours, ``mdx``: Ultimate Vocal Remover's MDX-Net) provides
``NAME``, ``contract_from_metadata(metadata, origin)`` and ``make_model(runner, contract,
path, reason)``; the family is named by the ``stream_sep.family`` metadata entry (absent:
``tfc_tdf``, every model exported before families existed). What a family needs (its STFT,
tensor layout, band limit, compensation, which stem the network estimates) stays in its own
module.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import numpy as np

from stream_sep.errors import ModelError, UserError
from stream_sep.models.contract import PREFIX

FAMILY_KEY = PREFIX + "family"
DEFAULT_FAMILY = "tfc_tdf"
FAMILIES = {
    "tfc_tdf": "stream_sep.models.families.tfc_tdf",
    "mdx": "stream_sep.models.families.mdx",
}


def family_name(metadata: Mapping[str, str], origin: str = "model") -> str:
    """The family named in ``metadata`` (``tfc_tdf`` when none is); :class:`ModelError` for
    a family this host does not know."""
    name = metadata.get(FAMILY_KEY, DEFAULT_FAMILY)
    if name not in FAMILIES:
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise ModelError(
            f"{origin}: model family {shown!r} is not supported (this host runs "
            f"{', '.join(FAMILIES)})"
        )
    return name


def family_module(name: str):
    """The module of family ``name`` (one of :data:`FAMILIES`)."""
    return importlib.import_module(FAMILIES[name])


def check_denoise(denoise) -> bool:
    """``denoise`` as a bool; anything but True or False is one line."""
    if not isinstance(denoise, (bool, np.bool_)):
        raise UserError(f"denoise must be True or False, got {denoise!r}")
    return bool(denoise)


def separate_rows(model, audio: np.ndarray, channels: int, denoise: bool = False) -> np.ndarray:
    """``audio`` (B, W) float32, consecutive groups of ``channels`` rows being the channels
    of one signal -> (B, S, W) float32 from ``model``.

    A model with ``separate_channels`` gets the grouping (for ``channels > 1``); any other
    model separates every row on its own with ``separate``. ``denoise``: one call on the
    (2B, W) batch ``[audio, -audio]`` and the estimate ``(f(x) - f(-x)) / 2``. Separation is
    odd (the sources of -x are minus those of x), so the model's error splits into an odd
    part, kept, and an even part (what the network adds whatever the input's sign: biases,
    hiss in silence), which cancels; twice the compute.
    """
    if denoise:
        rows = audio.shape[0]
        both = _separate_grouped(model, np.concatenate([audio, -audio]), channels)
        shape = getattr(both, "shape", None)
        if not shape or shape[0] != 2 * rows:
            raise ValueError(f"model returned shape {shape} for a batch of {2 * rows} rows")
        return (both[:rows] - both[rows:]) * np.float32(0.5)
    return _separate_grouped(model, audio, channels)


def _separate_grouped(model, audio: np.ndarray, channels: int) -> np.ndarray:
    grouped = getattr(model, "separate_channels", None)
    if grouped is not None and channels > 1:
        return grouped(audio, channels)
    return model.separate(audio)
