"""A random song as General MIDI: style, tempo, key, chords, groove, bass and 2-4 other parts.

:func:`compose` draws everything from one ``numpy`` generator, so a seed gives one song.
Times are in seconds (``pretty_midi``); a bar is four beats; the drum kit is GM channel 10.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pretty_midi

# ---------------------------------------------------------------- styles

# GM drum notes
KICK, SNARE, RIM, CLAP, CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 36, 38, 37, 39, 42, 44, 46
CRASH, RIDE, RIDE_BELL, SPLASH, TAMBOURINE, SHAKER, COWBELL = 49, 51, 53, 55, 54, 70, 56
TOMS = (41, 43, 45, 47, 48, 50)  # low floor tom .. high tom

# GM program families (0-based programs)
GUITARS_CLEAN = (24, 25, 26, 27, 28)  # nylon, steel, jazz, clean, muted
GUITARS_DRIVEN = (29, 30)  # overdriven, distortion
PIANOS = (0, 1, 2, 4, 5, 7)  # grand, bright, electric grand, rhodes, DX, clavinet
ORGANS = (16, 17, 18, 19)
PADS = (88, 89, 90, 91, 92, 94, 95)
STRINGS = (48, 49, 50, 51)
BRASS = (56, 57, 61, 62, 63)
SYNTH_LEADS = (80, 81, 84, 87)
BASSES = {"finger": (33,), "pick": (34,), "slap": (36, 37), "synth": (38, 39), "acoustic": (32,)}
# Melodic leads that are not a voice: synth leads, saxophones, a guitar solo, flute, trumpet, violin
LEADS = (80, 81, 84, 87, 64, 65, 66, 29, 30, 27, 73, 56, 40)


@dataclasses.dataclass(frozen=True)
class Style:
    name: str
    tempo: tuple[float, float]
    basses: tuple[str, ...]
    # instrument families the harmonic parts are drawn from: (programs, role)
    families: tuple[tuple[tuple[int, ...], str], ...]
    swing: float = 0.0  # delay of every off-beat 16th, as a share of a 16th


STYLES = {
    "rock": Style(
        "rock",
        (100, 150),
        ("pick", "finger"),
        ((GUITARS_DRIVEN, "power"), (GUITARS_CLEAN, "strum"), (ORGANS, "pad"), (PIANOS, "comp")),
    ),
    "pop": Style(
        "pop",
        (88, 128),
        ("finger", "synth", "pick"),
        (
            (PIANOS, "comp"),
            (GUITARS_CLEAN, "strum"),
            (PADS, "pad"),
            (STRINGS, "pad"),
            (SYNTH_LEADS, "arp"),
            (GUITARS_DRIVEN, "power"),
        ),  # fmt: skip
    ),
    "ballad": Style(
        "ballad",
        (60, 84),
        ("finger", "acoustic"),
        ((PIANOS, "arp"), (STRINGS, "pad"), (GUITARS_CLEAN, "arp"), (PADS, "pad")),
    ),
    "electronic": Style(
        "electronic",
        (115, 132),
        ("synth",),
        ((PADS, "pad"), (SYNTH_LEADS, "arp"), (PIANOS, "comp"), (BRASS, "stabs")),
    ),
    "funk": Style(
        "funk",
        (92, 116),
        ("slap", "finger"),
        ((GUITARS_CLEAN, "chops"), (BRASS, "stabs"), (PIANOS, "comp"), (ORGANS, "pad")),
        swing=0.15,
    ),
}

# Chord progressions as scale degrees (0-based) of the major or the natural minor scale.
MAJOR_PROGRESSIONS = ((0, 4, 5, 3), (5, 3, 0, 4), (0, 3, 4, 3), (0, 5, 3, 4), (1, 4, 0, 5),
                      (0, 3, 0, 4), (3, 0, 4, 5))  # fmt: skip
MINOR_PROGRESSIONS = ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 6, 2))
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)

SECONDS = (20.0, 40.0)  # a song's length, rounded up to whole bars
SECTIONS = ("intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus")
BARS_PER_SECTION = 4


@dataclasses.dataclass
class Song:
    """What was drawn, for the cache's description file and the tests."""

    style: str
    tempo: float
    key: int  # pitch class of the tonic
    minor: bool
    progression: tuple[int, ...]
    bars: int
    seconds: float
    parts: list[dict]  # {"role", "program", "pan"} per instrument, drums included

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- the song


def compose(rng: np.random.Generator) -> tuple[pretty_midi.PrettyMIDI, Song]:
    """A random song: its MIDI and what was drawn."""
    style = STYLES[list(STYLES)[rng.integers(len(STYLES))]]
    tempo = float(round(rng.uniform(*style.tempo), 1))
    minor = bool(rng.uniform() < 0.4)
    progressions = MINOR_PROGRESSIONS if minor else MAJOR_PROGRESSIONS
    progression = progressions[rng.integers(len(progressions))]
    bar_seconds = 240.0 / tempo
    bars = max(BARS_PER_SECTION, math.ceil(rng.uniform(*SECONDS) / bar_seconds))
    song = Song(
        style=style.name,
        tempo=tempo,
        key=int(rng.integers(12)),
        minor=minor,
        progression=tuple(int(d) for d in progression),
        bars=bars,
        seconds=bars * bar_seconds,
        parts=[],
    )
    grid = Grid(tempo, style.swing, rng)
    sections = [SECTIONS[min(b // BARS_PER_SECTION, len(SECTIONS) - 1)] for b in range(bars)]
    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    midi.instruments.append(drums(style.name, sections, grid, rng, song))
    midi.instruments.append(bass(style, song, sections, grid, rng))
    families = list(style.families)
    order = rng.permutation(len(families))
    for index in order[: rng.integers(2, min(4, len(families)) + 1)]:
        programs, role = families[index]
        midi.instruments.append(harmony(programs, role, song, sections, grid, rng))
    if rng.uniform() < 0.5:
        midi.instruments.append(lead(song, sections, grid, rng))
    return midi, song


class Grid:
    """Times of 16th steps with swing and humanisation (timing jitter, velocity jitter)."""

    def __init__(self, tempo: float, swing: float, rng: np.random.Generator):
        self.step = 15.0 / tempo  # seconds per 16th
        self.swing = swing
        self.rng = rng
        self.jitter = rng.uniform(0.002, 0.012)  # seconds, standard deviation
        self.loose = rng.uniform(4, 12)  # velocity standard deviation

    def time(self, bar: int, step: float) -> float:
        swung = step + (self.swing if int(step) % 2 else 0.0)
        return max(0.0, (bar * 16 + swung) * self.step + self.rng.normal(0, self.jitter))

    def velocity(self, base: float) -> int:
        return int(np.clip(base + self.rng.normal(0, self.loose), 1, 127))

    def note(self, pitch: int, bar: int, step: float, length: float, velocity: float):
        start = self.time(bar, step)
        end = max(start + 0.03, (bar * 16 + step + length) * self.step)
        return pretty_midi.Note(self.velocity(velocity), int(pitch), start, end)


# Volume (CC7) ranges per role, a mix's balance: drums and bass up front, held chords
# further back (FluidSynth attenuates by about 40 log10(CC7 / 127) dB: 64 is -12 dB).
VOLUMES = {"drums": (105, 127), "bass": (90, 120), "pad": (50, 85), "strum": (70, 105),
           "comp": (70, 105), "power": (80, 110), "arp": (65, 100), "chops": (75, 105),
           "stabs": (70, 100), "lead": (85, 115)}  # fmt: skip


def _setup(instrument: pretty_midi.Instrument, pan: int, rng: np.random.Generator) -> None:
    """Pan (CC10), volume (CC7, from the role's range in ``VOLUMES``) and reverb send (CC91)
    at time 0; the instrument's name is its role."""
    low, high = VOLUMES[instrument.name]
    for number, value in ((10, pan), (7, rng.integers(low, high + 1)), (91, rng.integers(0, 70))):
        instrument.control_changes.append(pretty_midi.ControlChange(number, int(value), 0.0))


def _pan(rng: np.random.Generator, spread: float) -> int:
    return int(np.clip(64 + rng.uniform(-spread, spread), 0, 127))


# ---------------------------------------------------------------- drums

# 16-step patterns: kick and snare hits per style (several grooves each)
GROOVES = {
    "rock": [((0, 8), (4, 12)), ((0, 6, 8), (4, 12)), ((0, 8, 10), (4, 12)), ((0, 3, 8), (4, 12))],
    "pop": [((0, 8), (4, 12)), ((0, 4, 8, 12), (4, 12)), ((0, 7, 8), (4, 12)), ((0, 10), (4, 12))],
    "ballad": [((0,), (8,)), ((0, 10), (8,)), ((0, 6), (8,))],
    "electronic": [((0, 4, 8, 12), (4, 12)), ((0, 4, 8, 12, 14), (4, 12))],
    "funk": [((0, 3, 10), (4, 12)), ((0, 6, 10, 11), (4, 12)), ((0, 2, 7, 10), (4, 12))],
}
HAT_STEPS = {"rock": 2, "pop": 2, "ballad": 2, "electronic": 1, "funk": 1}


def drums(style: str, sections, grid: Grid, rng, song: Song) -> pretty_midi.Instrument:
    """Kick, snare (or clap), hats or ride, crashes at section starts, a fill every 4 bars."""
    kit = pretty_midi.Instrument(0, is_drum=True, name="drums")
    _setup(kit, 64, rng)
    grooves = GROOVES[style]
    kicks, snares = grooves[rng.integers(len(grooves))]
    snare = CLAP if style == "electronic" and rng.uniform() < 0.6 else SNARE
    if style == "ballad" and rng.uniform() < 0.5:
        snare = RIM
    for bar, section in enumerate(sections):
        loud = section == "chorus"
        cymbal = RIDE if loud and rng.uniform() < 0.5 else CLOSED_HAT
        fill = bar % 4 == 3 and bar + 1 < len(sections) and rng.uniform() < 0.7
        last = 12 if fill else 16
        notes = kit.notes
        if bar % BARS_PER_SECTION == 0 and (bar > 0 or rng.uniform() < 0.5):
            notes.append(grid.note(CRASH, bar, 0, 8, 110))
        for step in kicks:
            if step < last:
                notes.append(grid.note(KICK, bar, step, 1, 112 if step == 0 else 98))
        if section != "intro" or rng.uniform() < 0.5:
            for step in snares:
                if step < last:
                    notes.append(grid.note(snare, bar, step, 1, 108))
            if style == "funk":  # ghost notes
                for step in (7, 9, 14):
                    if rng.uniform() < 0.4 and step < last:
                        notes.append(grid.note(SNARE, bar, step, 1, 40))
        notes.extend(_hats(style, cymbal, last, bar, grid))
        if style in ("pop", "funk") and loud and rng.uniform() < 0.5:
            for step in range(0, 16, 2):
                notes.append(grid.note(TAMBOURINE, bar, step, 1, 60))
        if fill:
            notes.extend(_fill(bar, grid, rng))
    song.parts.append({"role": "drums", "program": 0, "pan": 64})
    return kit


def _hats(style: str, cymbal: int, last: int, bar: int, grid: Grid) -> list[pretty_midi.Note]:
    """Hats or ride up to step ``last``: 8ths (16ths in funk), accents on the beats;
    electronic: closed 16ths under open hats on the off-beats."""
    notes = []
    for step in range(0, last, HAT_STEPS[style]):
        if style == "electronic" and step % 4 == 2:
            notes.append(grid.note(OPEN_HAT, bar, step, 1.5, 90))
        else:
            notes.append(grid.note(cymbal, bar, step, 1, 95 if step % 4 == 0 else 68))
    return notes


def _fill(bar: int, grid: Grid, rng) -> list[pretty_midi.Note]:
    """The last beat: snare and toms falling in pitch, 16ths."""
    toms = [SNARE, *sorted(TOMS, reverse=True)]
    start = rng.integers(len(toms) - 3)
    return [
        grid.note(toms[start + i], bar, 12 + i, 1, 90 + 6 * i)
        for i in range(4)
        if rng.uniform() < 0.9
    ]


# ---------------------------------------------------------------- harmony


def chord_of(song: Song, bar: int) -> list[int]:
    """The bar's triad as pitch classes above the tonic (root first)."""
    scale = MINOR_SCALE if song.minor else MAJOR_SCALE
    degree = song.progression[bar % len(song.progression)]
    return [scale[(degree + i) % 7] + 12 * ((degree + i) // 7) for i in (0, 2, 4)]


def _voicing(song: Song, bar: int, low: int) -> list[int]:
    """The bar's triad voiced at or above MIDI pitch ``low``."""
    root = song.key + chord_of(song, bar)[0]
    base = low + (root - low) % 12
    return [base + (p - chord_of(song, bar)[0]) for p in chord_of(song, bar)]


BASS_PATTERNS = {
    "rock": ((0, 2, 4, 6, 8, 10, 12, 14), (0, 0, 0, 0, 0, 0, 0, 0)),
    "pop": ((0, 6, 8, 14), (0, 0, 0, 12)),
    "ballad": ((0, 8), (0, 7)),
    "electronic": ((2, 6, 10, 14), (0, 12, 0, 12)),
    "funk": ((0, 3, 6, 8, 10, 11, 14), (0, 12, 0, 7, 0, 12, 10)),
}


def bass(style: Style, song: Song, sections, grid: Grid, rng) -> pretty_midi.Instrument:
    """Roots of the chords in the style's rhythm (octaves, fifths), E1..E3."""
    kind = style.basses[rng.integers(len(style.basses))]
    program = int(rng.choice(BASSES[kind]))
    instrument = pretty_midi.Instrument(program, name="bass")
    pan = _pan(rng, 6)
    _setup(instrument, pan, rng)
    steps, intervals = BASS_PATTERNS[style.name]
    length = min(np.diff([*steps, 16]))
    for bar, section in enumerate(sections):
        root = 28 + (song.key + chord_of(song, bar)[0] - 28) % 12
        pattern = ((0,), (0,)) if section == "intro" else (steps, intervals)
        for step, interval in zip(*pattern, strict=True):
            note_length = 16 if section == "intro" else length * rng.uniform(0.6, 0.95)
            instrument.notes.append(grid.note(root + interval, bar, step, note_length, 100))
    song.parts.append({"role": "bass", "program": program, "pan": pan})
    return instrument


def harmony(programs, role: str, song: Song, sections, grid: Grid, rng) -> pretty_midi.Instrument:
    """A chord part: ``pad`` (held chords), ``strum``/``comp`` (rhythmic chords),
    ``power`` (root-fifth-octave 8ths), ``arp`` (broken chords), ``chops`` (short 16th
    hits), ``stabs`` (short accents)."""
    program = int(rng.choice(programs))
    instrument = pretty_midi.Instrument(program, name=role)
    pan = _pan(rng, 50)
    _setup(instrument, pan, rng)
    low = int(rng.integers(48, 60))
    rhythm = {
        "pad": [(0, 16)],
        "strum": [(s, 2) for s in (0, 3, 6, 8, 10, 12, 14)],
        "comp": [(s, 2) for s in (0, 4, 6, 10, 12)] if rng.uniform() < 0.5 else [(0, 4), (8, 4)],
        "power": [(s, 1.8) for s in range(0, 16, 2)],
        "chops": [(s, 0.6) for s in (2, 6, 7, 10, 14)],
        "stabs": [(s, 1) for s in (0, 3, 6, 10)],
    }
    for bar, section in enumerate(sections):
        if section == "intro" and rng.uniform() < 0.5:
            continue
        chord = _voicing(song, bar, low)
        if role == "power":
            chord = [chord[0] - 12, chord[0] - 5, chord[0]]
        velocity = 95 if section == "chorus" else 80
        if role == "arp":
            tones = chord + [chord[0] + 12]
            every = 2 if rng.uniform() < 0.7 else 1
            for i, step in enumerate(range(0, 16, every)):
                instrument.notes.append(grid.note(tones[i % 4], bar, step, every * 1.5, velocity))
            continue
        for step, length in rhythm[role]:
            for pitch in chord:
                instrument.notes.append(grid.note(pitch, bar, step, length, velocity))
    song.parts.append({"role": role, "program": program, "pan": pan})
    return instrument


def lead(song: Song, sections, grid: Grid, rng) -> pretty_midi.Instrument:
    """A melodic lead that is not a voice (synth lead, sax, guitar solo, flute, trumpet,
    violin): a stepwise walk on the scale, 8ths and quarters with rests, in some sections."""
    program = int(rng.choice(LEADS))
    instrument = pretty_midi.Instrument(program, name="lead")
    pan = _pan(rng, 30)
    _setup(instrument, pan, rng)
    scale = MINOR_SCALE if song.minor else MAJOR_SCALE
    degree = int(rng.integers(7, 14))
    playing = {s for s in set(sections) if rng.uniform() < 0.6} or {"chorus"}
    for bar, section in enumerate(sections):
        if section not in playing:
            continue
        step = 0.0
        while step < 16:
            length = float(rng.choice((1, 2, 2, 4, 6)))
            if rng.uniform() < 0.8:
                degree = int(np.clip(degree + rng.integers(-2, 3), 3, 20))
                pitch = 60 + song.key % 12 + scale[degree % 7] + 12 * (degree // 7 - 1)
                instrument.notes.append(grid.note(pitch, bar, step, length * 0.9, 96))
            step += length
    song.parts.append({"role": "lead", "program": program, "pan": pan})
    return instrument
