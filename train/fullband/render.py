"""A composed song rendered to stereo audio: FluidSynth with a General MIDI SoundFont, then a
mix bus of pedalboard effects (filters, EQ, compressor, reverb), all drawn from the song's
generator.

System requirements: the ``fluidsynth`` program and a GM SoundFont (Debian: ``fluidsynth``,
``fluid-soundfont-gm``).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from stream_sep.errors import UserError
from train.fullband import SOUNDFONT, check_requirements
from train.fullband.compose import Song, compose

RENDER_RATE = 44100
# FluidSynth's master gain: low enough that a dense song does not exceed +-1 before the bus
FLUIDSYNTH_GAIN = 0.4
# the peak of a finished song (the level is drawn again per training example)
PEAK = 0.9
TAIL_SECONDS = 1.0  # the ring-out kept after the last bar
RENDER_TIMEOUT_SECONDS = 300


def render_song(seed, soundfont: Path = SOUNDFONT) -> tuple[np.ndarray, Song]:
    """The song of ``seed`` (an int or a sequence of ints for ``numpy.random.default_rng``):
    its mastered stereo audio at ``RENDER_RATE``, (2, samples) float32, and what was drawn."""
    rng = np.random.default_rng(seed)
    midi, song = compose(rng)
    raw = render_midi(midi, soundfont)
    length = min(raw.shape[1], int((song.seconds + TAIL_SECONDS) * RENDER_RATE))
    return master(raw[:, :length], rng, RENDER_RATE), song


def render_midi(midi, soundfont: Path = SOUNDFONT) -> np.ndarray:
    """FluidSynth's float render of a ``pretty_midi.PrettyMIDI``: (2, samples) float32.

    FluidSynth's reverb stays on (each part's send, CC91, is drawn by the composer); its
    chorus is off: FluidSynth 2.3's chorus returns its two channels in opposite phase, so the
    mid ((L + R) / 2) of a chorused part nearly cancels.
    """
    check_requirements(soundfont)
    with tempfile.TemporaryDirectory(prefix="fullband-") as folder:
        midi_path, wav_path = Path(folder) / "song.mid", Path(folder) / "song.wav"
        midi.write(str(midi_path))
        command = ["fluidsynth", "-ni", "-q", "-C", "0", "-F", str(wav_path), "-T", "wav", "-O", "float",
                   "-r", str(RENDER_RATE), "-g", str(FLUIDSYNTH_GAIN), str(soundfont),
                   str(midi_path)]  # fmt: skip
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=RENDER_TIMEOUT_SECONDS
        )
        if result.returncode != 0 or not wav_path.is_file():
            raise UserError(
                f"fluidsynth failed (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}"
            )
        audio, rate = sf.read(wav_path, dtype="float32", always_2d=True)
    if rate != RENDER_RATE or audio.shape[1] != 2:
        raise UserError(f"fluidsynth wrote {audio.shape[1]} channel(s) at {rate} Hz, not stereo")
    return np.ascontiguousarray(audio.T)


def master(audio: np.ndarray, rng: np.random.Generator, rate: int) -> np.ndarray:
    """The mix bus: high-pass, three EQ bands, sometimes a low-pass, a bus compressor, a room
    reverb, then a peak of ``PEAK``. (2, n) float32 -> (2, n) float32.

    ============================  =====================================================
    high-pass                     20-80 Hz
    low shelf / peak / high shelf  80-200 Hz, 300-3000 Hz (Q 0.5-2), 6-12 kHz; -4..+4 dB each
    low-pass (p=0.2)              9-16 kHz
    compressor                    threshold 4-14 dB under the peak, ratio 1.5-4, attack
                                  5-30 ms, release 50-300 ms
    reverb (pedalboard's, p=0.8)  room 0.1-0.6, damping 0.2-0.8, wet 0.03-0.2, width 0.6-1
    ============================  =====================================================
    """
    import pedalboard as pb

    peak_db = 20 * np.log10(max(float(np.max(np.abs(audio))), 1e-6))
    effects = [
        pb.HighpassFilter(rng.uniform(20, 80)),
        pb.LowShelfFilter(rng.uniform(80, 200), rng.uniform(-4, 4)),
        pb.PeakFilter(rng.uniform(300, 3000), rng.uniform(-4, 4), rng.uniform(0.5, 2)),
        pb.HighShelfFilter(rng.uniform(6000, 12000), rng.uniform(-4, 4)),
    ]
    if rng.uniform() < 0.2:
        effects.append(pb.LowpassFilter(rng.uniform(9000, 16000)))
    effects.append(
        pb.Compressor(
            threshold_db=peak_db - rng.uniform(4, 14),
            ratio=rng.uniform(1.5, 4),
            attack_ms=rng.uniform(5, 30),
            release_ms=rng.uniform(50, 300),
        )
    )
    if rng.uniform() < 0.8:
        effects.append(
            pb.Reverb(
                room_size=rng.uniform(0.1, 0.6),
                damping=rng.uniform(0.2, 0.8),
                wet_level=rng.uniform(0.03, 0.2),
                dry_level=1.0,
                width=rng.uniform(0.6, 1.0),
            )
        )
    out = pb.Pedalboard(effects)(np.ascontiguousarray(audio, np.float32), rate)
    peak = float(np.max(np.abs(out)))
    return (out * np.float32(PEAK / peak if peak > 0 else 0.0)).astype(np.float32)
