"""The job's manifest: what each song's output folder holds, so a rerun knows what to skip.

``OUT/stream-sep-manifest.json`` maps each output folder (relative to OUT, POSIX) to an
entry::

    {"input": "/abs/song.flac", "size": 123, "mtime_ns": 456,
     "model": {"name": "vocals-mir1k.onnx", "sha256": "..."},
     "settings": {"stems": [...], "plan": "throughput", "stereo": "batch", "clip_mode": "none"},
     "status": "done" | "failed" | "pending",
     "seconds": 183.4,                                     # the song's length
     "outputs": {"karaoke.wav": {"bytes": 1, "samples_sha256": "..."}, ...},   # done
     "reason": "one line", "retry": false}                 # failed

A song is skipped when its entry is done with the same input (path, size, modification
time), model and settings and every output is there with its recorded size; a failed entry
with ``retry: false`` (the reader refused the file outright) is skipped while the same
holds for its input. Entries of songs given to workers are written as ``pending`` before
any work, so a job killed part-way leaves entries, not unknown stems. The file is replaced
atomically (:mod:`stream_sep.atomic`), at most every :data:`SAVE_INTERVAL` seconds while
songs finish and once more at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import soundfile as sf

from stream_sep import atomic
from stream_sep.errors import UserError

NAME = "stream-sep-manifest.json"
FORMAT = 1
SAVE_INTERVAL = 2.0
# The hidden files this job's writers leave when killed: stems (atomic.hidden_sibling of
# karaoke.wav / vocals.wav), the output folder probe, and the manifest's own.
_STEM_TEMPORARY = re.compile(r"^\.(karaoke|vocals|probe)-[0-9a-f]{8}(\.wav)?$")
_MANIFEST_TEMPORARY = re.compile(r"^\.stream-sep-manifest-[0-9a-f]{8}\.json$")


def input_identity(path: Path) -> dict:
    """What says an input is unchanged: its absolute path, size and modification time."""
    stat = path.stat()
    return {"input": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def samples_sha256(path: Path) -> str:
    """sha256 of an audio file's samples: its frames as float32 little-endian, channels
    interleaved (for a float WAV, exactly its data chunk). Not of the file's bytes:
    libsndfile stamps the time of writing into a float WAV's PEAK chunk, so two runs
    writing the same samples never write the same bytes."""
    digest = hashlib.sha256()
    with sf.SoundFile(str(path)) as audio:
        for block in audio.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
            digest.update(block.astype("<f4", copy=False).tobytes())
    return digest.hexdigest()


def describe_outputs(folder: Path, names: list[str]) -> dict:
    """{name: {"bytes": file size, "samples_sha256": :func:`samples_sha256`}} of the
    output files ``names`` in ``folder``."""
    return {
        name: {
            "bytes": (folder / name).stat().st_size,
            "samples_sha256": samples_sha256(folder / name),
        }
        for name in names
    }


class Manifest:
    """The entries of ``OUT/stream-sep-manifest.json`` ({key: entry}), read at start."""

    def __init__(self, outdir: Path):
        self.outdir = outdir
        self.path = outdir / NAME
        self.entries: dict[str, dict] = self._read()
        self._saved_at = 0.0

    def _read(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
            entries = data["songs"]
            if data.get("format") != FORMAT or not isinstance(entries, dict):
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(
                f"{str(self.path)!r} is not a stream-sep manifest this version reads "
                f"({error}); move it away to start the job afresh"
            ) from None
        return entries

    def owns(self, key: str) -> bool:
        """Whether this job wrote (or was writing) the output folder ``key``."""
        return key in self.entries

    def is_done(self, key: str, identity: dict, model: dict, settings: dict) -> bool:
        """Whether ``key`` holds complete outputs of this input, model and settings."""
        entry = self.entries.get(key)
        if not self._same(entry, identity, model, settings) or entry["status"] != "done":
            return False
        folder = self.outdir / key
        return all(
            (folder / name).is_file() and (folder / name).stat().st_size == output["bytes"]
            for name, output in entry["outputs"].items()
        )

    def failed_for_good(self, key: str, identity: dict, model: dict, settings: dict) -> bool:
        """Whether ``key`` failed in a way the same input would fail again (the reader
        refused it) and the input, model and settings are unchanged."""
        entry = self.entries.get(key)
        return (
            self._same(entry, identity, model, settings)
            and entry["status"] == "failed"
            and not entry.get("retry", True)
        )

    @staticmethod
    def _same(entry, identity: dict, model: dict, settings: dict) -> bool:
        return (
            entry is not None
            and all(entry.get(name) == value for name, value in identity.items())
            and entry.get("model") == model
            and entry.get("settings") == settings
        )

    def set(self, key: str, entry: dict) -> None:
        self.entries[key] = entry

    def save(self, force: bool = True) -> None:
        """Replace the manifest file atomically; without ``force`` only if the last save is
        :data:`SAVE_INTERVAL` seconds old."""
        now = time.monotonic()
        if not force and now - self._saved_at < SAVE_INTERVAL:
            return
        text = json.dumps({"format": FORMAT, "songs": self.entries}, indent=1, sort_keys=True)
        try:
            atomic.write_text(self.path, text + "\n")
        except OSError as error:
            reason = error.strerror or str(error)
            raise UserError(f"cannot write the manifest {str(self.path)!r}: {reason}") from None
        self._saved_at = now


def remove_temporaries(outdir: Path, keys) -> int:
    """Remove the hidden files a killed job left in ``outdir`` and in the output folders
    ``keys``; returns how many. Only names this job's writers make are touched."""
    removed = 0
    folders = [(outdir, _MANIFEST_TEMPORARY)] + [(outdir / key, _STEM_TEMPORARY) for key in keys]
    for folder, pattern in folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if pattern.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
    return removed
