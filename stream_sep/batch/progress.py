"""The whole job's progress: songs, hours of audio, throughput and time left.

On a terminal, one line redrawn in place::

    [###########-------------]  41/97 songs  2.31/5.40 h audio  38.2x real time  ETA 0:04:51

otherwise (a log file, a pipe), one plain line per finished song::

    [41/97] Artist/Album/07 Song: 241.3 s of audio in 6.1 s
    [42/97] failed: cannot read audio file '/music/bad.mp3': ...

Throughput is audio seconds per wall second since the first song started (audio hours
per hour); the ETA divides the audio left by it.
"""

from __future__ import annotations

import datetime
import sys
import time


class JobProgress:
    """Progress of ``songs`` songs holding ``audio_seconds`` of audio, written to ``stream``
    (default stderr); ``tty`` (default: whether ``stream`` is a terminal) chooses the bar."""

    def __init__(self, songs: int, audio_seconds: float, stream=None, tty: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.songs, self.audio_seconds = songs, audio_seconds
        self.finished, self.failed, self.audio_done = 0, 0, 0.0
        self.started = time.monotonic()
        self.width = 24

    def song_done(self, key: str, seconds: float, took: float) -> None:
        self.finished += 1
        self.audio_done += seconds
        self._report(f"{key}: {seconds:.1f} s of audio in {took:.1f} s")

    def song_failed(self, reason: str, seconds: float = 0.0) -> None:
        """A failed song: its ``seconds`` leave the job's total."""
        self.finished += 1
        self.failed += 1
        self.audio_seconds -= seconds
        self._report(f"failed: {reason}", failed=True)

    def tick(self) -> None:
        """Redraw the bar (the clock and ETA move while a long song runs)."""
        if self.tty:
            self._draw()

    def close(self) -> None:
        if self.tty:
            print(file=self.stream, flush=True)

    def speed(self) -> float:
        """Audio seconds separated per wall second so far (x real time)."""
        return self.audio_done / max(time.monotonic() - self.started, 1e-9)

    def eta(self) -> float | None:
        """Seconds left at the speed so far, None before the first song is done."""
        speed = self.speed()
        if not self.audio_done or speed <= 0:
            return None
        return max(0.0, self.audio_seconds - self.audio_done) / speed

    def _report(self, line: str, failed: bool = False) -> None:
        """A finished song: its own line unless on a terminal, where only failures get one
        (above the bar, which is then redrawn)."""
        if not self.tty:
            print(f"[{self.finished}/{self.songs}] {line}", file=self.stream, flush=True)
            return
        if failed:
            print(f"\r{line}\x1b[K", file=self.stream)
        self._draw()

    def status(self) -> str:
        """songs, audio hours, throughput and ETA, in one line."""
        eta = self.eta()
        left = "--:--:--" if eta is None else str(datetime.timedelta(seconds=round(eta)))
        failed = f" ({self.failed} failed)" if self.failed else ""
        return (
            f"{self.finished}/{self.songs} songs{failed}  "
            f"{self.audio_done / 3600:.2f}/{self.audio_seconds / 3600:.2f} h audio  "
            f"{self.speed():.1f}x real time  ETA {left}"
        )

    def _draw(self) -> None:
        fraction = self.finished / self.songs if self.songs else 1.0
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        print(f"\r[{bar}]  {self.status()}\x1b[K", end="", file=self.stream, flush=True)
