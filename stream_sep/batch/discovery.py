"""Finding the songs of a batch job and where each one's stems go.

Folders are searched for files with an audio suffix the reader supports (only the folder
itself, or every subfolder with ``recursive``); hidden files and folders are skipped (the
job's own temporary files, macOS ``._`` companions). Files named on the command line are
taken whatever their suffix.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path, PurePosixPath

import soundfile as sf

from stream_sep import offline
from stream_sep.errors import UserError

# Suffix -> libsndfile format; only the formats this libsndfile build reads count.
_SUFFIX_FORMATS = {
    ".wav": "WAV",
    ".wave": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".oga": "OGG",
    ".opus": "OGG",
    ".mp3": "MP3",
    ".aif": "AIFF",
    ".aiff": "AIFF",
    ".aifc": "AIFF",
    ".caf": "CAF",
    ".w64": "W64",
    ".rf64": "RF64",
    ".au": "AU",
    ".snd": "AU",
}


def audio_suffixes() -> tuple[str, ...]:
    """The file suffixes a folder search takes: those whose format the reader supports."""
    available = sf.available_formats()
    return tuple(suffix for suffix, name in _SUFFIX_FORMATS.items() if name in available)


@dataclasses.dataclass(frozen=True)
class Song:
    """One input file and its output folder, relative to the job's output folder (``key``,
    a POSIX path such as ``"Artist/Album/01 Song"``)."""

    path: Path
    key: str


def find_songs(inputs: list[Path], outdir: Path, recursive: bool = False) -> list[Song]:
    """The songs of ``inputs`` (files and folders) in a stable order, each with its output
    folder key: with files only, the folders of ``stream-sep separate FILES`` (the stem,
    or the path from the common folder where stems collide); with folders, each song's
    path from the inputs' common folder (a folder input counts as its own root), suffix
    removed, kept where two would collide. Refuses missing inputs, an output folder inside
    an input folder, and folders without audio files, each with one line."""
    for path in inputs:
        if not path.exists():
            raise UserError(f"input {str(path)!r} does not exist")
    folders = [path for path in inputs if path.is_dir()]
    for folder in folders:
        _refuse_output_inside(folder, outdir)
    files = [path for path in inputs if not path.is_dir()]
    if not folders:
        keys = offline.output_folders(files, Path("."))
        return [
            Song(path, PurePosixPath(key).as_posix()) for path, key in zip(files, keys, strict=True)
        ]
    paths, roots = _collect(inputs, recursive)
    return [Song(path, key) for path, key in zip(paths, _keys(paths, roots), strict=True)]


def _refuse_output_inside(folder: Path, outdir: Path) -> None:
    inside, outside = Path(os.path.abspath(folder)), Path(os.path.abspath(outdir))
    if outside == inside or inside in outside.parents:
        raise UserError(
            f"-o/--output {str(outdir)!r} is inside the input folder {str(folder)!r}; "
            "choose an output folder outside the songs"
        )


def _collect(inputs: list[Path], recursive: bool) -> tuple[list[Path], list[Path]]:
    """Every song file of ``inputs`` (each file once, first mention kept) and the root its
    output path is taken from: the folder input it was found in, or a file's own folder."""
    suffixes = audio_suffixes()
    paths, roots, seen = [], [], set()
    for entry in inputs:
        if entry.is_dir():
            found = _search(entry, recursive, suffixes)
            if not found:
                where = "or its subfolders " if recursive else ""
                hint = "" if recursive else " (--recursive also searches its subfolders)"
                raise UserError(
                    f"no audio files ({', '.join(suffixes)}) in folder {str(entry)!r} "
                    f"{where}{hint}".rstrip()
                )
            root = entry
        else:
            found, root = [entry], entry.parent
        for path in found:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                paths.append(path)
                roots.append(root)
    return paths, roots


def _search(folder: Path, recursive: bool, suffixes: tuple[str, ...]) -> list[Path]:
    """Audio files in ``folder`` (and its subfolders), sorted, hidden entries skipped;
    folder links are not followed (no cycles)."""
    found = []
    for directory, subfolders, names in os.walk(folder):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        if not recursive:
            subfolders.clear()
        for name in sorted(names):
            path = Path(directory) / name
            if not name.startswith(".") and path.suffix.lower() in suffixes and path.is_file():
                found.append(path)
    return found


def _keys(paths: list[Path], roots: list[Path]) -> list[str]:
    """Each path from the common folder of ``roots``, suffix removed unless that collides."""
    common = Path(os.path.commonpath([os.path.abspath(root) for root in roots]))
    relative = [Path(os.path.abspath(path)).relative_to(common) for path in paths]
    unsuffixed = [path.with_suffix("") for path in relative]
    keys = [
        (path if unsuffixed.count(bare) > 1 else bare).as_posix()
        for path, bare in zip(relative, unsuffixed, strict=True)
    ]
    for key, path in zip(keys, paths, strict=True):
        if keys.count(key) > 1:
            raise UserError(f"two inputs would write to the same output folder {key!r}: {path}")
    return keys
