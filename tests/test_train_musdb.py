"""train/musdb.py: the seed's .stem.mp4 -> 16 kHz wav conversion, on an mp4 ffmpeg builds here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_sep.errors import UserError
from train.data import load_musdb
from train.musdb import MUSDB_STREAMS, convert_musdb, convert_stem_mp4, ffmpeg_executable, song_name

# One tone per stream, so each converted file shows which stream it came from.
STREAM_FREQS = {"mixture": 100.0, "drums": 220.0, "bass": 330.0, "other": 550.0, "vocals": 770.0}
SECONDS = 0.5


def make_stem_mp4(path: Path) -> Path:
    """A 44.1 kHz stereo mp4 with five AAC audio streams in MUSDB's order."""
    command = [ffmpeg_executable(), "-v", "error", "-y"]
    for stem in MUSDB_STREAMS:
        command += [
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency={STREAM_FREQS[stem]}:sample_rate=44100:duration={SECONDS}",
        ]
    for index in range(len(MUSDB_STREAMS)):
        command += ["-map", f"{index}:a"]
    command += ["-ac", "2", "-c:a", "aac", "-b:a", "128k", str(path)]
    subprocess.run(command, check=True, capture_output=True)
    return path


def dominant_frequency(audio: np.ndarray, rate: int) -> float:
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return np.argmax(spectrum) * rate / len(mono)


def test_every_source_stream_becomes_a_16k_wav(tmp_path):
    mp4 = make_stem_mp4(tmp_path / "A Song.stem.mp4")
    written = convert_stem_mp4(mp4, tmp_path / "out")
    assert [p.name for p in written] == ["drums.wav", "bass.wav", "other.wav", "vocals.wav"]
    for path in written:
        audio, rate = sf.read(path)
        assert rate == 16000
        assert abs(len(audio) - SECONDS * 16000) < 0.1 * 16000
        assert dominant_frequency(audio, rate) == pytest.approx(STREAM_FREQS[path.stem], abs=4)
    # nothing else: no hidden partial file is left behind
    assert sorted((tmp_path / "out").iterdir()) == sorted(written)


def test_a_converted_dataset_loads_as_musdb(tmp_path):
    download = tmp_path / "download"
    for split in ("train", "test"):
        (download / split).mkdir(parents=True)
        make_stem_mp4(download / split / "My Song.stem.mp4")
    out = convert_musdb(download, tmp_path / "musdb18_wav")
    tracks = load_musdb(out, "train")
    assert (
        [t.name for t in tracks]
        == ["My_Song"]
        == [song_name(download / "train" / "My Song.stem.mp4")]
    )
    assert tracks[0].stems == ("drums", "bass", "other", "vocals")
    # converting again skips finished songs (the files are not rewritten)
    before = (out / "train" / "My_Song" / "vocals.wav").stat().st_mtime_ns
    convert_musdb(download, out)
    assert (out / "train" / "My_Song" / "vocals.wav").stat().st_mtime_ns == before


def test_a_broken_mp4_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.stem.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="ffmpeg could not convert stream drums"):
        convert_stem_mp4(bad, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.wav"))
