"""Live keys when stdin is a terminal: k karaoke, v vocals, b bypass, up/down level, [ ] key,
q quit.

The terminal is put in cbreak mode (keys arrive one by one, unechoed; Ctrl-C still sends
SIGINT) and restored on exit, however the program ends. The live command enters it before the
model loads, so keys typed during start-up wait unechoed in the terminal's input queue and
take effect when the stream starts.
"""

from __future__ import annotations

import atexit
import logging
import os
import select
import sys

log = logging.getLogger(__name__)

HELP = "keys: k karaoke, v vocals, b bypass, up/down vocal level, [ ] key down/up, q quit"
_KEYS = {
    "k": "karaoke",
    "v": "vocals",
    "b": "bypass",
    "q": "quit",
    "+": "up",
    "-": "down",
    "[": "key down",
    "]": "key up",
    "\x1b[A": "up",
    "\x1b[B": "down",
    "\x1bOA": "up",
    "\x1bOB": "down",
}


def parse(text: str) -> list[str]:
    """Commands in the characters typed, in order; unknown keys are ignored."""
    commands, position = [], 0
    while position < len(text):
        for length in (3, 1):
            typed = text[position : position + length]
            command = _KEYS.get(typed if length > 1 else typed.lower())
            if command is not None:
                commands.append(command)
                position += length
                break
        else:
            position += 1
    return commands


class KeyReader:
    """A context manager; ``poll(timeout)`` waits up to ``timeout`` seconds for keys.

    When disabled (stdin is not a terminal), ``poll`` just sleeps.
    """

    def __init__(self, enabled: bool | None = None, stream=None):
        self.stream = stream if stream is not None else sys.stdin
        if enabled is None:
            enabled = _is_terminal(self.stream)
        self.enabled = enabled
        self._saved = None

    def __enter__(self) -> KeyReader:
        if self.enabled:
            import termios
            import tty

            fd = self.stream.fileno()
            self._saved = termios.tcgetattr(fd)
            atexit.register(self.restore)
            # TCSANOW, not tty's default TCSAFLUSH: keep what was typed before this point.
            tty.setcbreak(fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def restore(self) -> None:
        if self._saved is None:
            return
        import termios

        termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
        self._saved = None
        atexit.unregister(self.restore)

    def poll(self, timeout: float) -> list[str]:
        if not self.enabled:
            select.select([], [], [], timeout)
            return []
        fd = self.stream.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return []
        data = os.read(fd, 64)
        return parse(data.decode("utf-8", errors="ignore"))


def _is_terminal(stream) -> bool:
    try:
        return stream is not None and os.isatty(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return False
