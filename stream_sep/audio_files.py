"""Reading audio files: what a file holds, and sequential block reads of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from stream_sep.engine import MAX_CHANNELS
from stream_sep.errors import AudioFileError


def audio_file_info(path: Path) -> tuple[int, int, int]:
    """(rate, channels, frames) of an input file, refusing one that cannot be read or is
    empty with one line naming it."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioFileError(f"cannot read audio file {str(path)!r}: {error}") from None
    if info.frames <= 0:
        raise AudioFileError(f"audio file {str(path)!r} holds no samples")
    return int(info.samplerate), int(info.channels), int(info.frames)


def checked_audio_info(path: Path) -> tuple[int, int, int]:
    """:func:`audio_file_info`, also refusing more channels than the engine separates."""
    rate, channels, frames = audio_file_info(path)
    if channels > MAX_CHANNELS:
        raise AudioFileError(
            f"audio file {str(path)!r} has {channels} channels; at most "
            f"{MAX_CHANNELS} are supported"
        )
    return rate, channels, frames


def check_input_file(path: Path) -> None:
    if not path.exists():
        raise AudioFileError(f"input file {str(path)!r} does not exist")
    if not path.is_file():
        raise AudioFileError(f"input {str(path)!r} is not a file")


class FileReader:
    """Sequential (channels, n) float32 reads of an audio file, silence past its end; a
    file that breaks mid-way raises :class:`AudioFileError`."""

    def __init__(self, path: Path):
        self.path = path
        self._handle = None

    def __enter__(self):
        try:
            self._handle = sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError, OSError) as error:
            raise AudioFileError(f"cannot read audio file {str(self.path)!r}: {error}") from None
        return self

    def __exit__(self, *exc):
        self._handle.close()

    def read_into(self, out: np.ndarray) -> None:
        try:
            data = self._handle.read(out.shape[1], dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioFileError(
                f"cannot read audio file {str(self.path)!r} past "
                f"{self._handle.tell() / self._handle.samplerate:.1f} s: {error}"
            ) from None
        got = data.shape[0]
        out[:, :got] = data.T
        out[:, got:] = 0.0
