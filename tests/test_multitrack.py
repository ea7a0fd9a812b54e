"""train/multitrack: training examples from real multitrack songs (folders of stems), and
python -m train --multitrack end to end."""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402

from stream_sep.errors import UserError  # noqa: E402
from stream_sep.models.contract import SAMPLE_RATE  # noqa: E402
from tests.helpers import write_mir1k_like  # noqa: E402
from tests.helpers import write_stems_song as write_song  # noqa: E402
from train import multitrack  # noqa: E402
from train.data import RandomMixDataset, load_mir1k_clip  # noqa: E402
from train.fullband.mix import PEAK  # noqa: E402

WINDOW = 7680
FILE_RATE = 44100  # the rate tests.helpers.write_stems_song writes


@pytest.fixture(scope="module")
def songs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("multitrack")
    write_song(root / "alpha", 2.0, seed=1)
    write_song(root / "beta", 1.5, seed=2, channels=1)
    write_song(root / "gamma", 1.2, seed=3, parts=True)
    return root


def test_songs_are_read_at_the_model_rate_in_stereo_and_chosen_by_name(songs_root):
    songs = multitrack.load_stem_songs(songs_root)
    assert [song.name for song in songs] == ["alpha", "beta", "gamma"]
    alpha, beta, gamma = songs
    assert alpha.vocals.shape == alpha.accompaniment.shape == (2, 2 * SAMPLE_RATE)
    assert alpha.vocals.dtype == np.float32
    # a mono song is both channels; drums + bass + other are the accompaniment
    np.testing.assert_array_equal(beta.vocals[0], beta.vocals[1])
    assert gamma.accompaniment.shape == (2, int(1.2 * SAMPLE_RATE))
    assert np.max(np.abs(gamma.accompaniment)) > 0.05
    chosen = multitrack.load_stem_songs(songs_root, ["gamma", "alpha"])
    assert [song.name for song in chosen] == ["gamma", "alpha"]
    assert multitrack.describe(chosen) == {"songs": ["gamma", "alpha"], "seconds": 3.2}


def test_an_unknown_song_name_or_a_missing_folder_is_one_clear_error(songs_root, tmp_path):
    with pytest.raises(
        UserError, match=r"no song folder named 'delta' .*songs: alpha, beta, gamma"
    ):
        multitrack.load_stem_songs(songs_root, ["alpha", "delta"])
    with pytest.raises(UserError, match="not a directory"):
        multitrack.load_stem_songs(tmp_path / "nowhere")
    (tmp_path / "novox").mkdir()
    sf.write(tmp_path / "novox" / "accompaniment.wav", np.zeros(100), FILE_RATE)
    with pytest.raises(UserError, match="--multitrack: .*novox: no vocals file"):
        multitrack.load_stem_songs(tmp_path)


def test_an_example_is_one_channel_whose_stems_sum_to_a_mixture_in_the_peak_range(songs_root):
    mixer = multitrack.MultitrackMixer(multitrack.load_stem_songs(songs_root))
    rng = np.random.default_rng(7)
    for _ in range(20):
        stems = mixer.example(WINDOW, rng, ("accompaniment", "vocals"))
        assert set(stems) == {"accompaniment", "vocals"}
        assert all(s.shape == (WINDOW,) and s.dtype == np.float32 for s in stems.values())
        peak = np.max(np.abs(stems["accompaniment"] + stems["vocals"]))
        assert PEAK[0] - 1e-6 <= peak <= PEAK[1] + 1e-6
        assert np.mean(np.abs(stems["vocals"])) > 0.001
    again = multitrack.MultitrackMixer(multitrack.load_stem_songs(songs_root))
    first = mixer.example(WINDOW, np.random.default_rng(3), ("accompaniment", "vocals"))
    second = again.example(WINDOW, np.random.default_rng(3), ("accompaniment", "vocals"))
    for stem in first:
        np.testing.assert_array_equal(first[stem], second[stem])


def test_an_own_pair_is_the_record_as_mixed_at_one_offset(songs_root, monkeypatch):
    """With OWN_PAIR_P = 1 and no level change, the band and the voice are one channel of
    the same song at the same offset, scaled by one gain."""
    monkeypatch.setattr(multitrack, "OWN_PAIR_P", 1.0)
    monkeypatch.setattr(multitrack, "OWN_LEVEL_DB", 0.0)
    song = multitrack.load_stem_songs(songs_root, ["alpha"])[0]
    mixer = multitrack.MultitrackMixer([song])
    stems = mixer.example(WINDOW, np.random.default_rng(11), ("accompaniment", "vocals"))
    # find the offset and channel whose vocals match, then check the band agrees with them
    candidates = {
        "left": (song.vocals[0], song.accompaniment[0]),
        "right": (song.vocals[1], song.accompaniment[1]),
        "mid": (song.vocals.mean(0), song.accompaniment.mean(0)),
    }
    matched = False
    for voice, band in candidates.values():
        for start in range(song.length - WINDOW + 1):
            piece = voice[start : start + WINDOW]
            gain = stems["vocals"][100] / piece[100] if piece[100] else 0
            if gain and np.allclose(stems["vocals"], piece * gain, atol=1e-6):
                np.testing.assert_allclose(
                    stems["accompaniment"], band[start : start + WINDOW] * gain, atol=1e-6
                )
                matched = True
                break
        if matched:
            break
    assert matched, "the example's vocals are no channel of the song at any offset"


def test_silent_vocals_everywhere_is_one_clear_error(tmp_path):
    folder = tmp_path / "hush"
    folder.mkdir()
    sf.write(folder / "vocals.wav", np.zeros(FILE_RATE), FILE_RATE)
    sf.write(folder / "accompaniment.wav", np.full(FILE_RATE, 0.3), FILE_RATE)
    mixer = multitrack.MultitrackMixer(multitrack.load_stem_songs(tmp_path))
    with pytest.raises(UserError, match="vocals were silent in 100 random chunks of 1 song"):
        mixer.example(WINDOW, np.random.default_rng(0), ("accompaniment", "vocals"))


def test_the_dataset_draws_multitrack_examples_by_share(songs_root, tmp_path):
    clips = write_mir1k_like(tmp_path / "mir1k", ("ann",), clips=2, seconds=1.0)
    tracks = [load_mir1k_clip(p) for p in clips]
    mixer = multitrack.MultitrackMixer(multitrack.load_stem_songs(songs_root))

    def dataset(share: float):
        return RandomMixDataset(tracks, ("vocals",), 4, WINDOW, 2, augmentation="none", seed=1,
                                multitrack=mixer, multitrack_share=share)  # fmt: skip

    x, y = dataset(1.0)[0]
    rng = np.random.default_rng([1, 0, 0])
    rng.integers(2**31), rng.integers(2**31)  # the two global seeds __getitem__ draws
    stems = dataset(1.0).example(rng)
    np.testing.assert_array_equal(x[0], stems["accompaniment"] + stems["vocals"])
    np.testing.assert_array_equal(y[0, 0], stems["vocals"])
    plain = RandomMixDataset(tracks, ("vocals",), 4, WINDOW, 2, augmentation="none", seed=1)
    np.testing.assert_array_equal(dataset(0.0)[1][0], plain[1][0])
    with pytest.raises(UserError, match="vocals alone"):
        RandomMixDataset(tracks, ("vocals", "accompaniment"), 4, WINDOW, 2, augmentation="none",
                         multitrack=mixer, multitrack_share=0.5)  # fmt: skip


def test_python_m_train_with_multitrack_records_the_songs_and_refuses_bad_shares(
    songs_root, tmp_path, capsys
):
    from tests.test_train_fit import FAST
    from train import runs
    from train.cli import main

    write_mir1k_like(tmp_path / "mir1k", ("ann", "bob"), clips=2, seconds=1.0)
    root = tmp_path / "runs"
    args = ["--data", str(tmp_path / "mir1k"), "--format", "mir1k", *FAST, "--val-singers", "bob",
            "--steps-per-epoch", "2", "--runs-dir", str(root)]  # fmt: skip
    songs = ["--multitrack", str(songs_root), "--multitrack-songs", "alpha,gamma"]
    assert (
        main([*args, *songs, "--multitrack-share", "0.5", "--run-name", "mt", "--epochs", "1"]) == 0
    )
    config = runs.read_run_config(root / "mt")
    assert config["training"]["multitrack_share"] == 0.5
    assert config["training"]["multitrack_songs"] == ["alpha", "gamma"]
    assert config["data"]["multitrack"] == {"songs": ["alpha", "gamma"], "seconds": 3.2}
    assert json.loads((root / "mt" / "state.json").read_text())["steps_done"] == 2
    capsys.readouterr()
    assert main([*args, *songs, "--multitrack-share", "0.7", "--fullband-share", "0.5",
                 "--run-name", "over"]) == 2  # fmt: skip
    assert "--fullband-share 0.5 plus --multitrack-share 0.7 is over 1" in capsys.readouterr().err
    assert main([*args, "--multitrack-share", "0.3", "--run-name", "nodir"]) == 2
    assert "--multitrack-share needs --multitrack DIR" in capsys.readouterr().err
    assert main([*args, "--multitrack", str(songs_root), "--multitrack-songs", "zeta",
                 "--multitrack-share", "0.3", "--run-name", "unknown"]) == 2  # fmt: skip
    assert "no song folder named 'zeta'" in capsys.readouterr().err
    assert not any((root / name).exists() for name in ("over", "nodir", "unknown"))
