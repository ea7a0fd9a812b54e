"""The ``tfc_tdf`` family: models exported by this project's ``train/`` and ``export/``.

The network is the core of TFC_TDF_Net: the host's STFT (:mod:`stream_sep.dsp.spectral`, Keras'
conventions) makes the ``(B, T, F, 2)`` input, the network returns one complex spectrogram
per source, the host's iSTFT turns them back into waveforms. Every number is in the model's
own metadata (:mod:`stream_sep.models.contract`); each row of a batch is one mono signal (stereo
runs as a batch of two).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from stream_sep.models import contract as _contract

NAME = "tfc_tdf"


def contract_from_metadata(metadata: Mapping[str, str], origin: str = "model"):
    """The validated :class:`~stream_sep.models.contract.ModelContract` in ``metadata``."""
    return _contract.contract_from_metadata(metadata, origin)


def make_model(runner, contract, path: Path, reason: str = ""):
    """The :class:`~stream_sep.models.runtime.SeparationModel` around a checked ``runner``."""
    from stream_sep.models.runtime import SeparationModel

    return SeparationModel(runner, contract, path, reason)
