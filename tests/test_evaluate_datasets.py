"""The host's evaluation-data readers on generated MUSDB, MUSDB-HQ and MIR-1K layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from stream_sep.errors import AudioFileError, UserError
from stream_sep.evaluation import datasets


def _stems(samples: int, channels: int, seed: int) -> dict[str, np.ndarray]:
    """{stem: (channels, samples) float32}, distinct noise per stem."""
    rng = np.random.default_rng(seed)
    return {
        stem: (0.1 * rng.standard_normal((channels, samples))).astype(np.float32)
        for stem in datasets.MUSDB_STEMS
    }


def write_musdb(
    root: Path,
    songs: dict[str, dict[str, np.ndarray]],
    rate: int,
    split: str = "test",
    with_mixture: bool = True,
) -> None:
    for song, stems in songs.items():
        folder = root / split / song
        folder.mkdir(parents=True)
        for stem, audio in stems.items():
            sf.write(folder / f"{stem}.wav", audio.T, rate, subtype="FLOAT")
        if with_mixture:
            mixture = sum(stems.values())
            sf.write(folder / "mixture.wav", mixture.T, rate, subtype="FLOAT")


def write_mir1k(root: Path, names: list[str], rate: int = 16000, seconds: float = 0.5) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        audio = 0.1 * rng.standard_normal((int(seconds * rate), 2))
        sf.write(root / f"{name}.wav", audio.astype(np.float32), rate, subtype="FLOAT")


@pytest.mark.parametrize(("data_format", "rate"), [("musdb", 16000), ("musdb-hq", 44100)])
def test_musdb_layouts_give_vocals_accompaniment_and_mixture(tmp_path, data_format, rate):
    songs = {"B song": _stems(900, 2, 1), "A song": _stems(900, 2, 2)}
    write_musdb(tmp_path, songs, rate)
    write_musdb(tmp_path, {"train only": _stems(900, 2, 3)}, rate, split="train")
    refs = datasets.find_clips(tmp_path, data_format)
    assert [ref.name for ref in refs] == ["A song", "B song"]  # the test split, sorted
    clip = datasets.load_clip(refs[1])
    stems = songs["B song"]
    assert clip.sample_rate == rate and clip.channels == 2
    np.testing.assert_array_equal(clip.vocals, stems["vocals"])
    np.testing.assert_allclose(
        clip.accompaniment, stems["drums"] + stems["bass"] + stems["other"], atol=1e-7
    )
    np.testing.assert_allclose(clip.mixture, sum(stems.values()), atol=1e-6)
    train = datasets.find_clips(tmp_path, data_format, split="train")
    assert [ref.name for ref in train] == ["train only"]


def test_musdb_without_mixture_file_sums_the_stems(tmp_path):
    """The seed's converted layout has no mixture.wav."""
    stems = _stems(700, 2, 4)
    write_musdb(tmp_path, {"song": stems}, 16000, with_mixture=False)
    clip = datasets.load_clip(datasets.find_clips(tmp_path, "musdb")[0])
    np.testing.assert_allclose(clip.mixture, sum(stems.values()), atol=1e-6)


def test_musdb_stems_of_different_lengths_are_cut_to_the_shortest(tmp_path):
    stems = _stems(800, 1, 5)
    stems["bass"] = stems["bass"][:, :750]
    write_musdb(tmp_path, {"song": stems}, 16000, with_mixture=False)
    clip = datasets.load_clip(datasets.find_clips(tmp_path, "musdb")[0])
    assert clip.mixture.shape == clip.vocals.shape == clip.accompaniment.shape == (1, 750)


@pytest.mark.parametrize(
    ("data_format", "file_rate", "rate"), [("musdb", 44100, 16000), ("musdb-hq", 16000, 44100)]
)
def test_musdb_at_another_rate_is_resampled_to_the_formats_rate(
    tmp_path, data_format, file_rate, rate
):
    """As training does: soxr (HQ) per stem, the mixture too."""
    stems = _stems(4410, 2, 6)
    write_musdb(tmp_path, {"song": stems}, file_rate)
    clip = datasets.load_clip(datasets.find_clips(tmp_path, data_format)[0])
    vocals = soxr.resample(stems["vocals"].T, file_rate, rate, quality="HQ").T
    assert clip.sample_rate == rate
    assert clip.vocals.shape == vocals.shape and clip.vocals.dtype == np.float32
    np.testing.assert_array_equal(clip.vocals, vocals)
    mixture = soxr.resample(sum(stems.values()).T, file_rate, rate, quality="HQ").T
    np.testing.assert_allclose(clip.mixture, mixture, atol=1e-6)


def test_musdb_song_with_two_rates_is_refused(tmp_path):
    write_musdb(tmp_path, {"song": _stems(500, 2, 9)}, 16000, with_mixture=False)
    sf.write(tmp_path / "test" / "song" / "bass.wav", np.zeros((500, 2), np.float32), 44100)
    with pytest.raises(AudioFileError, match=r"differ in sample rate.*'bass': 44100"):
        datasets.load_clip(datasets.find_clips(tmp_path, "musdb")[0])


def test_musdb_missing_stem_is_named(tmp_path):
    stems = _stems(500, 2, 7)
    del stems["other"]
    write_musdb(tmp_path, {"song": stems}, 16000)
    with pytest.raises(AudioFileError, match=r"lacks other\.wav"):
        datasets.load_clip(datasets.find_clips(tmp_path, "musdb")[0])


def test_musdb_without_split_folder_explains_the_layout(tmp_path):
    (tmp_path / "somewhere").mkdir()
    with pytest.raises(UserError, match=r"no 'test' folder.*<root>/\{train,test\}/<song>"):
        datasets.find_clips(tmp_path, "musdb")


def test_mir1k_reads_channels_as_accompaniment_and_vocals(tmp_path):
    audio = np.stack([np.full(400, 0.25), np.full(400, -0.5)], axis=1).astype(np.float32)
    sf.write(tmp_path / "amy_3_07.flac", audio, 16000)
    (tmp_path / "README.md").write_text("not audio")
    refs = datasets.find_clips(tmp_path, "mir1k")
    assert [ref.name for ref in refs] == ["amy_3_07"]
    clip = datasets.load_clip(refs[0])
    assert clip.channels == 1 and clip.sample_rate == 16000
    np.testing.assert_allclose(clip.accompaniment, 0.25, atol=1e-4)
    np.testing.assert_allclose(clip.vocals, -0.5, atol=1e-4)
    np.testing.assert_allclose(clip.mixture, -0.25, atol=1e-4)


def test_mir1k_files_are_found_in_subfolders_as_in_training(tmp_path):
    """MIR-1K as distributed: the clips sit in Wavfile/ under the dataset's folder."""
    write_mir1k(tmp_path / "MIR-1K" / "Wavfile", ["amy_1_01", "Ani_1_01"])
    write_mir1k(tmp_path / "MIR-1K" / "more" / "deeper", ["bobon_2_05"])
    (tmp_path / "MIR-1K" / "notes.wav").mkdir()  # a folder named like audio is no clip
    refs = datasets.find_clips(tmp_path / "MIR-1K", "mir1k")
    assert [ref.name for ref in refs] == ["Ani_1_01", "amy_1_01", "bobon_2_05"]
    assert refs[2].path == tmp_path / "MIR-1K" / "more" / "deeper" / "bobon_2_05.wav"
    assert datasets.load_clip(refs[2]).channels == 1


def test_mir1k_singers_and_limit_choose_clips(tmp_path):
    write_mir1k(tmp_path, ["amy_1_02", "Ani_1_01", "amy_1_01", "bobon_2_05", "Ani_2_01"])
    chosen = datasets.find_clips(tmp_path, "mir1k", singers=["Ani", "bobon"])
    assert [ref.name for ref in chosen] == ["Ani_1_01", "Ani_2_01", "bobon_2_05"]
    assert [ref.name for ref in datasets.find_clips(tmp_path, "mir1k", limit=2)] == [
        "Ani_1_01",
        "Ani_2_01",
    ]
    spread = datasets.find_clips(tmp_path, "mir1k", every=2)
    assert [ref.name for ref in spread] == ["Ani_1_01", "amy_1_01", "bobon_2_05"]
    assert [ref.name for ref in datasets.find_clips(tmp_path, "mir1k", every=2, limit=2)] == [
        "Ani_1_01",
        "amy_1_01",
    ]
    with pytest.raises(UserError, match="--every must be a positive integer, got 0"):
        datasets.find_clips(tmp_path, "mir1k", every=0)
    with pytest.raises(UserError, match=r"'nobody'.*singers there: Ani, amy, bobon"):
        datasets.find_clips(tmp_path, "mir1k", singers=["nobody"])


def test_mir1k_mono_file_is_refused(tmp_path):
    sf.write(tmp_path / "amy_1_01.wav", np.zeros(100, np.float32), 16000)
    with pytest.raises(AudioFileError, match=r"1 channel\(s\).*expects 2"):
        datasets.load_clip(datasets.find_clips(tmp_path, "mir1k")[0])


def test_options_that_do_not_apply_are_refused(tmp_path):
    write_mir1k(tmp_path / "mir", ["amy_1_01"])
    with pytest.raises(UserError, match="--split applies to the musdb formats"):
        datasets.find_clips(tmp_path / "mir", "mir1k", split="test")
    write_musdb(tmp_path / "musdb", {"song": _stems(300, 2, 8)}, 16000)
    with pytest.raises(UserError, match="--singers applies to --format mir1k"):
        datasets.find_clips(tmp_path / "musdb", "musdb", singers=["amy"])


def test_unreadable_file_is_named(tmp_path):
    (tmp_path / "amy_1_01.wav").write_bytes(b"RIFF but not really a wave file")
    ref = datasets.find_clips(tmp_path, "mir1k")[0]
    with pytest.raises(AudioFileError, match=r"cannot read audio file .*amy_1_01\.wav"):
        datasets.load_clip(ref)
