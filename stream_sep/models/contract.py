"""The model contract: what every separation model carries in its ONNX metadata.

A separation model is the *core network* of TFC_TDF_Net: a complex spectrogram goes in,
one complex spectrogram per source comes out. The host does the STFT and iSTFT around it
(see :mod:`stream_sep.dsp.spectral`), so the numbers below must travel with the model.

``export/`` writes this contract by calling :meth:`ModelContract.to_metadata`; the host
reads it back with :func:`read_contract` and refuses any model whose metadata or tensor
shapes disagree with it.

Tensor layouts (seed defaults in brackets):

- input  ``spectrogram``: ``(B, T, F, 2)`` float32, real/imag of the mixture's STFT with the
  Nyquist bin dropped, ``F = n_fft // 2`` [1024], ``T = frames`` [128]. ``B`` is dynamic
  (stereo runs as a batch of 2).
- output ``sources``: ``(B, S, T, 2F)`` float32; for bin ``f`` the real part is at ``2f`` and
  the imaginary part at ``2f + 1``; ``S = len(sources)`` [1, vocals].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from stream_sep.errors import ModelError

CONTRACT_VERSION = 1
PREFIX = "stream_sep."

# The seed's signal settings (keras_vocal_separation_example): shared by train/ and export/.
SAMPLE_RATE = 16000
N_FFT = 2048
HOP_LENGTH = 512
WINDOW_SAMPLES = 65024  # CHUNK_SIZE: 4.064 s at 16 kHz
WINDOW_FUNCTION = "hann_periodic"
PADDING = "center_reflect"
INPUT_NAME = "spectrogram"
OUTPUT_NAME = "sources"
INPUT_LAYOUT = "B,T,F,2"
OUTPUT_LAYOUT = "B,S,T,2F"
OUTPUT_MEANING = "complex_spectrogram"
SOURCES = ("vocals",)

# Values outside these ranges are refused before any audio is streamed.
_LIMITS = {
    "sample_rate": (4000, 192000),
    "n_fft": (64, 16384),
    "frames": (4, 4096),
}
_MAX_WINDOW_SECONDS = 60.0


def frames_for(window_samples: int, hop_length: int) -> int:
    """Number of STFT frames of a centred STFT over ``window_samples`` samples."""
    return 1 + window_samples // hop_length


@dataclasses.dataclass(frozen=True)
class ModelContract:
    """Everything the host needs to run a separation model.

    ``window_samples`` is the model's input length in samples at ``sample_rate``; the time
    axis of the exported graph is fixed to ``frames = 1 + window_samples // hop_length``.
    """

    sample_rate: int = SAMPLE_RATE
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    window_samples: int = WINDOW_SAMPLES
    window: str = WINDOW_FUNCTION
    padding: str = PADDING
    sources: tuple[str, ...] = SOURCES
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    input_layout: str = INPUT_LAYOUT
    output_layout: str = OUTPUT_LAYOUT
    output_meaning: str = OUTPUT_MEANING
    version: int = CONTRACT_VERSION

    @property
    def frames(self) -> int:
        return frames_for(self.window_samples, self.hop_length)

    @property
    def n_bins(self) -> int:
        """Bins the network sees: the Nyquist bin is dropped."""
        return self.n_fft // 2

    @property
    def input_shape(self) -> tuple[int | None, int, int, int]:
        return (None, self.frames, self.n_bins, 2)

    @property
    def output_shape(self) -> tuple[int | None, int, int, int]:
        return (None, len(self.sources), self.frames, 2 * self.n_bins)

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate

    def source_index(self, name: str) -> int:
        if name not in self.sources:
            raise ModelError(f"the model has no source {name!r}; it has {', '.join(self.sources)}")
        return self.sources.index(name)

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` entries that describe this contract (all strings)."""
        return {
            PREFIX + "contract_version": str(self.version),
            PREFIX + "sample_rate": str(self.sample_rate),
            PREFIX + "n_fft": str(self.n_fft),
            PREFIX + "hop_length": str(self.hop_length),
            PREFIX + "window": self.window,
            PREFIX + "padding": self.padding,
            PREFIX + "window_samples": str(self.window_samples),
            PREFIX + "frames": str(self.frames),
            PREFIX + "input_name": self.input_name,
            PREFIX + "input_layout": self.input_layout,
            PREFIX + "output_name": self.output_name,
            PREFIX + "output_layout": self.output_layout,
            PREFIX + "output_meaning": self.output_meaning,
            PREFIX + "sources": ",".join(self.sources),
        }

    def validate(self) -> None:
        """Refuse values the host cannot run; raises :class:`ModelError`."""
        if self.version != CONTRACT_VERSION:
            raise ModelError(
                f"contract_version {self.version} is not supported (this host reads {CONTRACT_VERSION})"
            )
        _check_range("sample_rate", self.sample_rate)
        _check_range("n_fft", self.n_fft)
        if self.n_fft & (self.n_fft - 1):
            raise ModelError(f"n_fft must be a power of two, got {self.n_fft}")
        if not 1 <= self.hop_length <= self.n_fft:
            raise ModelError(
                f"hop_length must be in [1, n_fft={self.n_fft}], got {self.hop_length}"
            )
        max_window = int(_MAX_WINDOW_SECONDS * self.sample_rate)
        if not self.n_fft <= self.window_samples <= max_window:
            raise ModelError(
                f"window_samples must be in [n_fft={self.n_fft}, {max_window}] "
                f"({_MAX_WINDOW_SECONDS:g} s), got {self.window_samples}"
            )
        if self.window_samples % self.hop_length:
            raise ModelError(
                f"window_samples ({self.window_samples}) must be a multiple of hop_length ({self.hop_length})"
            )
        _check_range("frames", self.frames)
        expected = {
            "window": WINDOW_FUNCTION,
            "padding": PADDING,
            "input_layout": INPUT_LAYOUT,
            "output_layout": OUTPUT_LAYOUT,
            "output_meaning": OUTPUT_MEANING,
        }
        for key, allowed in expected.items():
            if getattr(self, key) != allowed:
                raise ModelError(f"{key} must be {allowed!r}, got {_shown(getattr(self, key))}")
        if not self.sources or any(not s.isidentifier() for s in self.sources):
            raise ModelError(
                f"sources must be a comma-separated list of names, got {_shown(self.sources)}"
            )
        if "vocals" not in self.sources:
            raise ModelError(f"sources must include 'vocals', got {_shown(','.join(self.sources))}")


def _shown(value, limit: int = 60) -> str:
    """repr(value) for an error message, cut short: metadata is untrusted and may be huge."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"


def _check_range(name: str, value: int) -> None:
    low, high = _LIMITS[name]
    if not low <= value <= high:
        raise ModelError(f"{name} must be in [{low}, {high}], got {value}")


_INT_FIELDS = ("contract_version", "sample_rate", "n_fft", "hop_length", "window_samples", "frames")
_STR_FIELDS = (
    "window",
    "padding",
    "input_name",
    "input_layout",
    "output_name",
    "output_layout",
    "output_meaning",
    "sources",
)
REQUIRED_KEYS = tuple(PREFIX + k for k in _INT_FIELDS + _STR_FIELDS)


def contract_from_metadata(metadata: Mapping[str, str], origin: str = "model") -> ModelContract:
    """Parse and validate a contract from ONNX ``metadata_props``.

    Raises :class:`ModelError` naming every missing key, or the first bad value.
    """
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise ModelError(
            f"{origin} is not a stream-sep separation model: its metadata lacks "
            + ", ".join(missing)
        )
    ints = {}
    for field in _INT_FIELDS:
        raw = metadata[PREFIX + field]
        try:
            ints[field] = int(raw)
        except ValueError:
            raise ModelError(
                f"{origin}: metadata {PREFIX}{field} must be an integer, got {_shown(raw)}"
            ) from None
    contract = ModelContract(
        version=ints["contract_version"],
        sample_rate=ints["sample_rate"],
        n_fft=ints["n_fft"],
        hop_length=ints["hop_length"],
        window_samples=ints["window_samples"],
        window=metadata[PREFIX + "window"],
        padding=metadata[PREFIX + "padding"],
        sources=tuple(s.strip() for s in metadata[PREFIX + "sources"].split(",") if s.strip()),
        input_name=metadata[PREFIX + "input_name"],
        output_name=metadata[PREFIX + "output_name"],
        input_layout=metadata[PREFIX + "input_layout"],
        output_layout=metadata[PREFIX + "output_layout"],
        output_meaning=metadata[PREFIX + "output_meaning"],
    )
    try:
        contract.validate()
    except ModelError as error:
        raise ModelError(f"{origin}: {error}") from None
    if ints["frames"] != contract.frames:
        raise ModelError(
            f"{origin}: metadata frames={ints['frames']} disagrees with window_samples="
            f"{contract.window_samples} and hop_length={contract.hop_length} "
            f"(expected {contract.frames})"
        )
    return contract


def check_tensor_shape(
    origin: str, role: str, name: str, shape: tuple, expected: tuple[int | None, ...]
) -> None:
    """Compare a graph tensor's declared shape with the contract's.

    ``shape`` entries may be ints, None or symbolic names (dynamic). A ``None`` in
    ``expected`` accepts any size (the batch axis).
    """
    if len(shape) != len(expected):
        raise ModelError(
            f"{origin}: {role} {name!r} has rank {len(shape)} {tuple(shape)}, "
            f"the contract needs rank {len(expected)} {_fmt(expected)}"
        )
    for axis, (got, want) in enumerate(zip(shape, expected, strict=True)):
        if want is None or not isinstance(got, int) or got <= 0:
            continue
        if got != want:
            raise ModelError(
                f"{origin}: {role} {name!r} has shape {tuple(shape)}, the contract needs "
                f"{_fmt(expected)} (axis {axis} is {got}, not {want})"
            )


def _fmt(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("B" if s is None else str(s) for s in shape) + ")"
