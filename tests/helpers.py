"""Shared test helpers: tiny contract-satisfying ONNX models and synthetic audio.

The models are built with ``onnx.helper`` so the host's tests need no TensorFlow and no
weights. ``gain_model`` returns ``gain * mixture`` as the vocal estimate (``gain=1`` is the
identity), optionally with a per-bin gain so the "vocals" are a known filtered part.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import soundfile as sf
from onnx import TensorProto, helper, numpy_helper

from stream_sep.models.contract import ModelContract

# Fast engine settings for streaming tests: a window every 0.1 s. One definition, in the three
# forms the tests need: engine keyword options, command-line arguments, a Settings value.
FAST_OPTIONS = {"hop": 0.1, "lookahead": 0.05, "crossfade": 0.02}
FAST_ARGS = ["--hop", "0.1", "--lookahead", "0.05", "--crossfade", "0.02"]


def fast_settings():
    from stream_sep.settings import Settings

    return Settings(**FAST_OPTIONS)


# A short window keeps streaming tests fast: 7680 samples = 0.48 s at 16 kHz, 16 frames.
SMALL_WINDOW = 7680


def small_contract(window_samples: int = SMALL_WINDOW, **changes) -> ModelContract:
    return ModelContract(window_samples=window_samples, **changes)


def gain_model(
    path: Path,
    gain: float | np.ndarray = 1.0,
    contract: ModelContract | None = None,
    metadata: dict[str, str] | None = None,
    opset: int = 17,
    offset: float = 0.0,
) -> Path:
    """Write an ONNX model whose vocal estimate is ``gain * mixture`` (in the STFT domain).

    gain: a scalar, or (n_fft // 2,) per-bin gains (a fixed spectral gain). offset: added to
    every output value, whatever the input (a network's bias: the same for x and -x).
    """
    contract = contract or small_contract()
    frames, bins = contract.frames, contract.n_bins
    spectrogram = helper.make_tensor_value_info(
        contract.input_name, TensorProto.FLOAT, ["batch", frames, bins, 2]
    )
    sources = helper.make_tensor_value_info(
        contract.output_name, TensorProto.FLOAT, ["batch", len(contract.sources), frames, 2 * bins]
    )
    per_bin = np.broadcast_to(np.asarray(gain, np.float32), (bins,))
    # Interleaved real/imag per bin: repeat each bin's gain twice along the last axis.
    gain_tensor = np.repeat(per_bin, 2).reshape(1, 1, 1, 2 * bins)
    if len(contract.sources) > 1:
        gain_tensor = np.concatenate(
            [gain_tensor] + [1.0 - gain_tensor] * (len(contract.sources) - 1), axis=1
        )
    initializers = [
        numpy_helper.from_array(np.array([0, 1, frames, 2 * bins], np.int64), "shape"),
        numpy_helper.from_array(gain_tensor.astype(np.float32), "gain"),
    ]
    nodes = [
        helper.make_node("Reshape", [contract.input_name, "shape"], ["flat"]),
        helper.make_node("Mul", ["flat", "gain"], ["scaled" if offset else contract.output_name]),
    ]
    if offset:
        initializers.append(numpy_helper.from_array(np.array(offset, np.float32), "offset"))
        nodes.append(helper.make_node("Add", ["scaled", "offset"], [contract.output_name]))
    graph = helper.make_graph(nodes, "gain_model", [spectrogram], [sources], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    entries = contract.to_metadata() if metadata is None else metadata
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, path)
    return path


def sine(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    """(samples,) float32 sine with 10 ms fades at both ends."""
    t = np.arange(int(seconds * rate)) / rate
    tone = amplitude * np.sin(2 * np.pi * frequency * t)
    fade = min(len(t) // 2, int(0.01 * rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        tone[:fade] *= ramp
        tone[-fade:] *= ramp[::-1]
    return tone.astype(np.float32)


def noise(channels: int, samples: int, seed: int = 0, amplitude: float = 0.2) -> np.ndarray:
    """(channels, samples) float32 white noise."""
    rng = np.random.default_rng(seed)
    return (amplitude * rng.standard_normal((channels, samples))).astype(np.float32)


def impulse(channels: int, samples: int, at: int, amplitude: float = 0.8) -> np.ndarray:
    """(channels, samples) float32, zero but for one sample per channel at ``at``."""
    signal = np.zeros((channels, samples), np.float32)
    signal[:, at] = amplitude
    return signal


def stream(engine, audio: np.ndarray, block_sizes) -> np.ndarray:
    """Feed ``audio`` (channels, samples) through ``engine.process`` in blocks of the given
    sizes (an int, or an iterable cycled until the audio ends); returns the joined output."""
    sizes = [block_sizes] if isinstance(block_sizes, int) else list(block_sizes)
    out = np.zeros_like(audio)
    position, index = 0, 0
    while position < audio.shape[1]:
        size = min(sizes[index % len(sizes)], audio.shape[1] - position)
        out[:, position : position + size] = engine.process(audio[:, position : position + size])
        position += size
        index += 1
    return out


# Vowel formants (F1, F2, F3) in Hz, roughly an adult voice's /a/, /e/, /i/, /o/, /u/.
_VOWELS = np.array(
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
    np.float64,
)
_FORMANT_BANDWIDTHS = np.array([90.0, 110.0, 170.0])
_FORMANT_LEVELS = np.array([1.0, 0.6, 0.3])


def voice_over_band(
    seconds: float, rate: int = 16000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A voice-like tone over generated drums and bass: (mixture, vocals, accompaniment).

    Each is (samples,) float32 and ``mixture = vocals + accompaniment``. The voice sings
    syllables (0.2-0.45 s notes, 30 ms attack, 60 ms release, short gaps) on an f0 in
    180-300 Hz with 5-6 Hz vibrato of about a third of a semitone; each syllable is a vowel
    whose three formant resonances shape the harmonics. The band is a kick (a falling
    sine burst) on every beat at 120 bpm, a snare (decaying noise and tone) on the
    off-beats, and a band-limited sawtooth bass line at 41-98 Hz. Voice and band have the same
    RMS (a 0 dB mix, like MIR-1K); the whole mix is scaled to peak at most 0.9.
    """
    rng = np.random.default_rng(seed)
    samples = int(round(seconds * rate))
    vocals = _voice(samples, rate, rng)
    accompaniment = _drums(samples, rate, rng) + _bass(samples, rate, rng)
    vocals *= 0.1 / max(np.sqrt(np.mean(vocals**2)), 1e-12)
    accompaniment *= 0.1 / max(np.sqrt(np.mean(accompaniment**2)), 1e-12)
    mixture = vocals + accompaniment
    scale = min(1.0, 0.9 / max(np.abs(mixture).max(), 1e-12))
    vocals = (vocals * scale).astype(np.float32)
    accompaniment = (accompaniment * scale).astype(np.float32)
    return vocals + accompaniment, vocals, accompaniment


def _syllables(samples: int, rate: int, rng) -> list[tuple[int, int]]:
    """(start, length) in samples of sung syllables separated by 30-120 ms gaps."""
    spans, position = [], int(rng.uniform(0.0, 0.1) * rate)
    while position < samples:
        length = int(rng.uniform(0.2, 0.45) * rate)
        spans.append((position, min(length, samples - position)))
        position += length + int(rng.uniform(0.03, 0.12) * rate)
    return spans


def _voice(samples: int, rate: int, rng) -> np.ndarray:
    """(samples,) float64 formant-shaped harmonic voice."""
    t = np.arange(samples) / rate
    f0 = np.full(samples, 220.0)
    formants = np.tile(_VOWELS[0], (samples, 1))
    envelope = np.zeros(samples)
    attack, release = int(0.03 * rate), int(0.06 * rate)
    for start, length in _syllables(samples, rate, rng):
        span = slice(start, start + length)
        f0[span] = rng.uniform(180.0, 300.0)
        formants[span] = _VOWELS[rng.integers(len(_VOWELS))]
        shape = np.ones(length)
        rise, fall = min(attack, length // 2), min(release, length // 2)
        shape[:rise] = np.linspace(0.0, 1.0, rise)
        shape[length - fall :] = np.linspace(1.0, 0.0, fall)
        envelope[span] = shape
    # Glide between notes and vowels over ~20 ms (a moving average), then add vibrato.
    glide = np.ones(max(1, int(0.02 * rate))) / max(1, int(0.02 * rate))
    f0 = np.convolve(f0, glide, mode="same")
    formants = np.stack([np.convolve(formants[:, i], glide, mode="same") for i in range(3)], 1)
    vibrato_rate = rng.uniform(5.0, 6.0)
    f0 = f0 * 2.0 ** (0.3 / 12.0 * np.sin(2 * np.pi * vibrato_rate * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = np.zeros(samples)
    for k in range(1, int(0.45 * rate / 180.0) + 1):
        frequency = k * f0
        # Resonance gain at each harmonic: a sum of Lorentzian peaks, with a -6 dB/octave source.
        distance = (frequency[:, None] - formants) / _FORMANT_BANDWIDTHS
        gain = (_FORMANT_LEVELS / (1.0 + distance**2)).sum(axis=1) / k
        gain[frequency > 0.45 * rate] = 0.0
        voice += gain * np.sin(k * phase)
    return voice * envelope


def _decay(samples: int, rate: int, seconds: float) -> np.ndarray:
    return np.exp(-np.arange(samples) / (seconds * rate))


def _drums(samples: int, rate: int, rng) -> np.ndarray:
    """(samples,) float64: a kick on every beat (120 bpm), a snare on every off-beat."""
    drums = np.zeros(samples)
    beat = int(0.5 * rate)
    hit = min(int(0.3 * rate), samples)
    t = np.arange(hit) / rate
    kick_frequency = 50.0 + 70.0 * np.exp(-t / 0.03)  # a pitch drop from 120 Hz to 50 Hz
    kick = np.sin(2 * np.pi * np.cumsum(kick_frequency) / rate) * _decay(hit, rate, 0.08)
    for start in range(0, samples, beat):
        end = min(samples, start + hit)
        drums[start:end] += kick[: end - start]
        snare_start = start + beat // 2
        if snare_start < samples:
            end = min(samples, snare_start + hit)
            burst = rng.standard_normal(end - snare_start) * _decay(end - snare_start, rate, 0.05)
            tone = 0.5 * np.sin(2 * np.pi * 190.0 * t[: end - snare_start])
            drums[snare_start:end] += 0.6 * burst + tone * _decay(end - snare_start, rate, 0.03)
    return drums


def _bass(samples: int, rate: int, rng) -> np.ndarray:
    """(samples,) float64 band-limited sawtooth bass line, one note per beat."""
    notes = np.array([41.2, 49.0, 55.0, 65.4, 73.4, 82.4, 98.0])  # E1 to G2
    beat = int(0.5 * rate)
    frequency = np.repeat(rng.choice(notes, size=samples // beat + 1), beat)[:samples]
    phase = 2 * np.pi * np.cumsum(frequency) / rate
    harmonics = range(1, 13)
    bass = sum(np.sin(k * phase) / k for k in harmonics)
    # Pluck-like envelope per note: fast decay to a sustain, short fade at the note's end.
    position = np.arange(samples) % beat / rate
    envelope = 0.4 + 0.6 * np.exp(-position / 0.15)
    envelope *= np.clip((0.5 - position) / 0.01, 0.0, 1.0)
    return bass * envelope


def full_band_song(
    seconds: float, rate: int = 44100, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A full-band mix at ``rate`` (44.1 kHz: content up to 16 kHz): (mixture, vocals,
    accompaniment), each (samples,) float32, ``mixture = vocals + accompaniment``.

    The voice is :func:`voice_over_band`'s singer plus what a 16 kHz model cannot see: a
    sibilant ("s", band-limited noise at 4.5-13 kHz, 60-120 ms) before about half of the
    syllables, and breath noise (6-14 kHz, 25 dB under the voice) while it sings. The band
    is the kick, snare and bass of :func:`voice_over_band`, a pad (a three-note sawtooth
    chord with harmonics to 10 kHz, changing every 2 s) and closed hi-hats on every eighth
    note (noise at 7-16 kHz, 30 ms decay): instruments above 8 kHz that karaoke must keep.
    Voice and band have the same RMS; the mix peaks at most at 0.9.
    """
    rng = np.random.default_rng(seed)
    samples = int(round(seconds * rate))
    voice = _voice(samples, rate, rng)
    voice *= 0.1 / max(np.sqrt(np.mean(voice**2)), 1e-12)
    voice += _sibilants(samples, rate, rng) + _breath(voice, rate, rng)
    band = _drums(samples, rate, rng) + _bass(samples, rate, rng)
    band *= 0.1 / max(np.sqrt(np.mean(band**2)), 1e-12)
    band += _pad(samples, rate, rng) + _hats(samples, rate, rng)
    voice *= 0.1 / max(np.sqrt(np.mean(voice**2)), 1e-12)
    band *= 0.1 / max(np.sqrt(np.mean(band**2)), 1e-12)
    scale = min(1.0, 0.9 / max(np.abs(voice + band).max(), 1e-12))
    vocals, accompaniment = (voice * scale).astype(np.float32), (band * scale).astype(np.float32)
    return vocals + accompaniment, vocals, accompaniment


def band_noise(samples: int, rate: int, low: float, high: float, rng) -> np.ndarray:
    """(samples,) float64 white noise limited to [low, high] Hz (FFT mask), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    frequencies = np.fft.rfftfreq(samples, 1.0 / rate)
    spectrum[(frequencies < low) | (frequencies > high)] = 0.0
    noise = np.fft.irfft(spectrum, samples)
    return noise / max(np.sqrt(np.mean(noise**2)), 1e-12)


def _sibilants(samples: int, rate: int, rng) -> np.ndarray:
    """(samples,) float64: 's' sounds just before about half of the syllables."""
    hiss = band_noise(samples, rate, 4500.0, 13000.0, rng)
    envelope = np.zeros(samples)
    for start, _length in _syllables(samples, rate, np.random.default_rng(rng.integers(2**31))):
        if rng.uniform() < 0.5:
            length = int(rng.uniform(0.06, 0.12) * rate)
            first = max(0, start - length)
            shape = np.hanning(start - first + 2)[1:-1] if start > first else np.zeros(0)
            envelope[first:start] = np.maximum(envelope[first:start], shape)
    return 0.12 * hiss * envelope


def _breath(voice: np.ndarray, rate: int, rng) -> np.ndarray:
    """(samples,) float64 breath noise following the voice's loudness, 25 dB under it."""
    window = max(1, int(0.02 * rate))
    loudness = np.sqrt(np.convolve(voice**2, np.ones(window) / window, mode="same"))
    return 10 ** (-25 / 20) * loudness * band_noise(len(voice), rate, 6000.0, 14000.0, rng)


def _pad(samples: int, rate: int, rng) -> np.ndarray:
    """(samples,) float64 sawtooth chords (harmonics up to 10 kHz), a new chord every 2 s."""
    roots = np.array([130.8, 146.8, 164.8, 174.6, 196.0, 220.0])  # C3 to A3
    chord_length = int(2.0 * rate)
    pad = np.zeros(samples)
    for start in range(0, samples, chord_length):
        end = min(samples, start + chord_length)
        t = np.arange(end - start) / rate
        root = rng.choice(roots)
        for note in (root, root * 2 ** (4 / 12), root * 2 ** (7 / 12)):
            harmonics = range(1, int(10000 / note) + 1)
            pad[start:end] += sum(np.sin(2 * np.pi * k * note * t) / k for k in harmonics)
        swell = np.minimum(1.0, t / 0.2) * np.minimum(1.0, (t[-1] - t) / 0.05 + 1e-3)
        pad[start:end] *= swell
    return 0.02 * pad


def _hats(samples: int, rate: int, rng) -> np.ndarray:
    """(samples,) float64 closed hi-hats on every eighth note at 120 bpm."""
    hiss = band_noise(samples, rate, 7000.0, 16000.0, rng)
    eighth = int(0.25 * rate)
    envelope = np.zeros(samples)
    hit = _decay(min(int(0.12 * rate), samples), rate, 0.03)
    for start in range(eighth // 2, samples, eighth):
        end = min(samples, start + hit.size)
        envelope[start:end] = hit[: end - start]
    return 0.05 * hiss * envelope


def write_mir1k_like(
    folder: Path, singers, clips: int = 2, seconds: float = 1.5, rate: int = 16000
) -> list[Path]:
    """Write generated MIR-1K-style clips: ``folder/<singer>_1_<nn>.wav``, stereo float,
    channel 0 the band, channel 1 the voice (:func:`voice_over_band`, a seed per clip).
    Returns the paths, sorted."""
    import soundfile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, singer in enumerate(singers):
        for clip in range(1, clips + 1):
            _mixture, vocals, band = voice_over_band(seconds, rate, seed=100 * number + clip)
            path = folder / f"{singer}_1_{clip:02d}.wav"
            soundfile.write(path, np.stack([band, vocals], axis=1), rate, subtype="FLOAT")
            paths.append(path)
    return sorted(paths)


def recorded_frames(path) -> int:
    """Frames in the WAV at ``path`` so far (0 while it does not exist or has no header)."""
    try:
        return sf.info(str(path)).frames
    except (RuntimeError, sf.LibsndfileError):
        return 0


def wait_for_recording(process, path, frames: int, timeout: float = 120) -> None:
    """Until the live ``process`` has written ``frames`` to ``path``; fails if it exits."""
    deadline = time.monotonic() + timeout
    while recorded_frames(path) < frames:
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the recording did not grow"
        time.sleep(0.05)


STEMS_SONG_RATE = 44100


def write_stems_song(
    folder, seconds: float, seed: int, channels: int = 2, parts: bool = False
) -> dict:
    """A song folder at 44.1 kHz: vocals and accompaniment (or drums, bass, other) files.
    Returns the written stems, (channels, n) float32 each."""
    folder.mkdir(parents=True)
    _, voice, band = voice_over_band(seconds, STEMS_SONG_RATE, seed)
    spread = np.linspace(0.8, 1.2, channels, dtype=np.float32)[:, None]
    vocals, accompaniment = voice[None] * spread, band[None] * spread[::-1]
    sf.write(folder / "vocals.flac", vocals.T, STEMS_SONG_RATE, subtype="PCM_24")
    if parts:
        for name in ("drums", "bass", "other"):
            sf.write(
                folder / f"{name}.wav", (accompaniment / 3).T, STEMS_SONG_RATE, subtype="FLOAT"
            )
    else:
        sf.write(folder / "accompaniment.wav", accompaniment.T, STEMS_SONG_RATE, subtype="FLOAT")
    return {"vocals": vocals, "accompaniment": accompaniment}


class Sleepy:
    """A real model that also sleeps ``seconds`` per call (a slow machine)."""

    def __init__(self, model, seconds: float):
        self.model, self.seconds = model, seconds
        self.contract, self.path, self.provider = model.contract, model.path, model.provider

    def separate(self, audio):
        time.sleep(self.seconds)
        return self.model.separate(audio)

    def warm_up(self, batch: int = 1) -> float:
        return 0.0
