"""Offline separation at full throughput: centred windows, overlap-add, one resampling.

The streaming engine (:mod:`stream_sep.engine`) is built for latency: a window every hop,
the estimate taken near the window's end, each window resampled on its own. Offline there
is no deadline, so this module plans for throughput instead:

- The signal is resampled **once** to the model rate (soxr's ``ResampleStream``, which gives
  the same samples as a one-shot ``soxr.resample`` however the signal is cut into blocks).
- Windows of the model's length ``W`` (``contract.window_samples``) lie every ``hop`` model
  samples: window ``k`` covers model samples ``[k * hop - pad, k * hop - pad + W)`` with
  ``pad = (W - hop) // 2`` of silence before the signal, so every signal sample lies in the
  central ``hop`` samples of some window (never only at an unreliable edge).
- Each window's vocal estimate is multiplied by a taper (:func:`taper_weights`: raised-cosine
  ramps, near zero at the window's edges, where a GroupNorm model reconstructs badly), added
  up, and divided by the summed tapers, so any hop gives exactly the model's output for a
  model whose estimate does not depend on the window's position.
- Several windows (and all channels) go to the model in one call, ``(B, W)`` with
  ``B = windows x channels``, where that is faster.
- The vocal estimate is resampled back to the stream rate **once** and cut to exactly the
  input's length: output sample ``t`` is the estimate for input sample ``t`` (no delay).

:class:`OverlapAddStream` does this block by block with memory bounded by a few windows
(for files); :func:`separate_overlap_add` does it for a whole array, with the same samples.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import soxr

from stream_sep.contract import ModelContract
from stream_sep.engine import highband
from stream_sep.engine.plan import check_channels, check_rate
from stream_sep.errors import ModelError, UserError, first_line
from stream_sep.families import separate_rows
from stream_sep.postfilter import PostFilter

STEREO_CHOICES = ("batch", "mid")
# Measured with the bundled model (benchmarks/results/offline_quality.md): on 30 held-out
# MIR-1K clips every hop from 1/4 to 7/8 of the window scores at least today's streaming
# plan; 3/4 (+0.05 +- 0.10 dB) computes a sixth of today's windows, 1/4 is the best
# (+0.18 +- 0.07 dB) at half of them.
DEFAULT_HOP_FRACTION = 0.75
# Rows of B per model call when batch_windows is None: on the 2-core test machine the bundled
# model is slowest per row at B = 1, and batches larger than 2 were not clearly faster
# (benchmarks/results/offline.md), while they hold more memory and more work per call.
DEFAULT_BATCH_ROWS = 2
HOP_FRACTION_RANGE = (1 / 64, 0.875)  # at 7/8 the tapers are still W/8 long (0.5 s)
MAX_BATCH_WINDOWS = 64
_RESAMPLE_QUALITY = "HQ"


@dataclasses.dataclass(frozen=True)
class WindowPlan:
    """Where the windows lie, in model-rate samples.

    Window ``k`` covers ``[k * hop - pad, k * hop - pad + window)``; its central ``hop``
    samples are ``[k * hop, (k + 1) * hop)``. ``weights``: (window,) float64 taper.
    """

    window: int
    hop: int
    pad: int
    weights: np.ndarray

    def windows_for(self, samples: int) -> int:
        """Windows needed for a signal of ``samples`` model-rate samples (at least one)."""
        return max(1, -(-samples // self.hop))

    def start(self, index: int) -> int:
        """First model sample of window ``index`` (negative: in the leading silence)."""
        return index * self.hop - self.pad


def taper_weights(window: int, hop: int) -> np.ndarray:
    """(window,) float64 weights: raised-cosine ramps of ``T = min(window - hop, window // 2)``
    samples up and down, flat (1.0) in between.

    For ``hop <= window / 2`` this is a Hann window, ``sin^2(pi (n + 0.5) / window)``, whose
    copies shifted by ``window / k`` sum to a constant; for a longer hop it is a flat top
    whose copies shifted by ``hop`` sum to exactly one (``sin^2 + cos^2``). Callers divide by
    the summed weights, so other hops are exact too. The first and last samples weigh
    ``sin^2(pi / (4 T))``, next to nothing.
    """
    ramp_length = min(window - hop, window // 2)
    phase = (np.arange(ramp_length) + 0.5) / ramp_length * (np.pi / 2)
    ramp = np.sin(phase) ** 2
    weights = np.ones(window)
    weights[:ramp_length] = ramp
    weights[window - ramp_length :] = ramp[::-1]
    return weights


def plan_windows(contract: ModelContract, hop_fraction: float) -> WindowPlan:
    """The window plan for ``contract`` at a hop of ``hop_fraction`` of its window.

    Raises :class:`UserError` for a hop fraction outside :data:`HOP_FRACTION_RANGE`.
    """
    low, high = HOP_FRACTION_RANGE
    valid = isinstance(hop_fraction, (int, float)) and not isinstance(hop_fraction, bool)
    if not valid or not math.isfinite(hop_fraction) or not low <= hop_fraction <= high:
        raise UserError(
            f"hop_fraction must be a number in [1/64, {high:g}] (of the model's window), "
            f"got {hop_fraction!r}"
        )
    window = contract.window_samples
    hop = max(1, int(round(hop_fraction * window)))
    return WindowPlan(window, hop, (window - hop) // 2, taper_weights(window, hop))


class OverlapAddStream:
    """Overlap-add vocal separation of a stream of blocks, in memory bounded by a few windows.

    ``process(block)``: block (channels, n) float32 at ``sample_rate``, any ``n >= 0`` ->
    (channels, m) float32, the next ``m`` samples of the vocal estimate (``m`` may be 0 while
    the first windows fill). ``finish()`` -> (channels, rest), after which no more blocks are
    taken. Concatenated, the outputs have exactly as many samples as the inputs, and output
    sample ``t`` is the estimate for input sample ``t``; they equal
    :func:`separate_overlap_add` of the concatenated input bit for bit, whatever the blocks.

    stereo: ``batch`` runs every channel through the model; ``mid`` runs their mean once
    and gives every channel that estimate (half the compute for stereo).
    batch_windows: windows per model call (each with all channels: ``B = windows x
    channels``); the last call of a stream may hold fewer. None: enough windows for
    :data:`DEFAULT_BATCH_ROWS` rows (one stereo window, two mono ones).
    postfilter: a :data:`~stream_sep.postfilter.POSTFILTERS` name, applied to each window's
    estimate (all its channels together) before the taper.
    high_band_voice_removal: as in the streaming engine (:mod:`stream_sep.engine.highband`):
    each window's voice ratio r(t) is overlap-added like its estimate and resampled with it,
    and ``removal * r * (input - its round trip through the model rate)`` is added to the
    estimate at the stream rate.

    Non-finite input samples are replaced by silence (counted in
    ``nonfinite_input_samples``). A model that raises, returns a wrong shape or NaN/Inf
    raises :class:`ModelError` with its reason in one line; blocks returned before that are
    then part of a failed run (write them somewhere temporary).
    """

    def __init__(
        self,
        model,
        sample_rate: int,
        channels: int,
        *,
        hop_fraction: float = DEFAULT_HOP_FRACTION,
        batch_windows: int | None = None,
        stereo: str = "batch",
        postfilter: str = "none",
        high_band_voice_removal: float = 0.0,
    ):
        self.model = model
        self.contract = model.contract
        self.postfilter = PostFilter.of(postfilter)
        self.high_band_removal = highband.check_removal(high_band_voice_removal)
        self._vocals_index = self.contract.source_index("vocals")
        self.sample_rate = check_rate(sample_rate)
        self.channels = check_channels(channels)
        if stereo not in STEREO_CHOICES:
            raise UserError(f"--stereo must be one of {', '.join(STEREO_CHOICES)}, got {stereo!r}")
        self.stereo = stereo
        self.plan = plan_windows(self.contract, hop_fraction)
        self._model_channels = 1 if stereo == "mid" else self.channels
        if batch_windows is None:
            batch_windows = max(1, DEFAULT_BATCH_ROWS // self._model_channels)
        self.batch_windows = _check_batch_windows(batch_windows)
        self._high_band = highband.is_active(
            self.high_band_removal, self.sample_rate, self.contract.sample_rate
        )
        # Rows resampled back per model channel: the estimate, and with the high band the
        # voice ratio and the model-rate input (whose round trip is the input's low band).
        self._back_rows = 3 if self._high_band else 1
        self._to_model = self._resampler(self.sample_rate, self.contract.sample_rate)
        self._to_stream = self._resampler(
            self.contract.sample_rate, self.sample_rate, self._back_rows
        )
        plan = self.plan
        # Model-rate input not yet done with: column 0 is model sample _input_first.
        self._input = np.zeros((self._model_channels, plan.pad), np.float32)
        self._input_first = -plan.pad
        self._received = 0  # model-rate signal samples so far
        # Weighted estimates and summed weights: column 0 is the start of window _next_window.
        span = (self.batch_windows - 1) * plan.hop + plan.window
        self._sum = np.zeros((self._model_channels, span), np.float64)
        self._ratio_sum = np.zeros((self._model_channels if self._high_band else 0, span))
        self._weight_sum = np.zeros(span, np.float64)
        self._next_window = 0
        self._samples_in = 0  # stream-rate samples taken
        self._samples_out = 0  # stream-rate samples returned
        # Resampled rows not yet due: (back rows x model channels, n).
        self._held = np.zeros((self._back_rows * self._model_channels, 0), np.float32)
        # With the high band: the stream-rate input not yet released, (model channels, n).
        self._stream_input = np.zeros((self._model_channels, 0), np.float32)
        self._finished = False
        self.windows_run = 0
        self.model_rows = 0  # rows of B the model computed (windows x model channels)
        self.nonfinite_input_samples = 0

    # ------------------------------------------------------------------ public API
    @property
    def model_channels(self) -> int:
        """Rows per window in a model call: 1 for ``mid``, else the channel count."""
        return self._model_channels

    def process(self, block: np.ndarray) -> np.ndarray:
        """block: (channels, n) float32 -> (channels, m) float32 vocals, the next m samples."""
        if self._finished:
            raise RuntimeError("process() after finish(): this stream has ended")
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"block must be ({self.channels}, n), got {block.shape}")
        self._samples_in += block.shape[1]
        audio = self._model_input(block)
        if self._high_band:
            self._stream_input = np.concatenate([self._stream_input, audio], axis=1)
        self._take_input(audio, last=False)
        while self._ready_windows() >= self.batch_windows:
            self._run_batch(self.batch_windows)
        return self._release(last=False)

    def finish(self) -> np.ndarray:
        """Run the remaining windows -> (channels, rest) float32, the output's last samples."""
        if self._finished:
            raise RuntimeError("finish() called twice")
        self._finished = True
        empty = np.zeros((self._model_channels, 0), np.float32)
        self._take_input(empty, last=True)
        total = self.plan.windows_for(self._received)
        while self._next_window < total:
            self._run_batch(min(self.batch_windows, total - self._next_window))
        self._emit_model_rate(self._received - self._sum_first)
        return self._release(last=True)

    # ------------------------------------------------------------------ input
    @property
    def _sum_first(self) -> int:
        """Model sample of the accumulators' column 0."""
        return self.plan.start(self._next_window)

    def _resampler(self, from_rate: int, to_rate: int, rows_per_channel: int = 1):
        if from_rate == to_rate:
            return None
        channels = rows_per_channel * self._model_channels
        return soxr.ResampleStream(
            from_rate, to_rate, channels, dtype="float32", quality=_RESAMPLE_QUALITY
        )

    def _model_input(self, block: np.ndarray) -> np.ndarray:
        """(channels, n) -> (model channels, n) float32: sanitised, mixed to mid if asked."""
        audio = np.array(block, np.float32)  # a copy: the caller's block is left as it was
        finite = np.isfinite(audio)
        if not finite.all():
            self.nonfinite_input_samples += int(finite.size - np.count_nonzero(finite))
            audio[~finite] = 0.0
        if self._model_channels != self.channels:
            audio = audio.mean(axis=0, keepdims=True, dtype=np.float32)
        return audio

    def _take_input(self, audio: np.ndarray, last: bool) -> None:
        """Resample (model channels, n) to the model rate and append it to the input."""
        if self._to_model is not None:
            # soxr works on (samples, channels).
            audio = self._to_model.resample_chunk(np.ascontiguousarray(audio.T), last=last).T
        if audio.shape[1] == 0:
            return
        self._input = np.concatenate([self._input, audio], axis=1)
        self._received += audio.shape[1]

    def _ready_windows(self) -> int:
        """Windows from _next_window on whose every input sample has arrived."""
        plan = self.plan
        ready = (self._received + plan.pad - plan.window) // plan.hop + 1
        return max(0, ready - self._next_window)

    def _window_input(self, index: int, out: np.ndarray) -> None:
        """Copy window ``index``'s input into out (model channels, W); silence past the end."""
        first = self.plan.start(index) - self._input_first
        available = self._input[:, first : first + self.plan.window]
        out[:, : available.shape[1]] = available
        out[:, available.shape[1] :] = 0.0

    # ------------------------------------------------------------------ windows
    def _run_batch(self, count: int) -> None:
        """Separate windows [_next_window, _next_window + count) in one model call and add
        their weighted estimates; then pass on what no later window touches."""
        plan, rows_per_window = self.plan, self._model_channels
        first = self._next_window
        batch = np.empty((count * rows_per_window, plan.window), np.float32)
        for i in range(count):
            self._window_input(first + i, batch[i * rows_per_window : (i + 1) * rows_per_window])
        vocals = self._separate(batch, first, count)
        if self.postfilter.active:
            self._postfilter(vocals, batch, first)
        for i in range(count):
            columns = slice(i * plan.hop, i * plan.hop + plan.window)
            rows = slice(i * rows_per_window, (i + 1) * rows_per_window)
            estimate = vocals[rows]
            self._sum[:, columns] += estimate * plan.weights
            if self._high_band:
                ratio = highband.voice_ratio(estimate, batch[rows], np.arange(plan.window))
                self._ratio_sum[:, columns] += ratio * plan.weights
            self._weight_sum[columns] += plan.weights
        self.windows_run += count
        self.model_rows += batch.shape[0]
        done = count * plan.hop  # columns before the next window's start are final
        self._emit_model_rate(min(done, self._received - self._sum_first))
        self._shift(done)
        self._next_window += count
        drop = self.plan.start(self._next_window) - self._input_first
        self._input = self._input[:, drop:]
        self._input_first += drop

    def _separate(self, batch: np.ndarray, first: int, count: int) -> np.ndarray:
        """(B, W) float32 -> (B, W) vocal estimates; :class:`ModelError` if the model fails."""
        where = self._describe(first, count)
        try:
            sources = separate_rows(self.model, batch, channels=self._model_channels)
        except Exception as error:  # the model may fail in any way: one line for the user
            raise ModelError(f"the model failed on {where}: {first_line(error)}") from None
        expected = (batch.shape[0], len(self.contract.sources), self.plan.window)
        shape = getattr(sources, "shape", None)
        if shape != expected:
            raise ModelError(
                f"the model failed on {where}: it returned shape {shape}, expected {expected}"
            )
        vocals = np.asarray(sources[:, self._vocals_index], np.float32)
        if not np.isfinite(vocals).all():
            raise ModelError(f"the model failed on {where}: it returned NaN/Inf")
        return vocals

    def _postfilter(self, vocals: np.ndarray, batch: np.ndarray, first: int) -> None:
        """Filter each window's rows of vocals (B, W) in place, with its mixture from batch."""
        rows = self._model_channels
        for i in range(vocals.shape[0] // rows):
            window = slice(i * rows, (i + 1) * rows)
            vocals[window] = self.postfilter.apply(vocals[window], batch[window])
            if not np.isfinite(vocals[window]).all():
                where = self._describe(first + i, 1)
                raise ModelError(f"the post-filter returned NaN/Inf on {where}")

    def _describe(self, first: int, count: int) -> str:
        """'window 3 (8.1-12.2 s)' or 'windows 3-4 (...)', times in the signal."""
        rate, plan = self.contract.sample_rate, self.plan
        begin = max(0, plan.start(first)) / rate
        end = (plan.start(first + count - 1) + plan.window) / rate
        label = f"window {first}" if count == 1 else f"windows {first}-{first + count - 1}"
        return f"{label} ({begin:.1f}-{end:.1f} s)"

    def _shift(self, columns: int) -> None:
        """Drop the accumulators' first ``columns`` columns; new columns start at zero."""
        keep = self._weight_sum.shape[0] - columns
        for accumulator in (self._sum, self._ratio_sum):
            accumulator[:, :keep] = accumulator[:, columns:]
            accumulator[:, keep:] = 0.0
        self._weight_sum[:keep] = self._weight_sum[columns:]
        self._weight_sum[keep:] = 0.0

    # ------------------------------------------------------------------ output
    def _emit_model_rate(self, columns: int) -> None:
        """Normalise accumulator columns [0, columns) (signal samples only) and resample them
        to the stream rate into the held output."""
        skip = max(0, -self._sum_first)  # columns before signal sample 0
        if columns <= skip:
            return
        weights = self._weight_sum[skip:columns]
        rows = self._sum[:, skip:columns] / weights
        if self._high_band:
            # The input's columns are the accumulators': both start at _sum_first here.
            ratio = self._ratio_sum[:, skip:columns] / weights
            rows = np.concatenate([rows, ratio, self._input[:, skip:columns]])
        self._hold(rows.astype(np.float32), last=False)

    def _hold(self, rows: np.ndarray, last: bool) -> None:
        if self._to_stream is not None:
            rows = self._to_stream.resample_chunk(np.ascontiguousarray(rows.T), last=last).T
        if rows.shape[1]:
            self._held = np.concatenate([self._held, rows], axis=1)

    def _release(self, last: bool) -> np.ndarray:
        """The held output that is due: never more samples than were taken, and at the end
        exactly as many (the resampler's rounding is cut or padded with silence)."""
        if last:
            self._hold(np.zeros((self._held.shape[0], 0), np.float32), last=True)
            due = self._samples_in - self._samples_out
            if self._held.shape[1] < due:
                missing = due - self._held.shape[1]
                self._held = np.pad(self._held, ((0, 0), (0, missing)))
        else:
            due = min(self._held.shape[1], self._samples_in - self._samples_out)
        out, self._held = self._held[:, :due], self._held[:, due:]
        self._samples_out += due
        if self._high_band:
            out = self._add_high_band(out, due)
        if self._model_channels != self.channels:
            return np.repeat(out, self.channels, axis=0)
        return np.ascontiguousarray(out)

    def _add_high_band(self, held: np.ndarray, due: int) -> np.ndarray:
        """held: (3 x model channels, due) resampled estimate, ratio and model-rate input
        -> (model channels, due) estimate with the high band's share added."""
        vocals, ratio, low_band = np.split(held, 3)
        audio, self._stream_input = self._stream_input[:, :due], self._stream_input[:, due:]
        ratio = np.clip(ratio, 0.0, 1.0)  # the resampler may overshoot a little
        share = highband.high_band_share(self.high_band_removal, audio, low_band, ratio)
        return (vocals + share).astype(np.float32)


def separate_overlap_add(
    model,
    audio: np.ndarray,
    sample_rate: int,
    *,
    hop_fraction: float = DEFAULT_HOP_FRACTION,
    batch_windows: int | None = None,
    stereo: str = "batch",
    postfilter: str = "none",
    high_band_voice_removal: float = 0.0,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """The vocal estimate of a whole signal by overlap-add (see the module's docstring).

    audio: (channels, samples) float32 at ``sample_rate``. Returns (channels, samples)
    float32, time-aligned with ``audio``: the same samples as :class:`OverlapAddStream` fed
    in any blocks. progress: called with the fraction done (0..1] after each model call.
    Raises :class:`ModelError` (and returns nothing) if the model fails on any window.
    """
    if audio.ndim != 2:
        raise ValueError(f"audio must be (channels, samples), got {audio.shape}")
    stream = OverlapAddStream(
        model,
        sample_rate,
        audio.shape[0],
        hop_fraction=hop_fraction,
        batch_windows=batch_windows,
        stereo=stereo,
        postfilter=postfilter,
        high_band_voice_removal=high_band_voice_removal,
    )
    # Blocks of one model call's worth of hops, so progress moves once per call.
    hop_seconds = stream.plan.hop * stream.batch_windows / stream.contract.sample_rate
    block = max(1, int(hop_seconds * sample_rate))
    samples = audio.shape[1]
    parts = []
    for start in range(0, samples, block):
        parts.append(stream.process(audio[:, start : start + block]))
        if progress is not None:
            progress(min(start + block, samples) / samples * 0.99)
    parts.append(stream.finish())
    if progress is not None:
        progress(1.0)
    return np.concatenate(parts, axis=1)


def separate_blocks(
    model,
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    channels: int,
    *,
    hop_fraction: float = DEFAULT_HOP_FRACTION,
    batch_windows: int | None = None,
    stereo: str = "batch",
    postfilter: str = "none",
    high_band_voice_removal: float = 0.0,
) -> Iterator[np.ndarray]:
    """Stream a signal given as blocks through :class:`OverlapAddStream`.

    blocks: (channels, n) float32 arrays in order, for example a file read with soundfile:
    ``(b.T for b in soundfile.blocks(path, blocksize, dtype="float32", always_2d=True))``.
    Yields (channels, m) float32 vocal blocks (none empty) whose concatenation is aligned
    with the input and as long; memory stays at a few windows whatever the signal's length.
    """
    stream = OverlapAddStream(
        model,
        sample_rate,
        channels,
        hop_fraction=hop_fraction,
        batch_windows=batch_windows,
        stereo=stereo,
        postfilter=postfilter,
        high_band_voice_removal=high_band_voice_removal,
    )
    for block in blocks:
        out = stream.process(block)
        if out.shape[1]:
            yield out
    rest = stream.finish()
    if rest.shape[1]:
        yield rest


def _check_batch_windows(count) -> int:
    if (
        not isinstance(count, (int, np.integer))
        or isinstance(count, bool)
        or not 1 <= count <= MAX_BATCH_WINDOWS
    ):
        raise UserError(
            f"batch_windows must be an integer in [1, {MAX_BATCH_WINDOWS}], got {count!r}"
        )
    return int(count)
