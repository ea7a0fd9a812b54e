"""The model shipped with the package (this folder's ``vocals-mir1k.onnx``)."""

from __future__ import annotations

from pathlib import Path

from stream_sep.errors import ModelError

BUNDLED_MODEL = Path(__file__).parent / "vocals-mir1k.onnx"


def bundled_model_path() -> Path:
    """Path of the model shipped with the package; :class:`ModelError` if it is absent."""
    if not BUNDLED_MODEL.is_file():
        raise ModelError(
            f"no bundled model is installed ({BUNDLED_MODEL} is missing); "
            "pass --model PATH with a model exported by export/to_onnx.py"
        )
    return BUNDLED_MODEL
