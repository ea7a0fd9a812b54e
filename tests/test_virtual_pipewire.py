"""``--output virtual`` through PipeWire's PulseAudio layer (``pipewire-pulse``), with
WirePlumber linking the streams: a private, headless server per module
(tests/pipewire_harness.py).

PipeWire runs its graph at one rate, 48000 Hz unless configured otherwise: the null sink is
made at the stream's rate, but the source apps record is offered at the graph's rate. A
stream at 48000 Hz (a 48 kHz file, or ``--samplerate 48000``) therefore reaches ``parec``
sample for sample: those runs go in this process with the engine tapped, and every sound
parec records must be the engine's output for its input at its position, checked as for
PulseAudio (tests/test_virtual_output.py's :func:`check_bypass`). A stream at 44100 Hz is
resampled by PipeWire: the recording is then compared band by band with soxr's resampling
of the file, and stream-sep says so in one line.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from scipy import optimize
from scipy import signal as scipy_signal

from stream_sep.engine.config import DEFAULT_FADE_SECONDS
from tests.live_check import tap_engines
from tests.pipewire_harness import private_server, version
from tests.pulse_harness import pactl
from tests.test_virtual_output import (
    READY,
    SINK,
    SOURCE,
    check_a_killed_run_is_cleaned_up_by_the_next,
    check_bypass,
    check_sigterm_removes_the_modules,
    engine_latency,
    our_modules,
    play_in_this_process,
    stream_sep,
    wait_for_line,
)

GRAPH_RATE = 48000  # PipeWire's default clock rate
FILE_RATE = 44100
BAND = 15000  # Hz: below it PipeWire's resampler keeps the sound (compare_in_band checks it)
PIECE = 4800  # 0.1 s at the graph rate: the recording is compared piece by piece
TAIL = 64  # frames the recording's end may differ from the file's (the resampler's filter)
GAP = 64  # a run of this many silent frames inside a piece: the stream was late there


@pytest.fixture(scope="module")
def server():
    """A private PipeWire server's PulseAudio address; stopped at the end of the module."""
    with private_server("stream-sep-pipewire-virtual-") as address:
        print(f"PipeWire {version()}")
        yield address


def noise_file(folder: Path, rate: int) -> tuple[Path, np.ndarray]:
    """A 16-bit stereo WAV of 4 s of noise (exact in float32): (path, (2, samples) float32)."""
    rng = np.random.default_rng(11)
    samples = rng.integers(-8000, 8000, (4 * rate, 2)).astype(np.int16)
    path = folder / f"song-{rate}.wav"
    sf.write(path, samples, rate, subtype="PCM_16")
    return path, samples.T.astype(np.float32) / 32768.0


@pytest.fixture(scope="module")
def song_48k(tmp_path_factory):
    return noise_file(tmp_path_factory.mktemp("pipewire"), GRAPH_RATE)


@pytest.fixture(scope="module")
def song_44k(tmp_path_factory):
    return noise_file(tmp_path_factory.mktemp("pipewire"), FILE_RATE)


class Recorder:
    """``parec`` on the virtual source, raw float32 at the graph's rate, into a file."""

    def __init__(self, address: str, folder: Path):
        self.address, self.path = address, folder / "parec.raw"
        self.moved_to: str | None = None  # the source parec records once the run has ended
        self.handle = self.path.open("wb")
        self.process = subprocess.Popen(
            [
                "parec",
                f"--device={SOURCE}",
                "--raw",
                "--format=float32le",
                f"--rate={GRAPH_RATE}",
                "--channels=2",
                "--latency-msec=50",  # small fragments: all is written before it is stopped
            ],
            stdout=self.handle,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PULSE_SERVER=address),
        )

    def source_now(self) -> str | None:
        """The name of the source parec records now (PipeWire moves a recording stream
        whose source is removed); None while it is on none."""
        outputs = pactl(self.address, "list", "short", "source-outputs").stdout.splitlines()
        index = outputs[0].split("\t")[1] if len(outputs) == 1 else None
        for line in pactl(self.address, "list", "short", "sources").stdout.splitlines():
            if line.split("\t")[0] == index:
                return line.split("\t")[1]
        return None

    def moved(self, timeout: float = 20.0) -> str:
        """Once the source is gone: wait until the server has moved parec's stream and
        parec has written 0.25 s more (what it records there comes after everything the
        virtual source gave it); the source it records now."""
        deadline = time.monotonic() + timeout
        while (now := self.source_now()) in (SOURCE, None):
            if time.monotonic() > deadline:
                raise AssertionError(f"parec was not moved from {SOURCE!r} (now on {now!r})")
            time.sleep(0.05)
        written = self.path.stat().st_size
        while self.path.stat().st_size < written + GRAPH_RATE // 4 * 8:
            if time.monotonic() > deadline:
                raise AssertionError(f"parec stopped writing once moved to {now!r}")
            time.sleep(0.05)
        return now

    def finish(self) -> np.ndarray:
        """(2, frames) float32, once the run has ended. PipeWire does not end parec when the
        source goes (it moves the stream, to :attr:`moved_to`): once moved and written on
        (:meth:`moved`), it is stopped here, and loses what it has not written yet."""
        self.moved_to = self.moved()
        self.process.terminate()
        self.process.wait(timeout=10)
        self.handle.close()
        raw = np.fromfile(self.path, dtype="<f4")
        return raw[: raw.size // 2 * 2].reshape(-1, 2).T


def play(server, path, tmp_path, *args, model):
    """stream-sep FILE -> virtual (bypass) while parec records the source; (recording,
    stderr, return code, the source parec was moved to once the run ended)."""
    process = stream_sep(
        server, "--input", str(path), "--output", "virtual", "--mode", "bypass", *args, model=model
    )
    lines = wait_for_line(process, READY)
    recorder = Recorder(server, tmp_path)
    _, rest = process.communicate(timeout=120)
    recorded = recorder.finish()
    return recorded, "".join(lines) + rest, process.returncode, recorder.moved_to


def play_tapped(server, path, folder, monkeypatch, capsys, *args, model):
    """stream-sep FILE -> virtual (bypass) run in this process with its engine tapped
    (tests/test_virtual_output.py's :func:`play_in_this_process`), parec recording the
    source at the graph's rate from when it appears: (return code, stderr, recording (2, m)
    float32, the engines the run built, the source parec was moved to once the run ended)."""
    engines, recorders = tap_engines(monkeypatch), []

    def recorder(address: str, folder: Path) -> Recorder:
        recorders.append(Recorder(address, folder))
        return recorders[-1]

    argv = ["--input", str(path), "--mode", "bypass", *args, "--model", str(model)]
    rc, err, recorded = play_in_this_process(
        server, monkeypatch, capsys, folder, argv, recorder=recorder
    )
    return rc, err, recorded, engines, recorders[0].moved_to


def assert_gone(server: str) -> None:
    assert our_modules(server) == []
    listing = (
        pactl(server, "list", "short", "sources").stdout
        + pactl(server, "list", "short", "sinks").stdout
    )
    assert SINK not in listing and SOURCE not in listing, listing


def resampled_line(rate: int) -> str:
    return (
        f"stream-sep: virtual microphone: the sound server resamples the stream's {rate} Hz to "
        f"{GRAPH_RATE} Hz, the rate it offers the source at; --samplerate {GRAPH_RATE} would "
        "reach apps without resampling"
    )


@pytest.mark.slow
def test_a_stream_at_the_graph_rate_arrives_exactly_and_is_gone_after(
    server, song_48k, half_path, tmp_path, monkeypatch, capsys
):
    """Every sound parec records, from wherever it joins (the output's fade-in too, when it
    records it), is the engine's output at its position (:func:`check_bypass`)."""
    path, samples = song_48k
    rc, err, recorded, engines, moved_to = play_tapped(
        server, path, tmp_path, monkeypatch, capsys, model=half_path
    )
    assert rc == 0, err
    assert f"(2 ch {GRAPH_RATE} Hz float32); stream-sep plays into the sink '{SINK}'" in err
    assert "resamples" not in err, err
    (engine,) = engines
    check_bypass(recorded, engine, err, samples)
    assert_gone(server)
    # An app still recording the virtual microphone when it goes is moved to the default
    # source (here the dummy sink's monitor; on a desktop, the default microphone).
    assert moved_to == "auto_null.monitor"


@pytest.mark.slow
def test_samplerate_of_the_graph_reaches_apps_without_resampling(
    server, song_44k, half_path, tmp_path, monkeypatch, capsys
):
    """As above, the stream at ``--samplerate 48000``: stream-sep resamples the file with
    soxr (the same samples as for the whole file), which is what the engine must hear."""
    path, samples = song_44k
    rc, err, recorded, engines, _ = play_tapped(
        server,
        path,
        tmp_path,
        monkeypatch,
        capsys,
        "--samplerate",
        str(GRAPH_RATE),
        model=half_path,
    )
    assert rc == 0, err
    assert f"(2 ch {GRAPH_RATE} Hz float32)" in err
    assert "resamples" not in err, err
    resampled = soxr.resample(np.ascontiguousarray(samples.T), FILE_RATE, GRAPH_RATE, "HQ").T
    (engine,) = engines
    check_bypass(recorded, engine, err, np.ascontiguousarray(resampled, np.float32))
    assert_gone(server)


@pytest.mark.slow
def test_another_rate_is_resampled_by_pipewire_and_said_so(server, song_44k, half_path, tmp_path):
    path, samples = song_44k
    recorded, err, rc, _ = play(server, path, tmp_path, model=half_path)
    assert rc == 0, err
    assert f"(2 ch {FILE_RATE} Hz float32)" in err
    assert resampled_line(FILE_RATE) in err.splitlines(), err
    # What stream-sep played (at 44100 Hz from the latency on), as soxr would take it to the
    # graph's rate; the fade-in at the stream's start is left out of the level check.
    latency = round(engine_latency(err) * GRAPH_RATE / FILE_RATE)
    resampled = soxr.resample(np.ascontiguousarray(samples.T), FILE_RATE, GRAPH_RATE, "HQ").T
    expected = np.pad(resampled, ((0, 0), (latency, 0)))
    faded = latency + round(DEFAULT_FADE_SECONDS * GRAPH_RATE)
    compared = compare_in_band(recorded, expected, faded)
    assert_gone(server)
    print(f"PipeWire {version()} resampling {FILE_RATE} -> {GRAPH_RATE} Hz: {compared}")


def lowpass(audio: np.ndarray) -> np.ndarray:
    """audio: (channels, samples) float32, without what lies above BAND."""
    sos = scipy_signal.butter(12, BAND, fs=GRAPH_RATE, output="sos")
    return scipy_signal.sosfiltfilt(sos, audio, axis=1)


def compare_in_band(recorded: np.ndarray, expected: np.ndarray, faded: int) -> str:
    """The recording, cut into pieces of PIECE frames, below BAND: every sounding piece past
    the fade-in lies in ``expected`` in order, with a correlation of 0.9999 or more and the
    same level within 0.01 dB, unless it straddles a break (the stream late there: the
    server's silence, or samples dropped), where the pieces on either side are found at
    different offsets. The pieces reach the end of the sound and cover half of it at least.

    These tolerances are the resampling's, not the machine's load: PipeWire's resampler is
    not soxr's (it differs near and above BAND, and resumes at another phase after a break,
    :func:`aligned`), so resampled audio is compared by correlation and level, not sample
    for sample; they do not grow with the number of breaks. (The streams at the graph's
    rate, which nothing resamples, are checked exactly: :func:`check_bypass`.) Returns a
    summary with the levels above BAND relative to ``expected``'s (what the resampler
    changes there)."""
    sound_end = expected.shape[1] - int(np.argmax(np.any(expected[:, ::-1] != 0, axis=0)))
    expected = np.pad(expected, ((0, 0), (0, PIECE)))  # room for the resampler's ringing
    low_recorded, low_expected = lowpass(recorded), lowpass(expected)
    fitting, straddling, pieces, references, worst = [], [], [], [], (1.0, 0.0)
    for at in range(0, recorded.shape[1] - PIECE, PIECE):
        piece = recorded[:, at : at + PIECE]
        if not np.any(piece) or has_gap(recorded[:, max(0, at - 256) : at + PIECE + 256]):
            continue
        low = low_recorded[:, at : at + PIECE]
        score = scipy_signal.correlate(low_expected[0], low[0], mode="valid", method="fft")
        where = int(np.argmax(score))
        if where < faded:
            fitting.append((at, where))
            continue
        reference = aligned(low, low_expected, where)
        correlation = min(np.corrcoef(low[c], reference[c])[0, 1] for c in range(2))
        level = 10 * np.log10(np.sum(low**2) / np.sum(reference**2))
        if correlation < 0.9999 or abs(level) > 0.01:
            straddling.append((at, where, correlation, level))
            continue
        fitting.append((at, where))
        worst = (min(worst[0], correlation), max(worst[1], abs(level)))
        pieces.append(piece)
        references.append(expected[:, where : where + PIECE])
    assert pieces, "nothing of the expected signal was recorded"
    places = [where for _, where in fitting]
    assert places == sorted(set(places)), fitting  # in order, nothing twice
    for at, *found in straddling:
        before = [w - a for a, w in fitting if a < at][-1:]
        after = [w - a for a, w in fitting if a > at][:1]
        assert before and after and before != after, (at, *found, before, after)
    # the recording's last sound is the end of the file's (the resampler's ringing aside)
    last = recorded.shape[1] - int(np.argmax(np.any(recorded[:, ::-1] != 0, axis=0)))
    tail = low_recorded[0, last - PIECE // 4 : last]
    score = scipy_signal.correlate(low_expected[0], tail, mode="valid", method="fft")
    assert abs(int(np.argmax(score)) + PIECE // 4 - sound_end) <= TAIL, (last, sound_end)
    assert PIECE * len(places) >= 0.5 * (places[-1] - places[0]), places
    bands = band_levels(np.concatenate(pieces, axis=1), np.concatenate(references, axis=1))
    return (
        f"{len(pieces)} pieces of {PIECE} frames match below {BAND} Hz (lowest correlation "
        f"{worst[0]:.7f}, level within {worst[1]:.4f} dB), {len(straddling)} straddle a "
        f"break; level relative to soxr's: {bands}"
    )


def aligned(low: np.ndarray, low_expected: np.ndarray, where: int) -> np.ndarray:
    """The PIECE frames of ``low_expected`` (2, n) from ``where``, delayed by the fraction of
    a sample (-1 to 1) that fits ``low`` (2, PIECE) best: after a late stream PipeWire's
    resampler resumes at another phase, so the recording is shifted by a fraction of a
    sample from there on. Both are below BAND, so a delay in the spectrum is exact."""
    pad = 256
    start = max(0, where - pad)
    stretch = low_expected[:, start : where + PIECE + pad]
    spectrum = np.fft.rfft(stretch, axis=1)
    frequencies = np.fft.rfftfreq(stretch.shape[1])

    def delayed(delay: float) -> np.ndarray:
        turned = spectrum * np.exp(-2j * np.pi * frequencies * delay)
        whole = np.fft.irfft(turned, n=stretch.shape[1], axis=1)
        return whole[:, where - start : where - start + PIECE]

    def mismatch(delay: float) -> float:
        return -float(np.corrcoef(low[0], delayed(delay)[0])[0, 1])

    best = optimize.minimize_scalar(mismatch, bounds=(-1.0, 1.0), method="bounded")
    return delayed(best.x)


def band_levels(recorded: np.ndarray, expected: np.ndarray) -> str:
    """Level of ``recorded`` relative to ``expected`` (both (2, n), aligned) by band, dB."""
    frequencies, got = scipy_signal.welch(recorded[0], GRAPH_RATE, nperseg=4096)
    _, wanted = scipy_signal.welch(expected[0], GRAPH_RATE, nperseg=4096)
    edges = (0, BAND, 18000, 20000, FILE_RATE // 2)
    parts = []
    for low, high in zip(edges, edges[1:], strict=False):
        band = (frequencies >= low) & (frequencies < high)
        parts.append(f"{low}-{high} Hz {10 * np.log10(got[band].sum() / wanted[band].sum()):+.2f}")
    return ", ".join(parts)


def has_gap(audio: np.ndarray) -> bool:
    """Whether ``audio`` (channels, n) holds GAP or more consecutive silent frames."""
    silent = ~np.any(audio != 0, axis=0)
    run = np.convolve(silent.astype(np.int32), np.ones(GAP, np.int32), mode="valid")
    return bool(np.any(run == GAP))


@pytest.mark.slow
def test_a_killed_run_leaves_modules_that_the_next_start_removes(server, song_48k, half_path):
    check_a_killed_run_is_cleaned_up_by_the_next(server, song_48k[0], half_path)
    assert_gone(server)


@pytest.mark.slow
def test_sigterm_removes_the_modules(server, song_48k, half_path):
    check_sigterm_removes_the_modules(server, song_48k[0], half_path)
    assert_gone(server)
