"""The ``mdx`` family: MDX-Net ONNX models of Ultimate Vocal Remover (UVR) and
python-audio-separator, run with UVR's conventions.

- Audio: 44.1 kHz stereo; a signal's two channels go into **one** network item (the channel
  axis holds L real, L imaginary, R real, R imaginary). A mono row is copied to both
  channels and the two outputs are averaged back into one row.
- STFT: hop 1024, periodic Hann window of ``n_fft`` (not a power of two: 7680, 6144, ...),
  ``center=True`` with reflect padding, i.e. ``torch.stft``'s conventions, done here with
  numpy/scipy; the inverse is ``torch.istft``'s: overlap-add of the windowed inverse FFTs
  divided sample by sample by the overlap-added squared window.
- Network input: ``[batch, 4, dim_f, dim_t]`` float32 named ``input``: only the first
  ``dim_f`` bins, bins 0-2 set to zero; the window is ``1024 * (dim_t - 1)`` samples (5.92 s
  for dim_t 256). Output: the same shape, the target stem's spectrogram (not a mask).
- ``compensate`` (a gain from UVR's model table) multiplies the network's stem, as UVR does;
  the other stem is the mixture minus that.

Bands the network never sees, and what each mode hears there (this host's choice): the
vocal estimate has nothing above bin ``dim_f`` (17.6 kHz for 3072/7680, 14.7 kHz for
2048/6144), so karaoke keeps the input's highs above the model's band, the same policy as for
the 16 kHz ``tfc_tdf`` model, and ``vocals`` mode has no highs. For a ``vocals`` model the
estimate below bin 3 is what the network returns there; for an ``instrumental`` model the
vocals are the *band-limited* mixture (bins 3 to ``dim_f - 1``, what the network saw) minus
the compensated instrumental, so the sub-bass under bin 3 (below ~17 Hz) and the highs stay
in karaoke instead of leaking into the vocals (UVR's "match frequency" secondary stem does
the same; python-audio-separator subtracts from the full-band mixture).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import scipy.fft

from stream_sep.dsp import spectral
from stream_sep.errors import ModelError
from stream_sep.models.contract import CONTRACT_VERSION, PREFIX
from stream_sep.models.runtime import SeparationModel

NAME = "mdx"
SAMPLE_RATE = 44100
HOP_LENGTH = 1024
NETWORK_CHANNELS = 4  # L real, L imaginary, R real, R imaginary
ZEROED_BINS = 3  # bins 0-2 of the input are set to zero (UVR)
INPUT_NAME = "input"
STEMS = ("vocals", "instrumental")
SOURCES = ("vocals",)
WINDOW_FUNCTION = "hann_periodic"
PADDING = "center_reflect"
MDX = PREFIX + "mdx."
_LIMITS = {
    "sample_rate": (4000, 192000),
    "n_fft": (64, 32768),
    "hop_length": (16, 8192),
    "dim_t": (2, 4096),
}
_MAX_WINDOW_SECONDS = 60.0
_COMPENSATE_RANGE = (0.1, 10.0)


@dataclasses.dataclass(frozen=True)
class MdxContract:
    """The numbers an MDX-Net model needs (UVR keeps them outside the file; the shelf copy
    carries them in its metadata). ``stem``: what the network estimates, ``vocals`` or
    ``instrumental``; the host always delivers the vocals (``sources``)."""

    n_fft: int
    dim_f: int
    dim_t: int
    compensate: float = 1.0
    stem: str = "vocals"
    output_name: str = "output"
    input_name: str = INPUT_NAME
    sample_rate: int = SAMPLE_RATE
    hop_length: int = HOP_LENGTH
    sources: tuple[str, ...] = SOURCES
    version: int = CONTRACT_VERSION

    family = NAME

    @property
    def window_samples(self) -> int:
        """Samples of one window: ``hop * (dim_t - 1)`` (a centred STFT gives dim_t frames)."""
        return self.hop_length * (self.dim_t - 1)

    @property
    def frames(self) -> int:
        return self.dim_t

    @property
    def n_bins(self) -> int:
        """Bins of the full one-sided spectrum (the network sees the first ``dim_f``)."""
        return self.n_fft // 2 + 1

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate

    @property
    def band_hz(self) -> tuple[float, float]:
        """The band the network sees: from bin 3 up to bin ``dim_f`` (exclusive), in Hz."""
        bin_hz = self.sample_rate / self.n_fft
        return ZEROED_BINS * bin_hz, self.dim_f * bin_hz

    @property
    def input_shape(self) -> tuple[int | None, int, int, int]:
        return (None, NETWORK_CHANNELS, self.dim_f, self.dim_t)

    @property
    def output_shape(self) -> tuple[int | None, int, int, int]:
        return self.input_shape

    def source_index(self, name: str) -> int:
        if name not in self.sources:
            raise ModelError(f"the model has no source {name!r}; it has {', '.join(self.sources)}")
        return self.sources.index(name)

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` entries of a shelf copy (all strings)."""
        return {
            PREFIX + "family": NAME,
            PREFIX + "contract_version": str(self.version),
            PREFIX + "sample_rate": str(self.sample_rate),
            PREFIX + "n_fft": str(self.n_fft),
            PREFIX + "hop_length": str(self.hop_length),
            PREFIX + "window": WINDOW_FUNCTION,
            PREFIX + "padding": PADDING,
            PREFIX + "window_samples": str(self.window_samples),
            PREFIX + "frames": str(self.frames),
            PREFIX + "input_name": self.input_name,
            PREFIX + "output_name": self.output_name,
            PREFIX + "sources": ",".join(self.sources),
            MDX + "dim_f": str(self.dim_f),
            MDX + "dim_t": str(self.dim_t),
            MDX + "compensate": repr(float(self.compensate)),
            MDX + "stem": self.stem,
        }

    def validate(self) -> None:
        """Refuse values the host cannot run; raises :class:`ModelError`."""
        if self.version != CONTRACT_VERSION:
            raise ModelError(
                f"contract_version {self.version} is not supported (this host reads {CONTRACT_VERSION})"
            )
        for name, (low, high) in _LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ModelError(f"{name} must be in [{low}, {high}], got {value}")
        if self.n_fft % 2:
            raise ModelError(f"n_fft must be even, got {self.n_fft}")
        if not ZEROED_BINS < self.dim_f <= self.n_bins:
            raise ModelError(
                f"dim_f must be in [{ZEROED_BINS + 1}, n_fft/2+1={self.n_bins}] for n_fft "
                f"{self.n_fft}, got {self.dim_f}"
            )
        if self.hop_length > self.n_fft:
            raise ModelError(
                f"hop_length must be at most n_fft={self.n_fft}, got {self.hop_length}"
            )
        max_window = int(_MAX_WINDOW_SECONDS * self.sample_rate)
        if not self.n_fft <= self.window_samples <= max_window:
            raise ModelError(
                f"the window (hop x (dim_t - 1) = {self.window_samples} samples) must be in "
                f"[n_fft={self.n_fft}, {max_window}] ({_MAX_WINDOW_SECONDS:g} s)"
            )
        low, high = _COMPENSATE_RANGE
        if not (math.isfinite(self.compensate) and low <= self.compensate <= high):
            raise ModelError(f"compensate must be in [{low:g}, {high:g}], got {self.compensate!r}")
        if self.stem not in STEMS:
            raise ModelError(f"stem must be one of {', '.join(STEMS)}, got {self.stem!r}")
        if not self.input_name or not self.output_name:
            raise ModelError("input_name and output_name must not be empty")


_INT_KEYS = {
    "contract_version": PREFIX + "contract_version",
    "sample_rate": PREFIX + "sample_rate",
    "n_fft": PREFIX + "n_fft",
    "hop_length": PREFIX + "hop_length",
    "dim_f": MDX + "dim_f",
    "dim_t": MDX + "dim_t",
}
_STR_KEYS = {
    "input_name": PREFIX + "input_name",
    "output_name": PREFIX + "output_name",
    "stem": MDX + "stem",
    "compensate": MDX + "compensate",
}


def contract_from_metadata(metadata: Mapping[str, str], origin: str = "model") -> MdxContract:
    """Parse and validate an :class:`MdxContract` from a shelf copy's metadata; raises
    :class:`ModelError` naming the missing keys or the first bad value."""
    missing = [key for key in (*_INT_KEYS.values(), *_STR_KEYS.values()) if key not in metadata]
    if missing:
        raise ModelError(f"{origin}: an mdx model's metadata lacks {', '.join(missing)}")
    values: dict = {}
    for field, key in _INT_KEYS.items():
        try:
            values[field] = int(metadata[key])
        except ValueError:
            raise ModelError(f"{origin}: metadata {key} must be an integer") from None
    try:
        compensate = float(metadata[_STR_KEYS["compensate"]])
    except ValueError:
        raise ModelError(f"{origin}: metadata {_STR_KEYS['compensate']} must be a number") from None
    contract = MdxContract(
        n_fft=values["n_fft"],
        dim_f=values["dim_f"],
        dim_t=values["dim_t"],
        compensate=compensate,
        stem=metadata[_STR_KEYS["stem"]],
        input_name=metadata[_STR_KEYS["input_name"]],
        output_name=metadata[_STR_KEYS["output_name"]],
        sample_rate=values["sample_rate"],
        hop_length=values["hop_length"],
        version=values["contract_version"],
    )
    try:
        contract.validate()
    except ModelError as error:
        raise ModelError(f"{origin}: {error}") from None
    return contract


# ---------------------------------------------------------------------------- signal path
@functools.lru_cache(maxsize=8)
def _inverse_envelope(n_fft: int, hop: int, frames: int) -> np.ndarray:
    """(hop * (frames - 1),) float32: 1 / the overlap-added squared window over the kept
    samples (``torch.istft``'s normalisation), read-only."""
    window = spectral.analysis_window(n_fft)
    squared = np.broadcast_to(window**2, (frames, n_fft))
    envelope = overlap_add(squared, hop)[n_fft // 2 : n_fft // 2 + hop * (frames - 1)]
    if envelope.min() < 1e-11:  # torch refuses such settings too (NOLA)
        raise ModelError(f"n_fft {n_fft} and hop {hop} do not overlap enough to invert")
    inverse = (1.0 / envelope).astype(np.float32)
    inverse.flags.writeable = False
    return inverse


def overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """frames (..., T, n) -> (..., n + hop * (T - 1)): frame t added at sample t * hop."""
    *lead, count, length = frames.shape
    parts = -(-length // hop)
    padded = np.zeros((*lead, count, parts * hop), frames.dtype)
    padded[..., :length] = frames
    pieces = padded.reshape(*lead, count, parts, hop)
    slots = np.zeros((*lead, count + parts - 1, hop), frames.dtype)
    for part in range(parts):
        slots[..., part : part + count, :] += pieces[..., :, part, :]
    return slots.reshape(*lead, -1)[..., : length + hop * (count - 1)]


def istft(spectrum: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """``torch.istft(center=True)`` of a one-sided spectrum.

    spectrum: (..., T, bins) complex, bins <= n_fft // 2 + 1 (missing top bins are zeros).
    Returns (..., hop * (T - 1)) float32.
    """
    frames = scipy.fft.irfft(np.asarray(spectrum, np.complex64), n=n_fft, axis=-1)
    frames *= spectral.analysis_window32(n_fft)
    count = frames.shape[-2]
    signal = overlap_add(frames, hop)[..., n_fft // 2 : n_fft // 2 + hop * (count - 1)]
    return signal * _inverse_envelope(n_fft, hop, count)


def to_network_input(audio: np.ndarray, contract: MdxContract, out: np.ndarray) -> np.ndarray:
    """Stereo items -> the network's input, written into ``out``.

    audio: (N, 2, window_samples) float32. out: (N, 4, dim_f, dim_t) float32, channels
    L real, L imaginary, R real, R imaginary; bins 0-2 zero.
    """
    spectrum = spectral.stft(audio, contract.n_fft, contract.hop_length)[..., : contract.dim_f]
    spectrum = np.swapaxes(spectrum, -1, -2)  # (N, 2, dim_f, T)
    out[:, 0::2] = spectrum.real
    out[:, 1::2] = spectrum.imag
    out[:, :, :ZEROED_BINS] = 0.0
    return out


def from_network_layout(tensor: np.ndarray) -> np.ndarray:
    """(N, 4, dim_f, T) float32 -> (N, 2, T, dim_f) complex64 for :func:`istft`."""
    complex_ = tensor[:, 0::2] + 1j * tensor[:, 1::2]
    return np.swapaxes(complex_, -1, -2).astype(np.complex64)


def vocal_spectrum(mixture: np.ndarray, output: np.ndarray, contract: MdxContract) -> np.ndarray:
    """The vocals in the network layout from the network's input and output, both
    (N, 4, dim_f, T) float32: the compensated output for a ``vocals`` model, the band-limited
    mixture minus the compensated output for an ``instrumental`` one."""
    if contract.stem == "vocals":
        return output * np.float32(contract.compensate)
    return mixture - output * np.float32(contract.compensate)


# ---------------------------------------------------------------------------- the model
def make_model(runner, contract: MdxContract, path: Path, reason: str = ""):
    """The :class:`MdxModel` around a checked ``runner``."""
    return MdxModel(runner, contract, path, reason)


class MdxModel(SeparationModel):
    """An MDX-Net model behind the engine's interface (see :mod:`stream_sep.models.families`).

    ``separate(audio)``: (B, W) float32, every row a mono signal (run as L = R) -> (B, 1, W)
    vocals. ``separate_channels(audio, 2)``: rows in pairs, each pair the left and right
    channel of one signal, run as one stereo item; any other grouping runs each row as mono.
    """

    def __init__(self, runner, contract: MdxContract, path: Path, reason: str = ""):
        super().__init__(runner, contract, path, reason)
        batch_axis = runner.session.get_inputs()[0].shape[0]
        # A graph whose batch axis is a fixed 1 runs one item per call.
        self._items_per_run = batch_axis if isinstance(batch_axis, int) and batch_axis > 0 else None

    def separate(self, audio: np.ndarray) -> np.ndarray:
        """(B, window_samples) float32, rows mono -> (B, 1, window_samples) float32."""
        return self.separate_channels(audio, 1)

    def separate_channels(self, audio: np.ndarray, channels: int) -> np.ndarray:
        """(B, window_samples) float32, ``channels`` rows per signal -> (B, 1, window_samples)."""
        window = self.contract.window_samples
        if audio.ndim != 2 or audio.shape[1] != window:
            raise ValueError(f"audio must be (B, {window}), got {audio.shape}")
        if audio.shape[0] % channels:
            raise ValueError(f"{audio.shape[0]} rows do not group into signals of {channels}")
        audio = np.asarray(audio, np.float32)
        stereo = channels == 2
        items = audio.reshape(-1, 2, window) if stereo else np.repeat(audio[:, None], 2, axis=1)
        vocals = self._separate_items(items)
        rows = vocals.reshape(-1, window) if stereo else vocals.mean(axis=1)
        return rows[:, None, :].astype(np.float32, copy=False)

    def _separate_items(self, items: np.ndarray) -> np.ndarray:
        """(N, 2, W) float32 stereo items -> (N, 2, W) float32 vocals."""
        step = self._items_per_run or items.shape[0]
        parts = [self._run(items[first : first + step]) for first in range(0, len(items), step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _run(self, items: np.ndarray) -> np.ndarray:
        contract = self.contract
        with self._lock:
            staging = self.runner.input_buffer(items.shape[0])
            to_network_input(items, contract, staging)
            started = time.perf_counter()
            output = self.runner.run_staged(items.shape[0])
            self.last_network_seconds = time.perf_counter() - started
            spectrum = from_network_layout(vocal_spectrum(staging, output, contract))
        return istft(spectrum, contract.n_fft, contract.hop_length)

    def warm_up(self, batch: int = 1) -> float:
        """Run silent windows as the engine will: ``batch`` rows of one signal (2 = one
        stereo item). Returns the seconds taken."""
        started = time.perf_counter()
        silence = np.zeros((batch, self.contract.window_samples), np.float32)
        for _ in range(self.runner.warm_up_runs):
            self.separate_channels(silence, batch if batch == 2 else 1)
        return time.perf_counter() - started
