"""TFC_TDF_Net, the seed's encoder-decoder, written with ``keras.ops`` only (any backend).

Two models share the weights:

- the **core network** ("core_network"): spectrogram ``(B, T, F, 2)`` in, one spectrogram
  per source ``(B, S, T, 2F)`` out (real/imag interleaved per bin). This is what export/
  converts to ONNX and what the host runs between its own STFT and iSTFT.
- the **training model**: waveform ``(B, window_samples)`` -> :class:`Spectrogram` -> core
  network. Losses compare its output with the STFT of the target waveforms.

``T = 1 + window_samples // hop_length`` (128), ``F = n_fft // 2`` (1024, the Nyquist bin is
dropped), ``S`` = number of sources.
"""

from __future__ import annotations

import logging
import math
import zipfile
from pathlib import Path

import keras
from keras import layers, ops

from stream_sep.errors import UserError, first_line
from train import losses, schedules  # noqa: F401 - registered for load_checkpoint
from train.config import ModelConfig
from train.registry import PACKAGE
from train.stft import waveform_to_spectrogram

log = logging.getLogger(__name__)

CORE_NAME = "core_network"
INPUT_NAME = "spectrogram"


@keras.saving.register_keras_serializable(package=PACKAGE)
def gelu_erf(x):
    """Exact GELU, ``0.5 x (1 + erf(x / sqrt 2))``.

    The same function as ``activation="gelu"`` (the seed's final convolution), but written with
    ``erf``: TensorFlow lowers Keras' exact gelu to ``Erfc``, which tf2onnx cannot convert.
    """
    return 0.5 * x * (1.0 + ops.erf(x / math.sqrt(2.0)))


@keras.saving.register_keras_serializable(package=PACKAGE)
class Spectrogram(layers.Layer):
    """Centred STFT with the seed's settings, real/imag stacked, Nyquist bin dropped.

    waveform: (B, samples) -> (B, 1 + samples // hop_length, n_fft // 2, 2) float32.
    """

    def __init__(self, n_fft: int, hop_length: int, **kwargs):
        super().__init__(**kwargs)
        self.n_fft = n_fft
        self.hop_length = hop_length

    def call(self, waveform):
        return waveform_to_spectrogram(waveform, self.n_fft, self.hop_length)

    def compute_output_shape(self, input_shape):
        frames = 1 + input_shape[-1] // self.hop_length
        return (*input_shape[:-1], frames, self.n_fft // 2, 2)

    def get_config(self):
        return {**super().get_config(), "n_fft": self.n_fft, "hop_length": self.hop_length}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TimeDistributedDense(layers.Layer):
    """TDF: per-frame dense layers across frequency, with GroupNorm(-1) and gelu.

    x: (B, T, F, C) -> (B, T, F, C); the dense layers act on the F axis.
    """

    def __init__(self, bottleneck_factor: int, fft_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.bottleneck_factor = bottleneck_factor
        self.fft_dim = fft_dim
        self.norm_1 = layers.GroupNormalization(groups=-1)
        self.norm_2 = layers.GroupNormalization(groups=-1)
        self.dense_1 = layers.Dense(fft_dim // bottleneck_factor, use_bias=False)
        self.dense_2 = layers.Dense(fft_dim, use_bias=False)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.norm_1.build(input_shape)
        self.dense_1.build((*input_shape[:2], channels, self.fft_dim))
        hidden = self.fft_dim // self.bottleneck_factor
        self.norm_2.build((*input_shape[:2], hidden, channels))
        self.dense_2.build((*input_shape[:2], channels, hidden))

    def call(self, x):
        x = ops.gelu(self.norm_1(x))
        # (B, T, F, C) -> (B, T, C, F): dense over frequency
        x = self.dense_1(ops.swapaxes(x, -1, -2))
        x = ops.gelu(self.norm_2(ops.swapaxes(x, -1, -2)))
        x = self.dense_2(ops.swapaxes(x, -1, -2))
        return ops.swapaxes(x, -1, -2)

    def get_config(self):
        return {
            **super().get_config(),
            "bottleneck_factor": self.bottleneck_factor,
            "fft_dim": self.fft_dim,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class TimeFrequencyConvolution(layers.Layer):
    """TFC: GroupNorm(-1) -> gelu -> 3x3 convolution. (B, T, F, C_in) -> (B, T, F, channels)."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.norm = layers.GroupNormalization(groups=-1)
        self.conv = layers.Conv2D(channels, 3, padding="same", use_bias=False)

    def build(self, input_shape):
        self.norm.build(input_shape)
        self.conv.build(input_shape)

    def call(self, x):
        return self.conv(ops.gelu(self.norm(x)))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TimeFrequencyTransformBlock(layers.Layer):
    """TFC_TDF block, repeated ``length`` times with a 1x1-convolution residual.

    x: (B, T, F, in_channels) -> (B, T, F, channels).
    """

    def __init__(
        self,
        channels: int,
        length: int,
        fft_dim: int,
        bottleneck_factor: int,
        in_channels: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = channels
        self.length = length
        self.fft_dim = fft_dim
        self.bottleneck_factor = bottleneck_factor
        self.in_channels = in_channels or channels
        # A flat list of (tfc_1, tdf, tfc_2, residual) per repetition, as in the seed.
        self.blocks = []
        for index in range(length):
            block_in = self.in_channels if index == 0 else channels
            self.blocks += [
                TimeFrequencyConvolution(block_in),
                TimeDistributedDense(bottleneck_factor, fft_dim),
                TimeFrequencyConvolution(channels),
                layers.Conv2D(channels, 1, use_bias=False),
            ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for index in range(0, len(self.blocks), 4):
            tfc_1, tdf, tfc_2, residual = self.blocks[index : index + 4]
            # tfc_1 keeps the input's channels, so tfc_1(x) + tdf(x) adds up (the seed's)
            tfc_1.build(shape)
            tdf.build(shape)
            tfc_2.build(shape)
            out_shape = (*shape[:-1], self.channels)
            residual.build(shape)
            shape = out_shape

    def call(self, x):
        for index in range(0, len(self.blocks), 4):
            tfc_1, tdf, tfc_2, residual = self.blocks[index : index + 4]
            x = tfc_2(tfc_1(x) + tdf(x)) + residual(x)
        return x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.channels)

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "length": self.length,
            "fft_dim": self.fft_dim,
            "bottleneck_factor": self.bottleneck_factor,
            "in_channels": self.in_channels,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class Downscale(layers.Layer):
    """Strided convolution -> gelu -> GroupNorm(-1): (B, T, F, C) -> (B, T/s1, F/s0, channels)."""

    conv_class = layers.Conv2D

    def __init__(self, channels: int, scale: tuple[int, int], **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.scale = tuple(scale)
        self.conv = self.conv_class(channels, self.scale, self.scale, use_bias=False)
        self.norm = layers.GroupNormalization(groups=-1)

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.norm.build(self.conv.compute_output_shape(input_shape))

    def call(self, x):
        return self.norm(ops.gelu(self.conv(x)))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "scale": list(self.scale)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Upscale(Downscale):
    """Transposed strided convolution: (B, T, F, C) -> (B, T*s1, F*s0, channels)."""

    conv_class = layers.Conv2DTranspose


def build_core_network(config: ModelConfig) -> keras.Model:
    """The seed's network from the subband reshape to the per-source reshape.

    spectrogram: (B, T, n_fft // 2, 2) -> (B, n_sources, T, n_fft) float32.
    """
    n_sub, n_src = config.n_subbands, config.n_sources
    spectrogram = keras.Input((config.frames, config.n_bins, 2), name=INPUT_NAME)
    fft_dim, channels = config.n_bins // n_sub, config.channels
    # (B, T, F, 2) -> (B, T, F / n_sub, 2 n_sub): groups of bins become channels (the seed's)
    mix = layers.Reshape((config.frames, fft_dim, 2 * n_sub), name="subbands")(spectrogram)
    first = layers.Conv2D(channels, 1, 1, use_bias=False, name="first_conv")(mix)

    x, skips = first, []
    for _ in range(config.n_scales):
        x = TimeFrequencyTransformBlock(
            channels, config.block_size, fft_dim, config.bottleneck_factor
        )(x)
        skips.append(x)
        fft_dim, channels = fft_dim // config.scale[0], channels + config.growth
        x = Downscale(channels, config.scale)(x)

    x = TimeFrequencyTransformBlock(channels, config.block_size, fft_dim, config.bottleneck_factor)(
        x
    )

    for _ in range(config.n_scales):
        fft_dim, channels = fft_dim * config.scale[0], channels - config.growth
        x = layers.Concatenate(axis=-1)([Upscale(channels, config.scale)(x), skips.pop()])
        x = TimeFrequencyTransformBlock(
            channels, config.block_size, fft_dim, config.bottleneck_factor, in_channels=x.shape[-1]
        )(x)

    x = layers.Concatenate(axis=-1)([mix, layers.Multiply()([x, first])])
    x = layers.Conv2D(channels, 1, 1, use_bias=False, activation=gelu_erf, name="final_gelu")(x)
    # Zero-initialised output kernel (the default): the network starts from a zero estimate.
    # With the seed's random init the tiny preset sat at ~0 dB SDR after 1,000 steps on
    # MIR-1K (a random, mixture-scaled output is worse than silence, and the model first
    # learns to cancel it); zero init reached 6.3 dB in 470 steps. zero_init_output=False
    # (--seed-init) keeps the seed's glorot init.
    init = "zeros" if config.zero_init_output else "glorot_uniform"
    x = layers.Conv2D(
        n_src * n_sub * 2, 1, 1, use_bias=False, kernel_initializer=init, name="output_conv"
    )(x)
    # (B, T, F/n_sub, n_src n_sub 2) -> (B, T, F, n_src, 2), as the seed's reshape
    x = layers.Reshape((config.frames, config.n_bins, n_src, 2))(x)
    # -> (B, n_src, T, F, 2) -> (B, n_src, T, 2F): real/imag interleaved per bin
    x = layers.Permute((3, 1, 2, 4))(x)
    x = layers.Reshape((n_src, config.frames, 2 * config.n_bins), name="sources")(x)
    return keras.Model(spectrogram, x, name=CORE_NAME)


def build_training_model(config: ModelConfig, name: str = "tfc_tdf_net") -> keras.Model:
    """The seed's model: waveform (B, window_samples) -> (B, n_sources, T, n_fft)."""
    waveform = keras.Input((config.window_samples,), name="waveform")
    spectrogram = Spectrogram(config.n_fft, config.hop_length, name="stft")(waveform)
    outputs = build_core_network(config)(spectrogram)
    return keras.Model(waveform, outputs, name=name)


def core_network_of(model: keras.Model) -> keras.Model:
    """The core network inside a training model (or the model itself if it is one)."""
    if model.name == CORE_NAME:
        return model
    try:
        return model.get_layer(CORE_NAME)
    except ValueError:
        raise UserError(f"model {model.name!r} has no {CORE_NAME!r} inside it") from None


def load_checkpoint(path: str | Path, compile: bool = False) -> keras.Model:
    """Load a ``.keras`` checkpoint written by train/ (safe_mode on).

    A compiled checkpoint (``last.keras``, for resuming) names the loss, metric and
    learning-rate schedule: this module imports :mod:`train.losses` and :mod:`train.schedules`
    so that they are registered.

    Raises UserError for a missing file or a file that is not a Keras model.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise UserError(f"checkpoint {path} is not a .keras model file (not a zip archive)")
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except (ValueError, KeyError, OSError, TypeError, zipfile.BadZipFile) as error:
        raise UserError(
            f"checkpoint {path} cannot be loaded as a Keras model: {first_line(error)}"
        ) from None
