"""Loading a separation model and running it on one window: STFT -> ONNX core -> iSTFT.

The engine calls only :meth:`SeparationModel.separate`; which execution provider runs the
graph is decided here, once, when the model is loaded.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from stream_sep import spectral
from stream_sep.contract import ModelContract, check_tensor_shape, contract_from_metadata
from stream_sep.errors import ModelError

log = logging.getLogger(__name__)

BUNDLED_MODEL = Path(__file__).parent / "models" / "vocals-mir1k.onnx"
_MAX_MODEL_BYTES = 2 * 1024**3


def bundled_model_path() -> Path:
    """Path of the model shipped with the package; :class:`ModelError` if it is absent."""
    if not BUNDLED_MODEL.is_file():
        raise ModelError(
            f"no bundled model is installed ({BUNDLED_MODEL} is missing); "
            "pass --model PATH with a model exported by export/to_onnx.py"
        )
    return BUNDLED_MODEL


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:  # pragma: no cover - a broken install
        raise ModelError(
            f"onnxruntime cannot be imported ({error}); pip install onnxruntime"
        ) from None
    return onnxruntime


class SeparationModel:
    """An ONNX separation model with its validated contract.

    ``separate(audio)`` takes ``(B, window_samples)`` float32 at ``contract.sample_rate`` and
    returns ``(B, S, window_samples)`` float32, one waveform per source.
    """

    def __init__(self, session, contract: ModelContract, path: Path, provider: str):
        self.session = session
        self.contract = contract
        self.path = path
        self.provider = provider
        self.last_network_seconds = 0.0

    def run_network(self, spectrogram: np.ndarray) -> np.ndarray:
        """(B, T, F, 2) float32 -> (B, S, T, 2F) float32, the ONNX graph alone."""
        started = time.perf_counter()
        (output,) = self.session.run(
            [self.contract.output_name], {self.contract.input_name: spectrogram}
        )
        self.last_network_seconds = time.perf_counter() - started
        return output

    def separate(self, audio: np.ndarray) -> np.ndarray:
        """(B, window_samples) float32 -> (B, S, window_samples) float32."""
        expected = (self.contract.window_samples,)
        if audio.ndim != 2 or audio.shape[1:] != expected:
            raise ValueError(f"audio must be (B, {expected[0]}), got {audio.shape}")
        spectrogram = spectral.to_network_input(
            np.ascontiguousarray(audio, np.float32), self.contract
        )
        output = self.run_network(spectrogram)
        want = (audio.shape[0],) + self.contract.output_shape[1:]
        if output.shape != want:
            raise ModelError(f"{self.path.name} returned shape {output.shape}, expected {want}")
        return spectral.from_network_output(output.astype(np.float32, copy=False), self.contract)

    def warm_up(self, batch: int = 1) -> float:
        """Run one silent window so the first real one is not slow; returns seconds taken."""
        started = time.perf_counter()
        self.separate(np.zeros((batch, self.contract.window_samples), np.float32))
        return time.perf_counter() - started


def read_model_file(path: str | os.PathLike) -> bytes:
    """Read a model file, refusing missing, empty and oversized files with one clear line."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file {str(path)!r} does not exist")
    if not path.is_file():
        raise ModelError(f"model path {str(path)!r} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"model file {str(path)!r} is empty")
    if size > _MAX_MODEL_BYTES:
        raise ModelError(f"model file {str(path)!r} is {size} bytes, over the 2 GiB limit")
    return path.read_bytes()


def load_model(path: str | os.PathLike | None = None, provider: str = "auto") -> SeparationModel:
    """Load and validate a separation model; ``path=None`` means the bundled model."""
    from stream_sep import providers

    path = Path(path) if path is not None else bundled_model_path()
    data = read_model_file(path)
    ort = _import_onnxruntime()
    choice = providers.choose(provider)
    try:
        session = ort.InferenceSession(
            data, sess_options=providers.session_options(choice), providers=choice.providers
        )
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ModelError(
            f"{path.name} is not a loadable ONNX model: {_first_line(error)}"
        ) from None
    metadata = session.get_modelmeta().custom_metadata_map
    contract = contract_from_metadata(metadata, origin=path.name)
    _check_graph(session, contract, path.name)
    model = SeparationModel(session, contract, path, providers.active_provider(session))
    return model


def _check_graph(session, contract: ModelContract, origin: str) -> None:
    inputs = session.get_inputs()
    outputs = session.get_outputs()
    if [i.name for i in inputs] != [contract.input_name]:
        raise ModelError(
            f"{origin}: graph inputs are {[i.name for i in inputs]}, the contract names "
            f"exactly one, {contract.input_name!r}"
        )
    if contract.output_name not in [o.name for o in outputs]:
        raise ModelError(
            f"{origin}: graph outputs are {[o.name for o in outputs]}, the contract needs "
            f"{contract.output_name!r}"
        )
    output = next(o for o in outputs if o.name == contract.output_name)
    for role, tensor in (("input", inputs[0]), ("output", output)):
        if tensor.type != "tensor(float)":
            raise ModelError(
                f"{origin}: {role} {tensor.name!r} is {tensor.type}, must be tensor(float)"
            )
    check_tensor_shape(
        origin, "input", inputs[0].name, tuple(inputs[0].shape), contract.input_shape
    )
    check_tensor_shape(origin, "output", output.name, tuple(output.shape), contract.output_shape)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
