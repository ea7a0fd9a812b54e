"""``--stems``: the music and the vocals apart, each at the reported latency, adding up to the
input.

Through a JACK dummy server: ``mic`` (2 ports) plays a sweep with clicks into ``stream-sep
--stems``, whose output device is ``daw``, a JACK client with 4 input ports. The model's
vocal estimate is 0.8 x the mixture, so the vocals ports carry ~0.8 x the delayed input and the
music ports ~0.2 x: which port carries which stem shows. What each port received is checked
against the engine computing every window inline (outside the output the engine recorded as
dry or lighter), its delay against the reported latency, and music + vocals against the
delayed input on every sample. Without a device: stems to two files, the refusals, the keys,
and the audio thread's allocations (measured as in tests/test_realtime_alloc.py).
"""

from __future__ import annotations

import functools
import re
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from stream_sep import cli
from stream_sep.engine import Separator
from stream_sep.live import jack_ports
from stream_sep.live.audio import BlockProcessor, stem_rows
from stream_sep.live.controls import Controls
from stream_sep.models.loading import load_model
from tests.helpers import FAST_ARGS, FAST_OPTIONS, gain_model, small_contract
from tests.jack_harness import (
    SETTLE_SECONDS,
    Harness,
    find_delay,
    opened,
    run_in_process,
    sweep_with_clicks,
)
from tests.live_check import INLINE_TOLERANCE, TappedSeparator, not_separated, start_of
from tests.test_realtime_alloc import (
    _floor,
    _measured_thread_keeps_the_interpreter,
    _over,
    _wait_idle,
)

VOCAL_GAIN = 0.8  # the model's vocal estimate: 0.8 x the mixture
# Stems add up to the delayed input up to float32 rounding of (dry - vocals) + vocals.
SUM_TOLERANCE = 1e-6
# A stem against the scaled input: the estimate went 48k -> 16k -> 48k (soxr) and through an
# STFT round trip (the sweep is band-limited below 7 kHz); see test_live_jack.KARAOKE_TOLERANCE.
SCALE_TOLERANCE = 5e-3
MIN_SEPARATED = 0.5  # of the signal's samples: the rest may be late on a loaded machine
RATE = 48000


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stems-model")
    return str(gain_model(folder / "vocal08.onnx", VOCAL_GAIN, contract=small_contract()))


def _split_rows(out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    half = out.shape[0] // 2
    return out[:half], out[half:]


# ----------------------------------------------------------------------------- the engine
def test_stems_are_the_karaoke_and_the_rest_of_the_input(model_path):
    """Inline, block by block: the music stem is, to the bit, what karaoke plays with the
    vocals at 0; music + vocals is the input delayed by exactly the latency."""
    model = load_model(model_path)
    rng = np.random.default_rng(3)
    audio = (0.2 * rng.standard_normal((2, 2 * RATE))).astype(np.float32)
    blocks = range(0, audio.shape[1], 1000)  # not a divisor of the hop: ramps cross blocks
    with Separator(model, RATE, 2, blocking=True, stems=True, **FAST_OPTIONS) as engine:
        stems = np.concatenate([engine.process_stems(audio[:, i : i + 1000]) for i in blocks], 1)
        latency = engine.latency_samples
        fade = latency + int(engine.config.fade_in_seconds * RATE)
        assert engine.mode == "stems"
        with pytest.raises(ValueError, match="process_stems"):
            engine.process(audio[:, :1000])
    with Separator(model, RATE, 2, blocking=True, vocal_level=0.0, **FAST_OPTIONS) as karaoke:
        mixed = np.concatenate([karaoke.process(audio[:, i : i + 1000]) for i in blocks], 1)
    music, vocals = _split_rows(stems)
    assert stems.shape == (4, audio.shape[1])
    np.testing.assert_array_equal(music, mixed)
    total = music + vocals
    np.testing.assert_allclose(total[:, fade:], audio[:, fade - latency : -latency], atol=1e-6)
    assert not total[:, :latency].any()  # the delay: silence until the input arrives
    assert np.abs(vocals[:, fade:]).max() > 0.1  # the vocals stem is not empty


def test_a_stems_engine_refuses_the_controls_of_one_mix(model_path):
    model = load_model(model_path)
    with Separator(model, RATE, 2, blocking=True, stems=True, **FAST_OPTIONS) as engine:
        going, notes = Controls(engine).apply_keys(["vocals", "up", "bypass"])
        assert going and len(notes) == 3
        assert all("does not apply to --stems" in note for note in notes), notes
        with pytest.raises(Exception, match="the vocal level does not apply to --stems"):
            Controls(engine).check({"vocal_level": 0.5})
        assert engine.mode == "stems"


def test_the_device_layout_puts_the_music_on_1_2_and_the_vocals_on_3_4():
    assert stem_rows(2, 4) == [0, 1, 2, 3]
    assert stem_rows(1, 4) == [0, 0, 1, 1]  # a mono stream: both channels of each pair
    assert stem_rows(2, 6) == [0, 1, 2, 3, None, None]  # further channels silent
    assert jack_ports.stem_port_names() == ["music_1", "music_2", "vocals_1", "vocals_2"]


class TappedStems(TappedSeparator):
    """The live engine keeping its input (see tests/live_check.py), for a stems engine."""

    def process_stems(self, block, out=None, hand_over=True):
        n = block.shape[1]
        end = min(self.heard_count + n, self.heard.shape[1])
        self.heard[:, self.heard_count : end] = block[:, : end - self.heard_count]
        self.heard_count += n
        return super().process_stems(block, out, hand_over)

    def inline_stems(self) -> np.ndarray:
        """(2C, n): the stems the same engine gives for :attr:`input`, every window inline."""
        config = self.config
        with Separator(self.model, self.sample_rate, self.channels, config, blocking=True) as e:
            return e.process_stems(np.ascontiguousarray(self.input))


# ----------------------------------------------------------------------------- files
def test_stems_to_files_add_up_to_the_input_plus_the_latency(
    model_path, tmp_path, capsys, monkeypatch
):
    """--output take.wav --stems: take.music.wav and take.vocals.wav, each exactly the input
    file's frames plus the latency, adding up to the input at that delay on every frame, and
    each holding its share wherever the engine separated (a late window plays dry)."""
    from stream_sep import engine as engine_module

    TappedSeparator.made = []
    monkeypatch.setattr(engine_module, "Separator", TappedStems)
    # 0.1 s of silence (the fade-in), then a sweep below 7 kHz: all of it reaches the model
    song = np.pad(sweep_with_clicks(RATE, 1.4), ((0, 0), (4800, 0))).T.copy()
    source = tmp_path / "song.wav"
    sf.write(source, song, RATE, subtype="FLOAT")
    take = tmp_path / "take.wav"
    argv = ["--input", str(source), "--output", str(take), "--stems", "--model", model_path]
    rc = cli.main(argv + [*FAST_ARGS, "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    latency = int(re.search(r"latency [0-9.]+ s \((\d+) samples\)", err).group(1))
    music_path, vocals_path = tmp_path / "take.music.wav", tmp_path / "take.vocals.wav"
    assert f"stems: the music (no vocals) to {music_path}, the vocals to {vocals_path}" in err
    assert f"to {music_path} and {vocals_path}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "song.wav",
        "take.music.wav",
        "take.vocals.wav",
    ]
    music, _ = sf.read(music_path, dtype="float32", always_2d=True)
    vocals, _ = sf.read(vocals_path, dtype="float32", always_2d=True)
    assert music.shape == vocals.shape == (song.shape[0] + latency, 2)
    np.testing.assert_allclose((music + vocals)[latency:], song, atol=SUM_TOLERANCE)
    assert not (music + vocals)[:latency].any()
    heard = slice(latency + 4800, None)
    # the vocal estimate is 0.8 x the input: the vocals file holds ~0.8 x, the music ~0.2 x
    (engine,) = TappedSeparator.made
    separated = ~not_separated(engine, 0, music.shape[0])[heard]
    assert separated.mean() >= MIN_SEPARATED, engine.dry_ranges()
    delayed = song[heard.start - latency :]
    peak = np.abs(song).max()
    for stem, scale in ((vocals, VOCAL_GAIN), (music, 1 - VOCAL_GAIN)):
        error = np.abs(stem[heard] - scale * delayed)[separated].max()
        assert error < SCALE_TOLERANCE * peak, (scale, error)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--mode", "vocals"], r"--mode vocals does not apply to --stems"),
        (["--vocal-level", "0.5"], r"--vocal-level 0.5 does not apply to --stems"),
        (["--key", "2"], r"--key 2 does not apply to --stems"),
        (["--mic", "mic"], r"--mic mic does not apply to --stems"),
        (["--output", "virtual"], r"--stems cannot go to --output virtual"),
    ],
)
def test_options_of_one_mix_are_refused_beside_stems(model_path, tmp_path, capsys, extra, message):
    """One line, status 2, before any model or device, nothing written."""
    source = tmp_path / "song.wav"
    sf.write(source, np.zeros((RATE, 2), np.float32), RATE, subtype="FLOAT")
    base = {"--input": str(source), "--output": str(tmp_path / "take.wav")}
    base.update(zip(extra[::2], extra[1::2], strict=True))
    argv = [x for pair in base.items() for x in pair] + ["--stems", "--model", model_path]
    rc = cli.main(argv + FAST_ARGS)
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("stream-sep: error: "), lines
    assert re.search(message, lines[0]), lines[0]
    assert [p.name for p in tmp_path.iterdir()] == ["song.wav"]


# ----------------------------------------------------------------------------- allocation
BLOCK = 1024
WARM_UP_BLOCKS = 10
MEASURED_BLOCKS = 40  # more than four hops of 4800 samples: hand-overs and first uses


class _Flags:
    """A PortAudio callback's status with nothing to report."""

    input_overflow = input_underflow = output_underflow = output_overflow = False


def _measure_callback(call, engine, blocks: np.ndarray, outdata: np.ndarray) -> tuple:
    """(bytes per ``call(block)`` after the warm-up, the floor): as _measure_engine in
    tests/test_realtime_alloc.py, the worker idle during each measured call."""
    for block in blocks[:WARM_UP_BLOCKS]:
        call(block)
    floor = _floor(blocks[0], outdata)
    measured = []
    before = tracemalloc.get_traced_memory()[0]  # bound, as in every later round of the loop
    with _measured_thread_keeps_the_interpreter():
        for block in blocks[WARM_UP_BLOCKS:]:
            _wait_idle(engine)
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            call(block)
            measured.append(tracemalloc.get_traced_memory()[1] - before)
            assert np.isfinite(outdata).all() and np.abs(outdata).max() <= 1.0
    return measured, floor


@pytest.fixture()
def traced():
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def test_the_stems_audio_callback_allocates_nothing(model_path, traced):
    """A duplex device callback with stems (device input (n, 2) -> engine -> 4-channel device
    output (n, 4), peaks and the last-resort check), block after block, windows handed over
    and used meanwhile: at the floor. The engine alone too."""
    model = load_model(model_path)
    rng = np.random.default_rng(0)
    total = WARM_UP_BLOCKS + MEASURED_BLOCKS
    frames = (0.1 * rng.standard_normal((total, BLOCK, 2))).astype(np.float32)
    engine = Separator(model, RATE, 2, blocking=False, stems=True, **FAST_OPTIONS)
    try:
        processor = BlockProcessor(engine, 4)
        outdata = np.zeros((BLOCK, 4), np.float32)
        flags = _Flags()

        def callback(indata):
            processor.duplex_callback(indata, outdata, BLOCK, None, flags)

        measured, floor = _measure_callback(callback, engine, frames, outdata)
        assert not _over(measured, floor), (floor, _over(measured, floor))
        assert processor.muted_blocks == 0 and processor.output_peak > 0.0

        stems = np.zeros((4, BLOCK), np.float32)
        blocks = np.ascontiguousarray(frames.transpose(0, 2, 1))  # (blocks, 2, n)
        measured, floor = _measure_callback(
            lambda block: engine.process_stems(block, stems), engine, blocks, stems
        )
        assert not _over(measured, floor), (floor, _over(measured, floor))
    finally:
        engine.close()
    assert engine.stats.windows_run >= 8  # windows were handed over and used meanwhile


# ----------------------------------------------------------------------------- JACK
@pytest.fixture(scope="module")
def rig(jack_server):
    """``mic`` with 2 output ports and ``daw``, a 4-channel output device."""
    with opened(functools.partial(Harness, 2, 4, "daw")) as made:
        yield made


def test_each_jack_port_carries_its_stem_at_the_reported_latency(
    rig, model_path, capsys, monkeypatch
):
    from stream_sep import engine as engine_module

    TappedSeparator.made = []
    monkeypatch.setattr(engine_module, "Separator", TappedStems)
    signal_ = sweep_with_clicks(rig.rate)
    argv = ["--input", "mic", "--output", "daw", "--stems", "--model", model_path, *FAST_ARGS]
    for _attempt in range(3):  # a run spoiled by an xrun (busy machine) is repeated
        TappedSeparator.made.clear()
        before = rig.xruns
        rc = run_in_process(rig, argv, signal_, tail_s=1.0)
        err = capsys.readouterr().err
        if rig.xruns == before and re.search(r" 0 xruns", err):
            break
    assert rc == 0, err
    latency = int(re.search(r"latency [0-9.]+ s \((\d+) samples\)", err).group(1))
    (engine,) = TappedSeparator.made
    assert latency == engine.latency_samples
    assert "stems: the music (no vocals) on channels 1-2, the vocals on channels 3-4" in err

    # the ports' names, as the start-up note gives them
    ports = re.search(r"stems: JACK ports (\S+), (\S+) \(music\), (\S+), (\S+) \(vocals\)", err)
    assert ports, err
    clients = {name.split(":", 1)[0] for name in ports.groups()}
    assert len(clients) == 1  # one client: "stream-sep", or "PortAudio" when this process
    # had started PortAudio before stream-sep could name it (the next test runs it as typed)
    assert [name.split(":", 1)[1] for name in ports.groups()] == jack_ports.stem_port_names()

    # each port: the delay, then the inline engine's stem outside the dry/lighter output
    capture = rig.capture[:, : rig.captured]
    music, vocals = capture[:2], capture[2:]
    for stem in (music, vocals):
        assert find_delay(stem, signal_) == latency
    start = start_of(engine.input, signal_)
    expected = engine.inline_stems()[:, start : start + signal_.shape[1] + latency]
    length = min(expected.shape[1], capture.shape[1])
    assert length - latency >= signal_.shape[1] // 2, f"{length - latency} samples heard"
    separated = ~not_separated(engine, start, length)
    assert separated[latency:length].mean() >= MIN_SEPARATED, engine.dry_ranges()
    error = np.abs(capture[:, :length][:, separated] - expected[:, :length][:, separated]).max()
    assert error <= INLINE_TOLERANCE, f"live vs inline stems: max error {error:.2e}"

    # which port carries which stem: vocals ~0.8 x, music ~0.2 x the delayed input
    delayed = np.zeros((2, length), np.float32)
    shown = min(signal_.shape[1], length - latency)
    delayed[:, latency : latency + shown] = signal_[:, :shown]
    peak = np.abs(signal_).max()
    for stem, scale in ((vocals, VOCAL_GAIN), (music, 1 - VOCAL_GAIN)):
        error = np.abs(stem[:, :length] - scale * delayed)[:, separated].max()
        assert error < SCALE_TOLERANCE * peak, (scale, error)

    # music + vocals = the input at the latency, on every sample (dry output included)
    total = music[:, :length] + vocals[:, :length]
    np.testing.assert_allclose(total, delayed, atol=SUM_TOLERANCE)
    print(
        f"stems through JACK: delay {latency} on 4 ports, {separated.mean():.0%} separated, "
        f"sum error {np.abs(total - delayed).max():.1e}; dry {engine.dry_ranges()}"
    )


def test_stems_through_jack_as_typed_name_the_ports_stream_sep(rig, model_path):
    """``stream-sep --stems`` in a process of its own: its JACK client is ``stream-sep`` and
    the device's ports 1-4 are fed by stream-sep:music_1, music_2, vocals_1, vocals_2."""
    wanted = [f"stream-sep:{name}" for name in jack_ports.stem_port_names()]
    argv = ["--input", "mic", "--output", "daw", "--stems", "--duration", "30"]
    process = subprocess.Popen(
        [sys.executable, "-m", "stream_sep", *argv, "--model", model_path, *FAST_ARGS],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        rig.wait_for(rig.connected, 120, "stream-sep to connect to mic and daw")
        time.sleep(SETTLE_SECONDS)  # renamed once the stream runs
        fed = [[p.name for p in rig.headphones.get_all_connections(port)] for port in rig.inports]
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert fed == [[name] for name in wanted], fed
    assert f"stems: JACK ports {wanted[0]}, {wanted[1]} (music), {wanted[2]}, {wanted[3]}" in err


def test_stems_on_a_two_channel_device_are_refused_in_one_line(rig, model_path, capsys):
    """JACK's ``system`` has 2 playback ports: refused before the model loads, exit 2,
    no JACK client or port left behind."""
    ports_before = {port.name for port in rig.mic.get_ports()}
    argv = ["--input", "mic", "--output", "system", "--stems", "--model", model_path]
    rc = cli.main(argv + FAST_ARGS)
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, lines
    assert re.fullmatch(
        r"stream-sep: error: --stems needs 4 output channels \(the music on 1-2, the vocals "
        r"on 3-4\); --output \d+ 'system' has 2 output channels",
        lines[0],
    ), lines[0]
    assert {port.name for port in rig.mic.get_ports()} == ports_before
