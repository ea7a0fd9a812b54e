"""What a live run reports: the start-up line, the status line, the summary (its numbers,
:class:`Summary`, and its lines)."""

from __future__ import annotations

import dataclasses
import math
import sys

_ABSURD_LATENCY_S = 10.0


def level_db(peak: float) -> str:
    """A peak sample value as dBFS text, '-inf' for silence."""
    if not peak > 0.0:
        return " -inf"
    return f"{20.0 * math.log10(peak):5.1f}"


def device_latency(stream) -> tuple[float, float] | None:
    """(input, output) seconds as PortAudio reports them, or None when they are unusable.

    PortAudio's JACK backend reports ~89478 s (an unsigned -1) for clients that declare no
    port latency, so values outside [0, 10 s] are treated as unknown.
    """
    if stream is None:
        return None
    latency = stream.latency
    if isinstance(latency, (tuple, list)):
        pair = tuple(latency)
    elif type(stream).__name__ == "InputStream":  # one side only: the other has no buffer
        pair = (latency, 0.0)
    elif type(stream).__name__ == "OutputStream":
        pair = (0.0, latency)
    else:
        pair = (latency, latency)
    if not all(0.0 <= float(value) <= _ABSURD_LATENCY_S for value in pair):
        return None
    if len(pair) == 1:
        return (float(pair[0]), 0.0)
    return (float(pair[0]), float(pair[1]))


def startup_line(model, engine, route: str, rate: int, blocksize: int, stream) -> str:
    breakdown = " + ".join(f"{k} {v:.3f}" for k, v in engine.latency_breakdown.items())
    text = (
        f"model {model.path.name} on {model.provider} ({model.contract.sample_rate} Hz) | "
        f"{route} at {rate} Hz, {engine.channels} ch{_stereo(engine)}, block "
        f"{blocksize or 'auto'} | "
        f"algorithmic latency {engine.latency_seconds:.3f} s ({breakdown})"
    )
    devices = device_latency(stream)
    if devices is None:
        if stream is not None:
            text += " | end-to-end: PortAudio reports no usable device latency"
    else:
        total = engine.latency_seconds + devices[0] + devices[1]
        text += (
            f" | end-to-end {total:.3f} s (device buffers: in {devices[0] * 1000:.1f} ms, "
            f"out {devices[1] * 1000:.1f} ms, as PortAudio reports them)"
        )
    return text


def snapshot(
    engine, processor, peaks: tuple[float, float], seconds: float, xrun_note: str | None = None
) -> dict:
    """The live numbers, once per tick, for the status line and the panel alike (JSON-ready).

    peaks: input and output peaks since the last tick; xrun_note: the short text of
    :func:`xrun_warning`. ``processor`` may carry a microphone (``processor.mic``).
    """
    stats = engine.stats
    shedding = engine.shedding
    numbers = {
        "seconds": round(seconds, 2),
        "input_peak": float(peaks[0]),
        "output_peak": float(peaks[1]),
        "mode": engine.mode,
        "vocal_level": engine.vocal_level,
        "key": engine.key,
        "latency": engine.latency_seconds,
        "latency_samples": engine.latency_samples,
        "latency_terms": engine.latency_breakdown,
        "inference_ms": stats.inference_last_s * 1000,
        "load": stats.load,
        "misses": stats.deadline_misses,
        "shed": shedding.shed if shedding is not None else 0,
        "xruns": processor.xruns,
        "xrun_note": xrun_note,
    }
    mic = getattr(processor, "mic", None)
    if mic is not None:
        numbers["mic_level"] = mic.level
        numbers["mic_peak"] = float(mic.take_peak())
        numbers["mic_latency"] = mic.latency_seconds
    return numbers


def status_line(numbers: dict) -> str:
    """One line from :func:`snapshot`'s numbers."""
    level = f" {numbers['vocal_level']:.1f}" if numbers["mode"] == "karaoke" else ""
    key = "" if numbers["key"] is None else f" key {numbers['key']:+d}"
    mic = ""
    if "mic_level" in numbers:
        mic = f" mic {level_db(numbers['mic_peak'])} dB x{numbers['mic_level']:.1f} |"
    note = numbers["xrun_note"]
    xruns = f"xruns {numbers['xruns']}" + (f" ({note})" if note else "")
    shed = f" shed {numbers['shed']}" if numbers["shed"] else ""
    return (
        f"{numbers['seconds']:7.1f} s | in {level_db(numbers['input_peak'])} dB out "
        f"{level_db(numbers['output_peak'])} dB |{mic} {numbers['mode']}{level}{key} | "
        f"inference {numbers['inference_ms']:5.0f} ms load {numbers['load']:4.2f} | "
        f"misses {numbers['misses']}{shed} | {xruns} | latency {numbers['latency']:.3f} s"
    )


# The stop reason of a run the engine's failure stopped: :func:`summarize` words it
# (:func:`failure_cause`) from the counts it reports, taken when the run is over. Worded when
# the failure is noticed, it would miss the windows that fail while the output fades out.
ENGINE_FAILED = "engine failed"


def failure_cause(engine, stats=None) -> str:
    """Why the engine latched ``failed``, as the summary's stop reason.

    The engine's :attr:`~stream_sep.engine.Separator.failure_reason` names one of three
    causes; the summary says which, with the count that proves it:
    ``inference too slow, N deadline misses`` (windows computed, but late),
    ``model hung`` (a model call that never returned) or
    ``model failed, N failures: <last error>`` (calls that raised or returned garbage).
    The count is that of ``stats`` (default: the engine's own, still counting).
    """
    reason, stats = engine.failure_reason, stats if stats is not None else engine.stats
    if "cannot keep up" in reason:
        return f"inference too slow, {stats.deadline_misses} deadline misses"
    if "hung" in reason:
        return "model hung"
    last_error = reason.partition("last error: ")[2]
    return f"model failed, {stats.model_failures} failures" + (
        f": {last_error}" if last_error else ""
    )


# Xruns are worth a warning above this share of callbacks, from this many on (one or two at
# start-up are common and harmless).
XRUN_SHARE_LIMIT = 0.01
XRUN_COUNT_LIMIT = 3
_SMALL_BLOCK_SECONDS = 0.01  # a block shorter than 10 ms is a likely cause of xruns


def xrun_warning(xruns: int, callbacks: int, rate: int, blocksize: int) -> tuple[str, str] | None:
    """(short, long) texts when more than 1% of the audio callbacks (and at least 3) reported
    an over/underflow, naming the likely cause; None otherwise.

    blocksize: the --blocksize asked (0: the device's choice).
    """
    if xruns < XRUN_COUNT_LIMIT or xruns <= XRUN_SHARE_LIMIT * callbacks:
        return None
    share = f"{xruns / max(callbacks, 1):.0%} of callbacks"
    small = _power_of_two_at_least(_SMALL_BLOCK_SECONDS * rate)
    if 0 < blocksize < small:
        return (
            f"{share}: --blocksize too small, try {small}",
            f"{xruns} xruns ({share}): --blocksize {blocksize} ({blocksize / rate * 1000:.2f} "
            f"ms) is too small for this machine; try --blocksize {small}, or leave it out",
        )
    larger = max(_power_of_two_at_least(2 * blocksize), 2 * small)
    return (
        f"{share}: machine too busy",
        f"{xruns} xruns ({share}): the machine is too busy to serve the audio device in time "
        f"(other programs, or the model on the same CPU cores); close them, or try a larger "
        f"--blocksize such as {larger}",
    )


def _power_of_two_at_least(value: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(value, 1.0))))


@dataclasses.dataclass(frozen=True)
class Summary:
    """The numbers of a finished live run, as its summary lines print them.

    reason: why it stopped ('end of input', 'duration reached', 'q', 'interrupted', 'stop
    requested', 'stream died', 'stream stalled' or the model's cause); seconds and frames:
    what the stream played; windows: submitted to the model (``windows_run`` computed,
    ``windows_skipped`` not); inference_*_s: seconds per window; load: inference time / hop;
    latency_seconds/latency_samples: the engine's fixed delay; ok: False when the stream, the
    model or the input file failed; lines: the summary as text, one line each.

    dry_ranges: ((start, stop), ...) the output samples (positions since the stream started,
    the first sample the output device got being 0) that a window without an estimate
    touched, so they played the dry signal or a fade to it; lighter_ranges: those met by
    windows run a cheaper way to shed work; everywhere else the output is the separation as
    configured. unrecorded_windows: such windows beyond the record's capacity (0: the ranges
    are complete). See :meth:`stream_sep.engine.Separator.dry_ranges`.
    """

    reason: str
    seconds: float
    frames: int
    windows: int
    windows_run: int
    windows_skipped: int
    deadline_misses: int
    model_failures: int
    xruns: int
    shed: int
    inference_mean_s: float
    inference_max_s: float
    load: float
    latency_seconds: float
    latency_samples: int
    ok: bool
    lines: tuple[str, ...]
    dry_ranges: tuple[tuple[int, int], ...] = ()
    lighter_ranges: tuple[tuple[int, int], ...] = ()
    unrecorded_windows: int = 0


def summarize(engine, processor, seconds: float, reason: str, extra: list[str], ok: bool):
    """A :class:`Summary` of a finished run of ``engine`` through ``processor``. Its numbers,
    lines and a stop reason of :data:`ENGINE_FAILED` (worded by :func:`failure_cause`) all
    come from one copy of the engine's counts: a model call left running may still count."""
    stats, shedding = dataclasses.replace(engine.stats), engine.shedding
    if reason == ENGINE_FAILED:
        reason = failure_cause(engine, stats)
    return Summary(
        reason=reason,
        seconds=seconds,
        frames=processor.frames,
        windows=stats.windows_submitted,
        windows_run=stats.windows_run,
        windows_skipped=stats.windows_skipped,
        deadline_misses=stats.deadline_misses,
        model_failures=stats.model_failures,
        xruns=processor.xruns,
        shed=shedding.shed if shedding is not None else 0,
        inference_mean_s=stats.inference_mean_s,
        inference_max_s=stats.inference_max_s,
        load=stats.load,
        latency_seconds=engine.latency_seconds,
        latency_samples=engine.latency_samples,
        ok=ok,
        lines=tuple(summary_lines(engine, processor, seconds, reason, extra, stats)),
        dry_ranges=tuple(engine.dry_ranges()),
        lighter_ranges=tuple(engine.lighter_ranges()),
        unrecorded_windows=engine.unrecorded_windows,
    )


def summary_lines(
    engine, processor, seconds: float, reason: str, extra: list[str], stats=None
) -> list[str]:
    """The summary as text, one line each; the counts of ``stats`` (default: the engine's)."""
    stats = stats if stats is not None else engine.stats
    lines = [
        f"stopped ({reason}) after {seconds:.1f} s: {processor.frames} frames, "
        f"{stats.windows_submitted} windows ({stats.windows_run} run, "
        f"{stats.windows_skipped} skipped), {stats.deadline_misses} deadline misses, "
        f"{stats.model_failures} model failures, {processor.xruns} xruns",
        f"inference mean {stats.inference_mean_s * 1000:.1f} ms, max "
        f"{stats.inference_max_s * 1000:.1f} ms, load {stats.load:.2f}; latency "
        f"{engine.latency_seconds:.3f} s ({engine.latency_samples} samples)",
    ]
    shedding = engine.shedding
    if shedding is not None and shedding.shed:
        lighter = "".join(f"{runs} run {way.name}, " for way, runs in shedding.cheaper_runs())
        lines.append(
            f"overload: {shedding.shed} windows shed to keep the latency ({lighter}"
            f"{shedding.dropped} dropped as they could not finish "
            f"within the {shedding.allowance:.3f} s compute allowance; they played the dry "
            f"signal); the machine was busier than at start-up"
        )
    shifter = getattr(engine, "key_shift", None)
    if shifter is not None:
        lines.append(
            f"key {shifter.key:+d} at the end; key shifter (Rubber Band) "
            f"{shifter.cpu_per_audio_second * 1000:.0f} ms CPU per second of audio shifted, "
            f"{shifter.shifted_samples / engine.sample_rate:.1f} s shifted, delay "
            f"{shifter.latency_seconds * 1000:.1f} ms, {shifter.underruns} late samples"
        )
    if processor.muted_blocks or stats.nonfinite_input_samples:
        lines.append(
            f"safety: {processor.muted_blocks} blocks muted, "
            f"{stats.nonfinite_input_samples} NaN/Inf input samples replaced by silence"
        )
    return lines + extra


class StatusPrinter:
    """The live status line: redrawn in place on a terminal, one line a second otherwise."""

    def __init__(self, enabled: bool, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = _isatty(self.stream)
        self._last_plain = -math.inf
        self._drawn = False

    def show(self, text: str, now: float) -> None:
        if not self.enabled:
            return
        if self.tty:
            print("\r" + text + "\x1b[K", end="", file=self.stream, flush=True)
            self._drawn = True
        elif now - self._last_plain >= 1.0:
            print(text, file=self.stream, flush=True)
            self._last_plain = now

    def clear(self) -> None:
        if self._drawn:
            print(file=self.stream, flush=True)
            self._drawn = False


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _stereo(engine) -> str:
    """' (mid channel)' when a stereo stream runs the model on its mid channel only."""
    return " (mid channel)" if engine.channels > 1 and engine.stereo == "mid" else ""
