"""MUSDB18: the seed's download from Zenodo and conversion of ``.stem.mp4`` files to wav.

Every ``<split>/<song>.stem.mp4`` holds five audio streams (mixture, drums, bass, other,
vocals); each source stream becomes ``<out>/<split>/<song>/<stem>.wav`` at 16 kHz, the layout
:func:`train.data.load_musdb` reads. ffmpeg is the system's, or imageio-ffmpeg's.

MUSDB18 reference: Rafii, Z., Liutkus, A., Stoter, F.-R., Mimilakis, S. I., & Bittner, R.
(2017). MUSDB18 - a corpus for music separation (1.0.0) [Data set]. Zenodo.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from stream_sep import atomic
from stream_sep.errors import UserError
from stream_sep.models.contract import SAMPLE_RATE

log = logging.getLogger(__name__)

MUSDB_URL = "https://zenodo.org/records/1117372/files/musdb18.zip"
# Stream index of each stem inside a .stem.mp4
MUSDB_STREAMS = {"mixture": 0, "drums": 1, "bass": 2, "other": 3, "vocals": 4}
SOURCE_STEMS = ("drums", "bass", "other", "vocals")
SPLITS = ("train", "test")
WAV_DIR = "musdb18_wav"


def ffmpeg_executable() -> str:
    """The system ffmpeg, else imageio-ffmpeg's bundled binary; UserError if neither."""
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError(
            "ffmpeg is needed to convert MUSDB18: install it (apt install ffmpeg) "
            "or pip install imageio-ffmpeg"
        ) from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def convert_stem_mp4(mp4: Path, song_dir: Path, sample_rate: int = SAMPLE_RATE) -> list[Path]:
    """Write every source stream of ``mp4`` as ``song_dir/<stem>.wav`` at ``sample_rate``.

    Each file is written under a hidden name and renamed (:func:`stream_sep.atomic.write_path`),
    so an interrupted conversion never leaves a half-written wav. Returns the wav paths.
    """
    ffmpeg = ffmpeg_executable()
    song_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem in SOURCE_STEMS:
        target = song_dir / f"{stem}.wav"
        with atomic.write_path(target) as partial:
            command = [ffmpeg, "-v", "error", "-y", "-i", str(mp4), "-map", f"0:{MUSDB_STREAMS[stem]}",
                       "-vn", "-ar", str(sample_rate), str(partial)]  # fmt: skip
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                reason = (
                    result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no output"
                )
                raise UserError(f"ffmpeg could not convert stream {stem} of {mp4}: {reason}")
        written.append(target)
    return written


def song_name(mp4: Path) -> str:
    """``A Song.stem.mp4`` -> ``A_Song`` (the seed replaces spaces with underscores)."""
    return mp4.name.split(".")[0].replace(" ", "_")


def convert_musdb(download_dir: Path, out_dir: Path) -> Path:
    """Convert ``download_dir/{train,test}/*.stem.mp4`` into ``out_dir``; returns ``out_dir``.

    Songs already converted (all four wavs present) are skipped, so a stopped conversion
    continues where it was.
    """
    for split in SPLITS:
        mp4s = sorted((Path(download_dir) / split).glob("*.mp4"))
        if not mp4s:
            raise UserError(f"{download_dir}/{split} holds no .mp4 files")
        for index, mp4 in enumerate(mp4s):
            if index % 10 == 0:
                log.info("%s: %d/%d songs converted", split, index, len(mp4s))
            song_dir = Path(out_dir) / split / song_name(mp4)
            if all((song_dir / f"{stem}.wav").is_file() for stem in SOURCE_STEMS):
                continue
            convert_stem_mp4(mp4, song_dir)
    return Path(out_dir)


def download_musdb18(base: Path) -> Path:
    """Download MUSDB18 (about 4.7 GB) into ``base`` and convert it; returns the wav root."""
    import keras

    base = Path(base).expanduser()
    out_dir = base / WAV_DIR
    if all((out_dir / split).is_dir() for split in SPLITS) and (base / ".converted").exists():
        log.info("MUSDB18 already converted in %s", out_dir)
        return out_dir
    base.mkdir(parents=True, exist_ok=True)
    extracted = Path(
        keras.utils.get_file(fname="musdb18", origin=MUSDB_URL, extract=True, cache_dir=str(base))
    )
    convert_musdb(_split_parent(extracted), out_dir)
    (base / ".converted").touch()
    return out_dir


def _split_parent(extracted: Path) -> Path:
    """The directory holding train/ and test/ inside the extracted archive."""
    for candidate in (extracted, *sorted(p for p in extracted.iterdir() if p.is_dir())):
        if all((candidate / split).is_dir() for split in SPLITS):
            return candidate
    raise UserError(f"the MUSDB18 archive in {extracted} has no train/ and test/ directories")
