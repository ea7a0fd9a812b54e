"""The full-band training songs of ``python -m train --fullband-share``: render a cache the
way a run does and describe it (songs, minutes of audio, size on disk, what was drawn, the
rendering's wall time on this machine).

    python -m benchmarks fullband_songs --songs 100 --cache /tmp/fullband \
        --md benchmarks/results/fullband-songs.md --json benchmarks/results/fullband-songs.json

Songs already in ``--cache`` are not rendered again (their time is not counted): give an
empty folder for a rendering time.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
from pathlib import Path

from benchmarks.harness import Run, Stopwatch, table
from stream_sep.models.contract import SAMPLE_RATE
from train.fullband import cache

# General MIDI program families (0-based programs), as the composer draws them
FAMILIES = ((range(0, 8), "piano"), (range(16, 24), "organ"), (range(24, 29), "clean guitar"),
            (range(29, 31), "driven guitar"), (range(40, 52), "strings"), (range(56, 64), "brass"),
            (range(64, 72), "reed"), (range(72, 80), "pipe"), (range(80, 88), "synth lead"),
            (range(88, 96), "synth pad"))  # fmt: skip


def family(program: int) -> str:
    return next((name for programs, name in FAMILIES if program in programs), "other")


def describe(folder: Path, count: int) -> dict:
    styles, families, leads, seconds = collections.Counter(), collections.Counter(), 0, []
    for index in range(count):
        song = json.loads(cache.song_path(folder, index).with_suffix(".json").read_text())
        styles[song["style"]] += 1
        seconds.append(song["seconds"])
        for part in song["parts"]:
            if part["role"] == "lead":
                leads += 1
            elif part["role"] not in ("drums", "bass"):
                families[family(part["program"])] += 1
    return {
        "styles": dict(sorted(styles.items())),
        "harmonic_part_families": dict(families.most_common()),
        "songs_with_a_lead": leads,
        "composed_seconds": {
            "min": min(seconds),
            "max": max(seconds),
            "mean": sum(seconds) / len(seconds),
        },  # fmt: skip
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--songs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=None, help="default: as a run (CPUs, <= 8)")
    parser.add_argument("--md", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    run = Run("fullband_songs", argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    folder = cache.song_folder(args.cache, args.seed)
    missing = sum(not cache.song_path(folder, i).is_file() for i in range(args.songs))
    with Stopwatch() as rendering:
        songs = cache.ensure_songs(args.cache, args.songs, args.seed, args.jobs)
    summary = cache.describe(songs)
    result = {
        "cache_version": cache.VERSION,
        "seed": args.seed,
        "songs": len(songs),
        "rendered_now": missing,
        "render_wall_seconds": round(rendering.seconds, 1),
        "jobs": args.jobs or min(os.cpu_count() or 1, cache.MAX_JOBS),
        "minutes_of_audio": summary["minutes"],
        "megabytes": summary["megabytes"],
        "sample_rate": SAMPLE_RATE,
        **describe(folder, len(songs)),
    }
    print(run.write(args.json, args.md, result, markdown(result), TITLE), end="")
    return 0


TITLE = "Full-band training songs"


def markdown(result: dict) -> list[str]:
    """The report's body: a table of what the cache holds and how long it took."""
    rows = [
        (
            "songs (cache version, seed)",
            f"{result['songs']} (v{result['cache_version']}, seed {result['seed']})",
        ),  # fmt: skip
        (
            "audio",
            f"{result['minutes_of_audio']} min, stereo FLAC 16-bit at {result['sample_rate']} Hz",
        ),  # fmt: skip
        ("size on disk", f"{result['megabytes']} MB"),
        (
            "rendered now / wall time",
            f"{result['rendered_now']} songs in "
            f"{result['render_wall_seconds']} s, {result['jobs']} job(s)",
        ),  # fmt: skip
        (
            "song length (composed)",
            "{min:.1f}-{max:.1f} s, mean {mean:.1f} s".format(**result["composed_seconds"]),
        ),  # fmt: skip
        ("styles", ", ".join(f"{k} {v}" for k, v in result["styles"].items())),
        (
            "harmonic parts",
            ", ".join(f"{k} {v}" for k, v in result["harmonic_part_families"].items()),
        ),  # fmt: skip
        ("songs with a melodic lead", str(result["songs_with_a_lead"])),
    ]
    return table(["", ""], rows)


if __name__ == "__main__":
    raise SystemExit(main())
