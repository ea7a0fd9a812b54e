"""train/data.py: dataset readers on generated layouts and the seed's random-mix dataset."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_sep.errors import UserError
from train.data import (
    MemoryTrack,
    RandomMixDataset,
    fixed_examples,
    load_musdb,
    load_tracks,
    split_mir1k,
)

RATE = 16000
WINDOW = 7680
STEMS = ("drums", "bass", "other", "vocals")


def tone(freq: float, seconds: float, rate: int = RATE, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_musdb(root: Path, songs: int = 2, rate: int = RATE, seconds: float = 1.0) -> Path:
    """``root/{train,test}/<song>/<stem>.wav``, stereo, one tone per stem."""
    for split in ("train", "test"):
        for song in range(songs):
            song_dir = root / split / f"song{song}"
            song_dir.mkdir(parents=True)
            for index, stem in enumerate(STEMS):
                audio = tone(110 * (index + 1) * (song + 1), seconds, rate)
                sf.write(song_dir / f"{stem}.wav", np.stack([audio, audio], axis=1), rate)
    return root


def write_mir1k(
    root: Path, singers=("ann", "bob", "cat"), clips: int = 2, seconds: float = 1.0
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for s, singer in enumerate(singers):
        for clip in range(clips):
            accompaniment = tone(200 + 50 * s, seconds)
            vocals = tone(600 + 100 * clip, seconds, amplitude=0.2)
            sf.write(
                root / f"{singer}_1_{clip + 1:02d}.flac", np.stack([accompaniment, vocals], 1), RATE
            )
    return root


def memory_tracks(count: int = 3, seconds: float = 1.0) -> list[MemoryTrack]:
    return [
        MemoryTrack(
            f"t{i}",
            {"accompaniment": tone(200 + 40 * i, seconds), "vocals": tone(700 + 30 * i, seconds)},
        )
        for i in range(count)
    ]


def test_batches_have_the_models_shapes_and_the_mixture_is_the_sum_of_stems():
    tracks = memory_tracks()
    dataset = RandomMixDataset(tracks, ("vocals",), 3, WINDOW, 4, augmentation=False, seed=1)
    x, y = dataset[0]
    assert x.shape == (3, WINDOW) and x.dtype == np.float32
    assert y.shape == (3, 1, WINDOW) and y.dtype == np.float32
    # every example = vocals + accompaniment; check with an original-pairs dataset too
    pairs = RandomMixDataset(tracks, ("vocals", "accompaniment"), 2, WINDOW, 4, augmentation=False,
                             original_pairs_fraction=1.0)  # fmt: skip
    x, y = pairs[1]
    np.testing.assert_allclose(x, y.sum(axis=1), atol=1e-6)
    assert len(dataset) == 4


def test_the_same_batch_index_and_epoch_give_the_same_batch():
    dataset = RandomMixDataset(memory_tracks(), ("vocals",), 2, WINDOW, 4, seed=5)
    first = dataset[2]
    np.testing.assert_array_equal(dataset[2][0], first[0])
    dataset.on_epoch_end()
    assert not np.array_equal(dataset[2][0], first[0])


def test_augmentation_changes_audio_only_when_on():
    tracks = [MemoryTrack("only", {"accompaniment": tone(300, 0.48), "vocals": tone(900, 0.48)})]
    # one track shorter than... exactly one window: every chunk is the whole track
    plain = RandomMixDataset(tracks, ("vocals",), 4, WINDOW, 2, augmentation=False)
    _, y = plain[0]
    for example in y[:, 0]:
        np.testing.assert_array_equal(example, tracks[0].audio["vocals"])
    augmented = RandomMixDataset(tracks, ("vocals",), 4, WINDOW, 2, augmentation=True, seed=3)
    _, y = augmented[0]
    assert not any(np.allclose(example, tracks[0].audio["vocals"]) for example in y[:, 0])


def test_short_tracks_are_zero_padded_to_the_window():
    tracks = [MemoryTrack("short", {"accompaniment": tone(300, 0.2), "vocals": tone(900, 0.2)})]
    x, _ = RandomMixDataset(tracks, ("vocals",), 1, WINDOW, 1, augmentation=False)[0]
    assert np.all(x[0, int(0.2 * RATE) :] == 0)
    assert np.abs(x[0, : int(0.2 * RATE)]).max() > 0.1


def test_a_stem_silent_everywhere_is_a_clear_error():
    silent = [
        MemoryTrack("t", {"accompaniment": tone(300, 1.0), "vocals": np.zeros(RATE, np.float32)})
    ]
    dataset = RandomMixDataset(silent, ("vocals",), 1, WINDOW, 1, augmentation=False)
    with pytest.raises(UserError, match="stem 'vocals' was silent"):
        dataset[0]


def test_silent_chunks_are_drawn_again():
    # vocals only in the second half: every accepted chunk must reach into it
    vocals = np.concatenate([np.zeros(RATE, np.float32), tone(900, 1.0)])
    track = MemoryTrack("t", {"accompaniment": tone(300, 2.0), "vocals": vocals})
    _, y = RandomMixDataset([track], ("vocals",), 8, WINDOW, 1, augmentation=False)[0]
    assert np.all(np.abs(y).mean(axis=-1) >= 0.01)


def test_mismatched_stem_lengths_warn_and_use_the_shortest(tmp_path, caplog):
    root = write_musdb(tmp_path / "musdb", songs=1)
    song = root / "train" / "song0"
    sf.write(song / "bass.wav", np.zeros((RATE // 2, 2), np.float32), RATE)
    with caplog.at_level(logging.WARNING):
        tracks = load_musdb(root, "train")
    assert tracks[0].length == RATE // 2
    assert "different lengths" in caplog.text
    memory = MemoryTrack("m", {"accompaniment": tone(300, 1.0), "vocals": tone(900, 0.5)})
    assert memory.length == RATE // 2


def test_musdb_hq_is_resampled_to_the_model_rate(tmp_path):
    root = write_musdb(tmp_path / "hq", songs=1, rate=44100, seconds=1.0)
    train, val, _ = load_tracks(root, "musdb-hq")
    assert train[0].length == RATE and len(val) == 1
    chunk = train[0].read("vocals", 0, RATE)
    # the vocals stem is a 440 Hz tone: its spectrum peaks at 440 Hz at 16 kHz
    spectrum = np.abs(np.fft.rfft(chunk))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)


def test_mir1k_holds_out_whole_singers(tmp_path):
    root = write_mir1k(tmp_path / "mir1k")
    train, val, info = load_tracks(root, "mir1k", val_singers=["bob"])
    assert info["val_singers"] == ["bob"]
    assert {t.name.split("_")[0] for t in train} == {"ann", "cat"}
    assert {t.name for t in val} == {"bob_1_01", "bob_1_02"}
    np.testing.assert_allclose(val[0].audio["vocals"], tone(600, 1.0, amplitude=0.2), atol=1e-3)
    files = sorted(root.glob("*.flac"))
    _, by_share = split_mir1k(files, None, 0.34, seed=0)
    assert len({p.stem.split("_")[0] for p in by_share}) == 1
    with pytest.raises(UserError, match="unknown singer"):
        split_mir1k(files, ["zed"], 0.1, seed=0)


def test_fixed_validation_examples_are_real_mixtures_and_repeatable():
    tracks = memory_tracks(4)
    x, y = fixed_examples(tracks, ("vocals",), WINDOW, 6, seed=2)
    x2, _ = fixed_examples(tracks, ("vocals",), WINDOW, 6, seed=2)
    assert x.shape == (6, WINDOW) and y.shape == (6, 1, WINDOW)
    np.testing.assert_array_equal(x, x2)
    # mixture - vocals = that track's accompaniment: a single tone of a known track
    residual = x - y[:, 0]
    assert np.all(np.abs(residual).max(axis=1) > 0.1)


@pytest.mark.parametrize(
    "make, fmt, message",
    [
        (lambda d: d / "missing", "mir1k", "not a directory"),
        (lambda d: d, "mir1k", "no .wav or .flac"),
        (lambda d: d, "musdb", "no 'train' folder"),
        (lambda d: d, "wav", "--format must be one of"),
    ],
)
def test_bad_data_is_one_clear_error(tmp_path, make, fmt, message):
    with pytest.raises(UserError, match=message):
        load_tracks(make(tmp_path), fmt)


def test_an_empty_split_and_an_unreadable_file_are_clear_errors(tmp_path):
    root = tmp_path / "musdb"
    (root / "train").mkdir(parents=True)
    with pytest.raises(UserError, match="no song folders"):
        load_musdb(root, "train")
    bad = write_mir1k(tmp_path / "mir1k", singers=("ann", "bob"))
    (bad / "bob_1_01.flac").write_bytes(b"not audio at all")
    with pytest.raises(UserError, match="cannot read audio file"):
        load_tracks(bad, "mir1k", val_singers=["ann"])
