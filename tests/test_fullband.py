"""train/fullband: composed General MIDI songs rendered with FluidSynth, their cache, and the
training examples that place a voice in them; python -m train --fullband-share end to end."""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from stream_sep.errors import UserError  # noqa: E402
from stream_sep.models.contract import SAMPLE_RATE  # noqa: E402
from tests.helpers import voice_over_band, write_mir1k_like  # noqa: E402
from train.data import RandomMixDataset, load_mir1k_clip  # noqa: E402
from train.fullband import cache, mix  # noqa: E402
from train.fullband.compose import (  # noqa: E402
    CLAP,
    CLOSED_HAT,
    KICK,
    OPEN_HAT,
    RIDE,
    RIM,
    SECONDS,
    SNARE,
    compose,
)
from train.fullband.render import (  # noqa: E402
    PEAK,
    RENDER_RATE,
    TAIL_SECONDS,
    render_midi,
    render_song,
)

WINDOW = 7680


@pytest.fixture(scope="module")
def rendered():
    """The song of seed (5, 0) rendered twice, and the song of (5, 1)."""
    first, song = render_song([5, 0])
    again, _ = render_song([5, 0])
    other, _ = render_song([5, 1])
    return first, song, again, other


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """Two songs in a cache folder."""
    return cache.ensure_songs(tmp_path_factory.mktemp("fullband"), 2, seed=3, jobs=2)


def voice(seconds: float = WINDOW / SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    return voice_over_band(seconds, SAMPLE_RATE, seed)[1]


# ---------------------------------------------------------------- composing


def test_a_seed_composes_one_song_and_another_seed_another():
    first, song = compose(np.random.default_rng(1))
    again, same = compose(np.random.default_rng(1))
    other, _ = compose(np.random.default_rng(2))

    def notes(midi):
        return [(i.program, i.is_drum, n.pitch, n.velocity, n.start, n.end)
                for i in midi.instruments for n in i.notes]  # fmt: skip

    assert notes(first) == notes(again) and song == same
    assert notes(first) != notes(other)
    assert SECONDS[0] <= song.seconds <= SECONDS[1] + 240 / song.tempo


def test_songs_have_drums_bass_two_to_four_other_parts_and_pans():
    styles = set()
    for seed in range(12):
        midi, song = compose(np.random.default_rng(seed))
        styles.add(song.style)
        kit = [i for i in midi.instruments if i.is_drum]
        assert len(kit) == 1
        pitches = {n.pitch for n in kit[0].notes}
        assert KICK in pitches and pitches & {SNARE, RIM, CLAP}
        assert pitches & {CLOSED_HAT, OPEN_HAT, RIDE}, song.style
        roles = [p["role"] for p in song.parts]
        assert roles[:2] == ["drums", "bass"]
        others = [r for r in roles[2:] if r != "lead"]
        assert 2 <= len(others) <= 4
        # humanised: velocities vary
        assert len({n.velocity for n in kit[0].notes}) > 5
        pans = [c.value for i in midi.instruments for c in i.control_changes if c.number == 10]
        assert len(pans) == len(midi.instruments) and len(set(pans)) > 2
    assert len(styles) >= 3


# ---------------------------------------------------------------- rendering


def test_a_render_is_stereo_at_44_1_khz_as_long_as_the_song(rendered):
    audio, song, _, _ = rendered
    assert audio.dtype == np.float32 and audio.shape[0] == 2
    assert abs(audio.shape[1] - (song.seconds + TAIL_SECONDS) * RENDER_RATE) < 0.1 * RENDER_RATE
    assert np.isfinite(audio).all()
    assert np.max(np.abs(audio)) == pytest.approx(PEAK, abs=1e-4)
    # two channels that differ (panned parts), neither silent nor out of phase
    assert not np.allclose(audio[0], audio[1], atol=1e-3)
    assert np.corrcoef(audio[0], audio[1])[0, 1] > 0.3


def test_the_same_seed_renders_bit_identical_audio_and_another_seed_other_audio(rendered):
    first, _, again, other = rendered
    assert np.array_equal(first, again)
    assert first.shape != other.shape or not np.allclose(first, other, atol=1e-3)


def test_the_render_is_full_band(rendered):
    """Energy above 4 kHz (cymbals, hats, bright instruments), a real share of the total."""
    audio = rendered[0].mean(axis=0)
    power = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / RENDER_RATE)
    high = power[freqs > 4000].sum() / power.sum()
    assert high > 1e-3, high
    # and above the model's own band (8 kHz): the render is not already band-limited
    assert power[freqs > 10000].sum() / power.sum() > 1e-5


def onset_rise_db(audio: np.ndarray, onsets, rate: int = RENDER_RATE) -> float:
    """The median rise of the level (5 ms frames) at ``onsets`` (seconds): the loudest frame
    of the next 60 ms over the mean of the 30 ms before, in dB."""
    hop = int(0.005 * rate)
    mono = audio.mean(axis=0)
    frames = len(mono) // hop
    level = 10 * np.log10(np.mean(mono[: frames * hop].reshape(frames, hop) ** 2, axis=1) + 1e-12)
    starts = [int(t / 0.005) for t in onsets]
    rises = [
        level[f : f + 12].max() - level[f - 6 : f].mean() for f in starts if 6 <= f < frames - 12
    ]
    assert len(rises) > 20
    return float(np.median(rises))


def test_drum_hits_are_transients_in_the_render(rendered):
    """At the loud kicks and snares the level jumps, by more than the same song without its
    drums jumps there; and the mastered song keeps the jumps."""
    midi, _ = compose(np.random.default_rng([5, 0]))
    kit = next(i for i in midi.instruments if i.is_drum)
    hits = sorted(
        {n.start for n in kit.notes if n.pitch in (KICK, SNARE, CLAP) and n.velocity > 90}
    )
    with_drums = onset_rise_db(render_midi(midi), hits)
    midi.instruments.remove(kit)
    without = onset_rise_db(render_midi(midi), hits)
    assert with_drums > without + 2.0 and with_drums > 3.0, (with_drums, without)
    assert onset_rise_db(rendered[0], hits) > 3.0


# ---------------------------------------------------------------- the cache


def test_the_cache_holds_stereo_songs_at_the_model_rate_and_reuses_them(songs, caplog):
    assert len(songs) == 2
    for song in songs:
        assert SECONDS[0] * SAMPLE_RATE * 0.9 < song.length < (SECONDS[1] + 2) * SAMPLE_RATE
        chunk = song.read(song.length - 100, 300)
        assert chunk.shape == (2, 300) and chunk.dtype == np.float32
        assert not chunk[:, 100:].any()  # zero past the end
        assert song.path.with_suffix(".json").is_file()
    folder = songs[0].path.parent
    stamps = [s.path.stat().st_mtime_ns for s in songs]
    caplog.set_level("INFO")
    again = cache.ensure_songs(folder.parent, 2, seed=3)
    assert [s.path.stat().st_mtime_ns for s in again] == stamps
    assert "rendering" not in caplog.text
    description = cache.describe(again)
    assert description["songs"] == 2 and 0 < description["megabytes"] < 5


def test_the_cached_song_is_the_render_at_16_khz(songs):
    audio, description = cache.render_to_model_rate([3, 0])
    stored = songs[0].read(0, songs[0].length)
    assert stored.shape == audio.shape
    # 16-bit FLAC: within one quantisation step
    assert np.max(np.abs(stored - audio)) <= 1.5 / 32768
    assert description["style"]


def test_a_bad_song_count_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="--fullband-songs must be at least 1"):
        cache.ensure_songs(tmp_path, 0)


# ---------------------------------------------------------------- examples


def test_the_voice_is_placed_near_the_centre_at_a_drawn_level(songs):
    rng = np.random.default_rng(0)
    mixer = mix.FullBandMixer(songs)
    ratios = []
    for seed in range(12):
        band = mixer.band_chunk(WINDOW, rng)
        placed = mix.place_voice(voice(seed=seed), rng)
        assert placed.shape == (2, WINDOW)
        left, right = (np.sqrt(np.mean(c**2)) for c in placed)
        assert abs(20 * np.log10(left / right)) < 3.0  # |pan| <= 0.15: within 2.3 dB
        balanced = mix.balance(placed, band, rng)
        ratios.append(mix.level_db(balanced) - mix.level_db(band))
    low, high = mix.VOCAL_TO_BAND_DB
    assert all(low - 1e-3 <= r <= high + 1e-3 for r in ratios), ratios
    assert max(ratios) - min(ratios) > 3.0  # drawn, not fixed


def test_an_example_is_one_channel_whose_stems_sum_to_a_mixture_that_does_not_clip(songs):
    mixer = mix.FullBandMixer(songs)
    for seed in range(6):
        stems = mixer.example(
            voice(seed=seed), np.random.default_rng(seed), ("accompaniment", "vocals")
        )
        assert set(stems) == {"accompaniment", "vocals"}
        assert all(a.shape == (WINDOW,) and a.dtype == np.float32 for a in stems.values())
        mixture = stems["accompaniment"] + stems["vocals"]
        assert mix.PEAK[0] - 1e-4 <= np.max(np.abs(mixture)) <= mix.PEAK[1] + 1e-4
        assert np.isfinite(mixture).all()
    # a MUSDB layout: the band is the first other stem, the rest silent
    stems = mixer.example(voice(), np.random.default_rng(0), ("drums", "bass", "other", "vocals"))
    assert stems["drums"].any() and not stems["bass"].any() and not stems["other"].any()


def test_pick_channel_takes_left_right_or_mid():
    stereo = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)
    assert mix.pick_channel(stereo, "left").tolist() == [1, 2]
    assert mix.pick_channel(stereo, "right").tolist() == [3, 6]
    assert mix.pick_channel(stereo, "mid").tolist() == [2, 4]


def test_the_dataset_mixes_full_band_examples_by_share_and_the_mixture_is_their_sum(
    songs, tmp_path
):
    clips = write_mir1k_like(tmp_path / "mir1k", ("ann",), clips=2, seconds=1.0)
    tracks = [load_mir1k_clip(p) for p in clips]

    def dataset(share: float, **kwargs):
        return RandomMixDataset(tracks, ("vocals",), 4, WINDOW, 2, augmentation="none", seed=1,
                                fullband=mix.FullBandMixer(songs), fullband_share=share, **kwargs)  # fmt: skip

    x, y = dataset(1.0)[0]
    assert x.shape == (4, WINDOW) and y.shape == (4, 1, WINDOW)
    # the same generator gives the same stems: the mixture is exactly their sum
    rng = np.random.default_rng([1, 0, 0])
    import random

    random.seed(int(rng.integers(2**31)))
    np.random.seed(int(rng.integers(2**31)))
    full = dataset(1.0)
    stems = full.example(rng)
    np.testing.assert_array_equal(x[0], stems["accompaniment"] + stems["vocals"])
    np.testing.assert_array_equal(y[0, 0], stems["vocals"])
    # the accompaniment is a rendered band, not silence
    assert np.max(np.abs(x[0] - y[0, 0])) > 0.01
    # deterministic for a seed, bit for bit
    np.testing.assert_array_equal(dataset(1.0)[0][0], x)
    # share 0 is today's data, and share 0 draws nothing more from the generator
    plain = RandomMixDataset(tracks, ("vocals",), 4, WINDOW, 2, augmentation="none", seed=1)
    np.testing.assert_array_equal(dataset(0.0)[1][0], plain[1][0])
    with pytest.raises(UserError, match="vocals alone"):
        RandomMixDataset(tracks, ("vocals", "accompaniment"), 4, WINDOW, 2, augmentation="none",
                         fullband=mix.FullBandMixer(songs), fullband_share=0.5)  # fmt: skip


# ---------------------------------------------------------------- python -m train


def test_python_m_train_with_fullband_share_1_trains_records_and_resumes(tmp_path, capsys):
    from tests.test_train_fit import FAST
    from train import runs
    from train.cli import main

    write_mir1k_like(tmp_path / "mir1k", ("ann", "bob"), clips=2, seconds=1.0)
    root = tmp_path / "runs"
    args = ["--data", str(tmp_path / "mir1k"), "--format", "mir1k", *FAST, "--val-singers", "bob",
            "--steps-per-epoch", "2", "--fullband-share", "1", "--fullband-songs", "2",
            "--fullband-seed", "4", "--runs-dir", str(root), "--run-name", "fb"]  # fmt: skip
    assert main([*args, "--epochs", "1"]) == 0
    run_dir = root / "fb"
    config = runs.read_run_config(run_dir)
    training = config["training"]
    assert (training["fullband_share"], training["fullband_songs"], training["fullband_seed"]) == (
        1.0,
        2,
        4,
    )
    recorded = config["data"]["fullband"]
    assert recorded["songs"] == 2 and recorded["folder"].startswith(str(run_dir.resolve()))
    assert len(list((run_dir / f"fullband-v{cache.VERSION}-seed4").glob("song-*.flac"))) == 2
    # validation stays on the held-out singer's clips
    assert config["data"]["val_singers"] == ["bob"]
    rows = (run_dir / runs.LOG).read_text().splitlines()
    assert len(rows) == 2 and "val_sdr" in rows[0]
    # resume keeps the recipe (and renders nothing new)
    assert main(["--resume", "--runs-dir", str(root), "--run-name", "fb", "--epochs", "2"]) == 0
    assert runs.read_run_config(run_dir)["training"]["fullband_share"] == 1.0
    assert runs.read_state(run_dir)["steps_done"] == 4
    # the export writes the recipe (share, songs, seed) with the seed and steps into the model
    from export import provenance
    from train.config import ModelConfig

    facts = provenance.read_provenance(
        run_dir / "last.keras", ModelConfig.from_dict(config["model"])
    )
    recorded = json.loads(facts["provenance.training"])
    assert (recorded["fullband_share"], recorded["fullband_songs"], recorded["fullband_seed"]) == (
        1.0,
        2,
        4,
    )
    assert recorded["seed"] == 21 and facts["provenance.steps"] == "4"
    # bad values: one line, exit 2
    capsys.readouterr()
    assert main([*args[:-2], "--run-name", "bad", "--fullband-share", "1.5"]) == 2
    assert "--fullband-share must be in [0, 1], got 1.5" in capsys.readouterr().err
    assert not (root / "bad").exists()


def test_a_missing_renderer_or_soundfont_is_one_clear_error(tmp_path, monkeypatch):
    from train.fullband import check_requirements

    check_requirements()
    with pytest.raises(UserError, match="General MIDI SoundFont .*none.sf2 .*fluid-soundfont-gm"):
        check_requirements(tmp_path / "none.sf2")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="fluidsynth program"):
        check_requirements()
