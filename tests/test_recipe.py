"""train/augment.py: the augmentation recipes (real audiomentations, real files)."""

from __future__ import annotations

import argparse
import random
import re

import numpy as np
import pytest
import soundfile as sf

from stream_sep.errors import UserError
from train.augment import (
    IMPULSE_RESPONSES,
    Compressor,
    ProducedAugmenter,
    Reverb,
    ensure_impulse_responses,
    make_augmenter,
    recipe_name,
)
from train.data import MemoryTrack, RandomMixDataset

RATE = 16000
WINDOW = 65024


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Impulse responses go to a per-test cache, never to ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    return ensure_impulse_responses(tmp_path_factory.mktemp("rooms"))


def voice(seconds: float = WINDOW / RATE, seed: int = 0, amplitude: float = 0.3) -> np.ndarray:
    """A voice-like chunk: a vibrato harmonic tone in syllables, with breath noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 220 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, 8))
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    audio = tone * syllables + 0.05 * rng.normal(size=t.size)
    return (amplitude * audio / np.abs(audio).max()).astype(np.float32)


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def level_db(vocals: np.ndarray, accompaniment: np.ndarray) -> float:
    return 20 * np.log10(rms(vocals) / rms(accompaniment))


# ---------------------------------------------------------------- recipe names


def test_recipe_names_and_the_flag_of_older_runs():
    assert recipe_name(True) == "seed" and recipe_name(False) == "none"
    assert recipe_name("produced") == "produced"
    with pytest.raises(UserError, match="--augmentation must be one of none, seed, produced"):
        recipe_name("loud")
    assert make_augmenter("none") is None
    assert type(make_augmenter("seed")).__name__ == "Augmenter"
    assert isinstance(make_augmenter("produced"), ProducedAugmenter)


def test_train_settings_read_old_and_new_augmentation_values():
    from train.fit import TrainSettings

    assert TrainSettings(augmentation=True).augmentation == "seed"
    assert TrainSettings(augmentation=False).augmentation == "none"
    assert TrainSettings().augmentation == "seed"
    assert TrainSettings(augmentation="produced").augmentation == "produced"


def test_the_command_line_options():
    from train.cli import get_parser

    def parsed(*args: str) -> argparse.Namespace:
        return get_parser().parse_args(["--data", "x", *args])

    assert parsed("--augmentation", "produced").augmentation == "produced"
    assert parsed("--no-augmentation").augmentation == "none"
    assert not hasattr(parsed(), "augmentation")  # the default comes from TrainSettings
    with pytest.raises(UserError, match="invalid choice: 'wild'"):
        parsed("--augmentation", "wild")
    assert parsed("--vocal-pitch-shift=-7,2,0.5").vocal_pitch_shift == [-7, 2, 0.5]
    # a value starting with "-" is taken without "=" too (argparse alone would refuse it)
    assert parsed("--vocal-pitch-shift", "-7,2,0.5").vocal_pitch_shift == [-7, 2, 0.5]
    assert parsed("--vocal-pitch-shift", "-7,2,0.5", "--seed", "3").seed == 3
    assert not hasattr(parsed(), "vocal_pitch_shift")  # the recipe's own unless given
    with pytest.raises(UserError, match="expected comma-separated numbers, got 'low,2,0.5'"):
        parsed("--vocal-pitch-shift", "low,2,0.5")


# ---------------------------------------------------------------- the vocals' pitch shift


def pitch_shifts(augmenter):
    return [t for t in augmenter.vocals if type(t).__name__ == "PitchShift"]


@pytest.mark.parametrize("recipe, own", [("seed", (-5, 5, 0.1)), ("produced", (-2, 2, 0.3))])
def test_vocal_pitch_shift_replaces_the_recipes_own(recipe, own, rooms, monkeypatch):
    monkeypatch.setattr("train.augment.ensure_impulse_responses", lambda **_: rooms)
    (default,) = pitch_shifts(make_augmenter(recipe))
    assert (default.min_semitones, default.max_semitones, default.p) == own
    (shift,) = pitch_shifts(make_augmenter(recipe, vocal_pitch_shift=(-7, 2, 0.5)))
    assert (shift.min_semitones, shift.max_semitones, shift.p) == (-7, 2, 0.5)


def test_vocal_pitch_shift_draws_in_its_range_at_its_probability():
    augmenter = make_augmenter("seed", vocal_pitch_shift=(-7, 2, 0.5))
    (shift,) = pitch_shifts(augmenter)
    chunk, draws, semitones = voice(seconds=0.25), 200, []
    for seed in range(draws):
        augmenter(chunk, "vocals", np.random.default_rng(seed))
        if shift.parameters["should_apply"]:
            semitones.append(shift.parameters["num_semitones"])
    assert abs(len(semitones) - draws / 2) <= 4.5 * np.sqrt(draws / 4)  # binomial(200, 0.5)
    assert -7 <= min(semitones) < -5 and 0 < max(semitones) <= 2  # both ends reached
    assert np.mean(semitones) == pytest.approx(-2.5, abs=0.8)  # lower on average


def test_a_shift_down_lowers_the_voice():
    augmenter = make_augmenter("seed", vocal_pitch_shift=(-7, -7, 1))
    augmenter.vocals = pitch_shifts(augmenter)  # the shift alone: no EQ or distortion
    chunk = voice(seed=1)
    out = augmenter(chunk, "vocals", np.random.default_rng(0))

    def fundamental(audio):
        spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
        freqs = np.fft.rfftfreq(audio.size, 1 / RATE)
        band = (freqs > 80) & (freqs < 300)
        return freqs[band][spectrum[band].argmax()]

    assert fundamental(chunk) == pytest.approx(220, abs=5)
    assert fundamental(out) == pytest.approx(220 * 2 ** (-7 / 12), abs=5)  # 146.8 Hz


@pytest.mark.parametrize(
    "value, augmentation, message",
    [
        ([-7, 2], "seed", "takes LOW,HIGH,P (three numbers)"),
        ([2, -7, 0.5], "seed", "-12 <= LOW <= HIGH <= 12 semitones and a probability P"),
        ([-13, 2, 0.5], "seed", "got -13,2,0.5"),
        ([-7, 2, 1.5], "produced", "a probability P in [0, 1], got -7,2,1.5"),
        ([-7, 2, 0.5], "none", "--vocal-pitch-shift needs an augmentation recipe"),
    ],
)
def test_vocal_pitch_shift_refuses_bad_values(value, augmentation, message):
    from train.fit import TrainSettings

    settings = TrainSettings(augmentation=augmentation, vocal_pitch_shift=value)
    with pytest.raises(UserError, match=re.escape(message)):
        settings.validate()
    TrainSettings(vocal_pitch_shift=[-7, 2, 0.5]).validate()  # a good value passes


# ---------------------------------------------------------------- the produced recipe


def test_the_produced_recipe_is_deterministic_for_a_seed(rooms):
    augmenter = ProducedAugmenter(impulse_responses=rooms)
    chunk = voice()
    outputs = {}
    for seed in range(8):
        first = augmenter(chunk, "vocals", np.random.default_rng(seed))
        # global generators disturbed in between: the result depends on rng alone
        random.seed(999)
        np.random.seed(999)
        again = augmenter(chunk, "vocals", np.random.default_rng(seed))
        np.testing.assert_array_equal(first, again)
        outputs[seed] = first
    assert len({o.tobytes() for o in outputs.values()}) == len(outputs)


def test_the_produced_recipe_keeps_shape_dtype_and_finiteness(rooms):
    augmenter = ProducedAugmenter(impulse_responses=rooms)
    chunks = {
        "voice": voice(),
        "full scale": np.sign(voice()).astype(np.float32),
        "nearly silent": voice(amplitude=1e-4),
        "short": voice(seconds=0.1),
    }
    for name, chunk in chunks.items():
        for seed in range(10):
            for stem in ("vocals", "accompaniment"):
                out = augmenter(chunk, stem, np.random.default_rng(seed))
                assert out.shape == chunk.shape and out.dtype == np.float32, (name, stem)
                assert np.all(np.isfinite(out)), (name, seed, stem)


def test_every_vocal_transform_fires_at_its_probability(rooms):
    augmenter = ProducedAugmenter(impulse_responses=rooms)
    fired = {type(t).__name__: 0 for t in augmenter.vocals}
    draws = 200
    chunk = voice(seconds=0.25)
    for seed in range(draws):
        augmenter(chunk, "vocals", np.random.default_rng(seed))
        for transform in augmenter.vocals:
            fired[type(transform).__name__] += bool(transform.parameters["should_apply"])
    expected = {type(t).__name__: t.p for t in augmenter.vocals}
    for name, count in fired.items():
        # binomial(200, p): 4.5 standard deviations at most
        spread = 4.5 * np.sqrt(draws * expected[name] * (1 - expected[name]))
        assert abs(count - draws * expected[name]) <= spread, (name, count)


def test_reverb_adds_a_decaying_tail_after_a_click_at_the_same_loudness(rooms):
    click = np.zeros(RATE, np.float32)
    click[1000:1016] = 0.8
    reverb = Reverb(rooms, p=1.0)
    for seed in range(6):
        random.seed(seed)
        wet = reverb(click, RATE)
        assert wet.shape == click.shape and wet.dtype == np.float32
        after = wet[1016 + 80 :]  # past the click and the shortest pre-delay
        assert np.sum(after**2) > 1e-3 * np.sum(wet**2), seed
        # the tail decays: the last tenth is quieter than the first after the click
        assert rms(after[-len(after) // 10 :]) < rms(after[: len(after) // 10])
        assert rms(wet) == pytest.approx(rms(click), rel=1e-3)


def test_the_synthetic_rooms_are_written_once_and_have_their_rt60(tmp_path):
    folder = ensure_impulse_responses(tmp_path / "a")
    files = sorted(folder.glob("room-*.wav"))
    assert len(files) == IMPULSE_RESPONSES
    assert ensure_impulse_responses(tmp_path / "a") == folder  # no rewrite
    other = ensure_impulse_responses(tmp_path / "b")
    for name in (files[0].name, files[-1].name):  # the same rooms (the header has a time stamp)
        np.testing.assert_array_equal(sf.read(other / name)[0], sf.read(folder / name)[0])
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".rooms-")]
    for path in files:
        response, rate = sf.read(path, dtype="float32")
        assert rate == RATE and response[0] == 1.0
        onset = int(np.flatnonzero(response[1:])[0]) + 1
        assert 0.005 * RATE - 1 <= onset <= 0.04 * RATE, path.name
        # Schroeder backward integration; RT60 from the -5..-25 dB slope
        tail = response[onset:].astype(np.float64)
        energy = np.cumsum(tail[::-1] ** 2)[::-1]
        decay = 10 * np.log10(energy / energy[0])
        t5, t25 = np.argmax(decay <= -5), np.argmax(decay <= -25)
        rt60 = 3 * (t25 - t5) / RATE
        assert 0.15 <= rt60 <= 1.3, (path.name, rt60)


def test_the_compressor_narrows_the_dynamics_and_keeps_the_loudness():
    quiet, loud = voice(0.5, amplitude=0.05), voice(0.5, seed=1, amplitude=0.5)
    audio = np.concatenate([quiet, loud, quiet])
    compressor = Compressor(p=1.0)
    for seed in range(5):
        random.seed(seed)
        out = compressor(audio, RATE)
        assert out.shape == audio.shape and out.dtype == np.float32
        half = len(quiet)
        before = level_db(audio[half + 2000 : 2 * half], audio[:half])
        after = level_db(out[half + 2000 : 2 * half], out[:half])
        assert after < before - 2, (seed, before, after)
        assert rms(out) == pytest.approx(rms(audio), rel=1e-3)


def test_balance_sets_the_vocal_to_accompaniment_ratio(rooms):
    augmenter = ProducedAugmenter(impulse_responses=rooms)
    stems = {"accompaniment": voice(seed=3, amplitude=0.4), "vocals": voice(amplitude=0.05)}
    original = level_db(stems["vocals"], stems["accompaniment"])
    levels = []
    for seed in range(200):
        balanced = augmenter.balance(stems, np.random.default_rng(seed))
        np.testing.assert_array_equal(balanced["accompaniment"], stems["accompaniment"])
        if not np.array_equal(balanced["vocals"], stems["vocals"]):
            levels.append(level_db(balanced["vocals"], balanced["accompaniment"]))
    assert original < -8  # so every applied draw moved the level
    assert min(levels) >= -8.0 - 1e-6 and max(levels) <= 4.0 + 1e-6
    assert max(levels) - min(levels) > 8  # spread over the range, not one value
    assert 0.7 <= len(levels) / 200 <= 0.9  # p = 0.8


# ---------------------------------------------------------------- in the training set


def memory_tracks(count: int = 3) -> list[MemoryTrack]:
    return [
        MemoryTrack(
            f"t{i}",
            {
                "accompaniment": voice(2.0, seed=10 + i, amplitude=0.4),
                "vocals": voice(2.0, seed=i, amplitude=0.2),
            },
        )  # fmt: skip
        for i in range(count)
    ]


def test_produced_batches_are_reproducible_finite_and_sum_to_the_mixture():
    tracks = memory_tracks()
    dataset = RandomMixDataset(tracks, ("vocals", "accompaniment"), 4, WINDOW, 3,
                               augmentation="produced", seed=7)  # fmt: skip
    x, y = dataset[1]
    assert x.shape == (4, WINDOW) and x.dtype == np.float32
    assert y.shape == (4, 2, WINDOW) and y.dtype == np.float32
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(y))
    np.testing.assert_allclose(x, y.sum(axis=1), atol=1e-5)
    again = RandomMixDataset(tracks, ("vocals", "accompaniment"), 4, WINDOW, 3,
                             augmentation="produced", seed=7)[1]  # fmt: skip
    np.testing.assert_array_equal(again[0], x)
    seed_recipe = RandomMixDataset(tracks, ("vocals", "accompaniment"), 4, WINDOW, 3,
                                   augmentation="seed", seed=7)[1]  # fmt: skip
    assert not np.allclose(seed_recipe[0], x)


def test_the_seed_recipe_is_what_augmentation_true_was():
    tracks = memory_tracks()
    by_flag = RandomMixDataset(tracks, ("vocals",), 2, WINDOW, 2, augmentation=True, seed=4)[0]
    by_name = RandomMixDataset(tracks, ("vocals",), 2, WINDOW, 2, augmentation="seed", seed=4)[0]
    np.testing.assert_array_equal(by_flag[0], by_name[0])
    none = RandomMixDataset(tracks, ("vocals",), 2, WINDOW, 2, augmentation="none", seed=4)
    assert none.augmenter is None
