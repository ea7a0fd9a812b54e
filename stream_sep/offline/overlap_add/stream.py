"""The offline overlap-add stream: blocks in, the aligned vocal estimate out.

See :mod:`stream_sep.offline.overlap_add` for the plan. :class:`OverlapAddStream` resamples the
input once to the model rate, cuts windows (:mod:`.plan`), runs them in batches
(:mod:`.batches`), overlap-adds the tapered estimates (:mod:`.accumulator`) and resamples
them back once, cut to the input's length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from stream_sep.dsp.postfilter import PostFilter
from stream_sep.engine import highband
from stream_sep.engine.config import replaced_options
from stream_sep.engine.plan import check_channels, check_rate
from stream_sep.errors import UserError
from stream_sep.models.families import check_denoise
from stream_sep.offline.overlap_add.accumulator import OverlapSum
from stream_sep.offline.overlap_add.batches import WindowBatches
from stream_sep.offline.overlap_add.output import HeldOutput, resampler
from stream_sep.offline.overlap_add.plan import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_HOP_FRACTION,
    MAX_BATCH_WINDOWS,
    STEREO_CHOICES,
    plan_windows,
)


@dataclasses.dataclass(frozen=True)
class OverlapAddConfig:
    """The options of the throughput plan (see :class:`OverlapAddStream` for each)."""

    hop_fraction: float = DEFAULT_HOP_FRACTION
    batch_windows: int | None = None
    stereo: str = "batch"
    postfilter: str = "none"
    high_band_voice_removal: float = 0.0
    denoise: bool = False

    @classmethod
    def of(cls, config: OverlapAddConfig | None = None, **options) -> OverlapAddConfig:
        """``config`` (default: all defaults) with ``options`` replaced; a name that is not
        an option is one line."""
        return replaced_options(cls, config, options, "overlap-add")


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
    postfilter: a :data:`~stream_sep.dsp.postfilter.POSTFILTERS` name, applied to each window's
    estimate (all its channels together) before the taper.
    high_band_voice_removal: as in the streaming engine (:mod:`stream_sep.engine.highband`):
    each window's voice ratio r(t) is overlap-added like its estimate and resampled with it,
    and ``removal * r * (input - its round trip through the model rate)`` is added to the
    estimate at the stream rate.
    denoise: each window separated as it is and sign-inverted, the two estimates averaged
    (:func:`~stream_sep.models.families.separate_rows`; twice the model's compute).
    These come as ``config`` (an :class:`OverlapAddConfig`), or as keywords replacing its
    fields.

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
        config: OverlapAddConfig | None = None,
        **options,
    ):
        config = OverlapAddConfig.of(config, **options)
        stereo, batch_windows = config.stereo, config.batch_windows
        self.model = model
        self.contract = model.contract
        self.postfilter = PostFilter.of(config.postfilter)
        self.high_band_removal = highband.check_removal(config.high_band_voice_removal)
        self.denoise = check_denoise(config.denoise)
        self.sample_rate = check_rate(sample_rate)
        self.channels = check_channels(channels)
        if stereo not in STEREO_CHOICES:
            raise UserError(f"--stereo must be one of {', '.join(STEREO_CHOICES)}, got {stereo!r}")
        self.stereo = stereo
        self.plan = plan_windows(self.contract, config.hop_fraction)
        self._model_channels = 1 if stereo == "mid" else self.channels
        if batch_windows is None:
            batch_windows = max(1, DEFAULT_BATCH_ROWS // self._model_channels)
        self.batch_windows = _check_batch_windows(batch_windows)
        model_rate = self.contract.sample_rate
        self._output = HeldOutput(
            model_rate, self.sample_rate, self._model_channels, self.channels,
            self.high_band_removal,
        )  # fmt: skip
        self._to_model = resampler(self.sample_rate, model_rate, self._model_channels)
        plan = self.plan
        # Model-rate input not yet done with: column 0 is model sample _input_first.
        self._input = np.zeros((self._model_channels, plan.pad), np.float32)
        self._input_first = -plan.pad
        self._received = 0  # model-rate signal samples so far
        # Weighted estimates and summed weights: column 0 is the start of window _next_window.
        span = (self.batch_windows - 1) * plan.hop + plan.window
        self._sums = OverlapSum(plan, self._model_channels, span, self._output.high_band)
        self._batches = WindowBatches(
            model, plan, self._model_channels, self.postfilter, self.denoise
        )
        self._next_window = 0
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
        audio = self._model_input(block)
        self._output.take(audio)
        self._take_input(audio, last=False)
        while self._ready_windows() >= self.batch_windows:
            self._run_batch(self.batch_windows)
        return self._output.release(last=False)

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
        return self._output.release(last=True)

    # ------------------------------------------------------------------ input
    @property
    def _sum_first(self) -> int:
        """Model sample of the accumulators' column 0."""
        return self.plan.start(self._next_window)

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
        vocals = self._batches.run(batch, first)
        for i in range(count):
            rows = slice(i * rows_per_window, (i + 1) * rows_per_window)
            ratio = None
            if self._output.high_band:
                ratio = highband.voice_ratio(vocals[rows], batch[rows], np.arange(plan.window))
            self._sums.add(i * plan.hop, vocals[rows], ratio)
        self.windows_run += count
        self.model_rows += batch.shape[0]
        done = count * plan.hop  # columns before the next window's start are final
        self._emit_model_rate(min(done, self._received - self._sum_first))
        self._sums.shift(done)
        self._next_window += count
        drop = self.plan.start(self._next_window) - self._input_first
        self._input = self._input[:, drop:]
        self._input_first += drop

    # ------------------------------------------------------------------ output
    def _emit_model_rate(self, columns: int) -> None:
        """Normalise accumulator columns [0, columns) (signal samples only) and resample them
        to the stream rate into the held output."""
        skip = max(0, -self._sum_first)  # columns before signal sample 0
        if columns <= skip:
            return
        rows, ratio = self._sums.normalised(skip, columns)
        if self._output.high_band:
            # The input's columns are the accumulators': both start at _sum_first here.
            rows = np.concatenate([rows, ratio, self._input[:, skip:columns]])
        self._output.hold(rows.astype(np.float32))


def separate_overlap_add(
    model,
    audio: np.ndarray,
    sample_rate: int,
    config: OverlapAddConfig | None = None,
    *,
    progress: Callable[[float], None] | None = None,
    **options,
) -> np.ndarray:
    """The vocal estimate of a whole signal by overlap-add (see the module's docstring).

    audio: (channels, samples) float32 at ``sample_rate``. Returns (channels, samples)
    float32, time-aligned with ``audio``: the same samples as :class:`OverlapAddStream` fed
    in any blocks. config and options: as for :class:`OverlapAddStream`. progress: called
    with the fraction done (0..1] after each model call.
    Raises :class:`ModelError` (and returns nothing) if the model fails on any window.
    """
    if audio.ndim != 2:
        raise ValueError(f"audio must be (channels, samples), got {audio.shape}")
    stream = OverlapAddStream(model, sample_rate, audio.shape[0], config, **options)
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
    config: OverlapAddConfig | None = None,
    **options,
) -> Iterator[np.ndarray]:
    """Stream a signal given as blocks through :class:`OverlapAddStream`.

    blocks: (channels, n) float32 arrays in order, for example a file read with soundfile:
    ``(b.T for b in soundfile.blocks(path, blocksize, dtype="float32", always_2d=True))``.
    Yields (channels, m) float32 vocal blocks (none empty) whose concatenation is aligned
    with the input and as long; memory stays at a few windows whatever the signal's length.
    config and options: as for :class:`OverlapAddStream`.
    """
    stream = OverlapAddStream(model, sample_rate, channels, config, **options)
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
