"""Running a separation model on one window: STFT -> ONNX core -> iSTFT.

The engine calls only :meth:`SeparationModel.separate`. A :class:`Runner` keeps every buffer
the graph reads and writes preallocated per batch size and bound through IOBinding: host
arrays on the CPU, device buffers on a GPU (with one static-shape session and CUDA graph per
batch size there). Which execution provider runs the graph is decided once, when the model is
loaded (:mod:`stream_sep.models.loading`, :mod:`stream_sep.models.providers`).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from stream_sep.dsp import spectral
from stream_sep.errors import ModelError, first_line
from stream_sep.models import providers
from stream_sep.models.contract import ModelContract, check_tensor_shape

log = logging.getLogger(__name__)

# ONNX tensor types the host accepts at the graph's boundary, and their numpy types.
ONNX_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def import_onnxruntime():
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
    returns ``(B, S, window_samples)`` float32, one waveform per source. ``provider`` is the
    execution provider that really runs the graph; ``provider_reason`` says why (one line).
    The runner's buffers are shared, so calls from several threads take turns (a lock).
    """

    def __init__(self, runner: Runner, contract: ModelContract, path: Path, reason: str = ""):
        self._lock = threading.Lock()
        self.runner = runner
        self.contract = contract
        self.path = path
        self.provider = runner.provider
        self.provider_reason = reason
        self.last_network_seconds = 0.0

    @property
    def session(self):
        """The ONNX Runtime session validated at load (batch axis dynamic)."""
        return self.runner.session

    @property
    def io_dtype(self) -> np.dtype:
        """float32, or float16 for a half-precision export."""
        return self.runner.io_dtype

    def run_network(self, spectrogram: np.ndarray) -> np.ndarray:
        """(B, T, F, 2) float32 -> (B, S, T, 2F) float32, the ONNX graph alone.

        The result is the runner's buffer for batch B: valid until the next call.
        """
        with self._lock:
            started = time.perf_counter()
            output = self.runner.run(spectrogram)
            self.last_network_seconds = time.perf_counter() - started
            return output

    def separate(self, audio: np.ndarray) -> np.ndarray:
        """(B, window_samples) float32 -> (B, S, window_samples) float32."""
        expected = (self.contract.window_samples,)
        if audio.ndim != 2 or audio.shape[1:] != expected:
            raise ValueError(f"audio must be (B, {expected[0]}), got {audio.shape}")
        audio = np.ascontiguousarray(audio, np.float32)
        with self._lock:
            staging = self.runner.input_buffer(audio.shape[0])
            spectral.to_network_input(audio, self.contract, staging)
            started = time.perf_counter()
            output = self.runner.run_staged(audio.shape[0])
            self.last_network_seconds = time.perf_counter() - started
            return spectral.from_network_output(output, self.contract)

    def warm_up(self, batch: int = 1) -> float:
        """Prepare batch ``batch`` and run silent windows so the first real one is not slow
        (cuDNN's algorithm search, TensorRT's engine build, CUDA graph capture all happen
        on the first runs). Returns the seconds taken."""
        started = time.perf_counter()
        silence = np.zeros((batch, self.contract.window_samples), np.float32)
        for _ in range(self.runner.warm_up_runs):
            self.separate(silence)
        return time.perf_counter() - started


class _Slot:
    """Everything preallocated for one batch size: staging arrays on the host, the bound
    input/output values (on the device for a GPU), the IOBinding and its run options."""

    def __init__(self, runner: Runner, session, batch: int, graph_capture: bool):
        contract = runner.contract
        in_shape = (batch, *contract.input_shape[1:])
        out_shape = (batch, *contract.output_shape[1:])
        ort = import_onnxruntime()
        self.session = session
        self.staging = np.zeros(in_shape, np.float32)  # what the host STFT writes
        self.host_in = (
            self.staging if runner.io_dtype == np.float32 else np.zeros(in_shape, runner.io_dtype)
        )
        self.host_out = np.zeros(out_shape, runner.io_dtype)
        self.output = (
            self.host_out if runner.io_dtype == np.float32 else np.zeros(out_shape, np.float32)
        )
        if runner.staged:
            # Device buffers, allocated once; the host copies in and out around each run.
            self.device_in = ort.OrtValue.ortvalue_from_shape_and_type(
                in_shape, runner.io_dtype, runner.device, 0
            )
            self.device_out = ort.OrtValue.ortvalue_from_shape_and_type(
                out_shape, runner.io_dtype, runner.device, 0
            )
        else:
            # The CPU reads and writes the host arrays themselves: no copies at all.
            self.device_in = ort.OrtValue.ortvalue_from_numpy(self.host_in)
            self.device_out = ort.OrtValue.ortvalue_from_numpy(self.host_out)
        self.host_out_value = ort.OrtValue.ortvalue_from_numpy(self.host_out)
        self.binding = session.io_binding()
        self.binding.bind_ortvalue_input(contract.input_name, self.device_in)
        self.binding.bind_ortvalue_output(contract.output_name, self.device_out)
        self.run_options = ort.RunOptions()
        # A failing run still raises with ONNX Runtime's message, which the engine reports
        # in one line of its own; without this ONNX Runtime also prints a red log line to
        # the terminal for every failed window (measured with a Reshape that fails at run time).
        self.run_options.log_severity_level = 4
        if graph_capture:
            # One CUDA graph per batch size; id 0 is ONNX Runtime's own, -1 disables capture.
            self.run_options.add_run_config_entry("gpu_graph_id", str(batch))
        self.graph_capture = graph_capture
        self.runs = 0


class Runner:
    """Runs the ONNX core with IOBinding into buffers preallocated per batch size.

    CPU: one session, its input and output bound to host arrays (no copies, no allocation
    per call). GPU (``staged``): input and output live in device buffers allocated once per
    batch size; each batch size gets its own session with the batch axis pinned, so every
    shape is static and CUDA graphs (and TensorRT engines) apply; when such a session cannot
    be made, the shared dynamic session runs without graphs. The GPU code path runs on the
    CPU too (``staged=True, per_batch_sessions=True``), which is how the tests exercise it.
    """

    def __init__(
        self,
        model_bytes: bytes,
        session,
        choice: providers.ProviderChoice,
        contract: ModelContract,
        staged: bool | None = None,
        per_batch_sessions: bool | None = None,
        model_folder: Path | None = None,
    ):
        self.session = session
        self.model_folder = model_folder
        self.choice = choice
        self.contract = contract
        self.provider = providers.active_provider(session)
        self.device = "cpu" if self.provider == "cpu" else "cuda"
        self.staged = self.device != "cpu" if staged is None else staged
        self.per_batch_sessions = (
            self.device != "cpu" if per_batch_sessions is None else per_batch_sessions
        )
        # Kept only to make the per-batch sessions (hundreds of MB for the full model).
        self.model_bytes = model_bytes if self.per_batch_sessions else None
        self.io_dtype = np.dtype(ONNX_TYPES[session.get_inputs()[0].type])
        batch_axis = session.get_inputs()[0].shape[0]
        self.batch_dim = batch_axis if isinstance(batch_axis, str) and batch_axis else None
        self.warm_up_runs = 1 if self.device == "cpu" else 3
        self._slots: dict[int, _Slot] = {}
        self._copy_tensors_works = True

    def input_buffer(self, batch: int) -> np.ndarray:
        """The float32 array of the contract's input shape, batch ``B``, that
        :meth:`run_staged` reads ((B, T, F, 2) for ``tfc_tdf``)."""
        return self.slot(batch).staging

    def run(self, spectrogram: np.ndarray) -> np.ndarray:
        """(B, T, F, 2) float32 -> (B, S, T, 2F) float32 (the slot's buffer)."""
        slot = self.slot(spectrogram.shape[0])
        np.copyto(slot.staging, spectrogram)
        return self.run_staged(spectrogram.shape[0])

    def run_staged(self, batch: int) -> np.ndarray:
        """Run on what is in :meth:`input_buffer`; returns the float32 output of the
        contract's output shape ((B, S, T, 2F) for ``tfc_tdf``)."""
        slot = self.slot(batch)
        if slot.host_in is not slot.staging:
            np.copyto(slot.host_in, slot.staging, casting="same_kind")
        if self.staged:
            slot.device_in.update_inplace(slot.host_in)
        try:
            slot.session.run_with_iobinding(slot.binding, slot.run_options)
        except Exception as error:
            if not slot.graph_capture or slot.runs:
                raise
            # The first runs capture the CUDA graph; if capture fails, run without graphs.
            log.info("batch %d: CUDA graph capture failed (%s)", batch, first_line(error))
            self._slots[batch] = _Slot(self, self.session, batch, graph_capture=False)
            np.copyto(self._slots[batch].staging, slot.staging)
            return self.run_staged(batch)
        slot.runs += 1
        if self.staged:
            self._read_back(slot)
        if slot.output is not slot.host_out:
            np.copyto(slot.output, slot.host_out)
        return slot.output

    def _read_back(self, slot: _Slot) -> None:
        """Device output -> the preallocated host array."""
        if self._copy_tensors_works:
            try:
                import_onnxruntime().copy_tensors([slot.device_out], [slot.host_out_value])
                return
            except (AttributeError, RuntimeError) as error:
                # No data transfer registered for this device pair: copy through numpy.
                log.debug("copy_tensors unavailable (%s); reading back with numpy()", error)
                self._copy_tensors_works = False
        np.copyto(slot.host_out, slot.device_out.numpy())

    def slot(self, batch: int) -> _Slot:
        """The preallocated buffers (and session) for ``batch``, made on first use."""
        slot = self._slots.get(batch)
        if slot is None:
            if batch < 1:
                raise ValueError(f"batch must be at least 1, got {batch}")
            session, graph_capture = self._session_for(batch)
            slot = self._slots[batch] = _Slot(self, session, batch, graph_capture)
        return slot

    def _session_for(self, batch: int) -> tuple[object, bool]:
        """A session with the batch axis pinned to ``batch`` (and CUDA graphs on a GPU), or
        the shared session when that is not possible or not wanted."""
        if not self.per_batch_sessions or self.batch_dim is None:
            return self.session, False
        graph_capture = self.device != "cpu"
        options = providers.session_options(
            self.choice, fixed_dims={self.batch_dim: batch}, model_folder=self.model_folder
        )
        provider_list = (
            providers.gpu_providers(self.provider, graph_capture=True)
            if graph_capture
            else self.choice.providers
        )
        try:
            session = providers.create_session(
                self.model_bytes, self.choice, options, provider_list
            )
        except Exception as error:  # noqa: BLE001 - any failure: the dynamic session still runs
            log.info(
                "batch %d: no static-shape session (%s); running without CUDA graphs",
                batch,
                first_line(error),
            )
            return self.session, False
        return session, graph_capture


def check_graph(session, contract: ModelContract, origin: str) -> None:
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
        if tensor.type not in ONNX_TYPES:
            raise ModelError(
                f"{origin}: {role} {tensor.name!r} is {tensor.type}, must be "
                "tensor(float) or tensor(float16)"
            )
    if inputs[0].type != output.type:
        raise ModelError(
            f"{origin}: input is {inputs[0].type} but output is {output.type}; they must match"
        )
    check_tensor_shape(
        origin, "input", inputs[0].name, tuple(inputs[0].shape), contract.input_shape
    )
    check_tensor_shape(origin, "output", output.name, tuple(output.shape), contract.output_shape)
