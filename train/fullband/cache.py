"""A bounded folder of rendered songs at the model's rate, written once and read in chunks.

``<root>/fullband-v<version>-seed<seed>/song-NNNN.flac`` (stereo, 16-bit FLAC at
``SAMPLE_RATE``) with ``song-NNNN.json`` beside it (what was drawn). Song ``i`` is the song of
the seed ``(seed, i)``, so a folder holds the first N songs of its seed and a larger N only
adds songs. Each file is written under a hidden name and renamed, so a stopped render never
leaves half a song.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from stream_sep import atomic
from stream_sep.errors import UserError
from stream_sep.evaluation import datasets
from stream_sep.models.contract import SAMPLE_RATE
from train.fullband import check_requirements
from train.fullband.render import RENDER_RATE, render_song

log = logging.getLogger(__name__)

# Bumped whenever the composer or the renderer changes what a seed sounds like.
VERSION = 3
MAX_JOBS = 8


def song_folder(root: Path, seed: int) -> Path:
    return Path(root) / f"fullband-v{VERSION}-seed{seed}"


def song_path(folder: Path, index: int) -> Path:
    return folder / f"song-{index:04d}.flac"


class BandSong:
    """One rendered song in the cache, read in stereo chunks at ``SAMPLE_RATE``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = self.path.stem
        info = datasets.audio_info(self.path)
        if info.samplerate != SAMPLE_RATE or info.channels != 2:
            raise UserError(
                f"{self.path}: {info.channels} channel(s) at {info.samplerate} Hz, expected "
                f"stereo at {SAMPLE_RATE} Hz; delete the folder to render it again"
            )
        self.length = info.frames

    def read(self, start: int, frames: int) -> np.ndarray:
        """``frames`` samples from ``start``, zero-padded past the end: (2, frames) float32."""
        audio, _ = sf.read(self.path, frames, start, dtype="float32", always_2d=True)
        return np.pad(audio.T, ((0, 0), (0, frames - len(audio))))


def render_to_model_rate(seed) -> tuple[np.ndarray, dict]:
    """The song of ``seed`` at ``SAMPLE_RATE`` (soxr): (2, samples) float32, and its
    description."""
    audio, song = render_song(seed)
    return datasets.resample(audio, RENDER_RATE, SAMPLE_RATE).astype(np.float32), song.to_dict()


def write_song(folder: Path, seed: int, index: int) -> None:
    audio, description = render_to_model_rate([seed, index])
    with atomic.write_path(song_path(folder, index)) as staged:
        sf.write(staged, audio.T, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    atomic.write_text(
        song_path(folder, index).with_suffix(".json"), json.dumps(description, indent=1) + "\n"
    )


def ensure_songs(root: Path, count: int, seed: int = 0, jobs: int | None = None) -> list[BandSong]:
    """The first ``count`` songs of ``seed`` under ``root``, rendering the missing ones (in
    ``jobs`` threads, default the CPU count up to 8; FluidSynth runs as its own process)."""
    if count < 1:
        raise UserError(f"--fullband-songs must be at least 1, got {count}")
    folder = song_folder(root, seed)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--fullband-cache {root}: cannot create {folder}: {error}") from None
    missing = [i for i in range(count) if not song_path(folder, i).is_file()]
    if missing:
        check_requirements()
        render(folder, seed, missing, jobs or min(os.cpu_count() or 1, MAX_JOBS))
    songs = [BandSong(song_path(folder, i)) for i in range(count)]
    log.info("full-band songs: %s", describe(songs))
    return songs


def describe(songs: list[BandSong]) -> dict:
    """What a run records about its songs: folder, count, minutes of audio, megabytes."""
    return {
        "folder": str(songs[0].path.parent.resolve()),
        "songs": len(songs),
        "minutes": round(sum(s.length for s in songs) / SAMPLE_RATE / 60, 2),
        "megabytes": round(sum(s.path.stat().st_size for s in songs) / 1e6, 2),
        "version": VERSION,
    }


def render(folder: Path, seed: int, indices: list[int], jobs: int) -> None:
    """Render the songs ``indices`` into ``folder``, logging progress about every 10 %."""
    started = time.monotonic()
    log.info("rendering %d full-band songs into %s (%d job(s))", len(indices), folder, jobs)
    step = max(1, len(indices) // 10)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(write_song, folder, seed, i) for i in indices]
        for done, future in enumerate(futures, 1):
            future.result()
            if done % step == 0 or done == len(indices):
                log.info(
                    "rendered %d/%d full-band songs (%.0f s)",
                    done,
                    len(indices),
                    time.monotonic() - started,
                )
