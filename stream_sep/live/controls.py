"""The one way live changes reach the engine: terminal keys and the browser panel alike.

Each change is checked here (a bad value raises :class:`~stream_sep.errors.UserError` with one
line and changes nothing), then handed to the engine's request slots (``set_mode``,
``set_vocal_level``, ``set_key``) and the microphone's level: plain attribute writes that the
audio thread picks up at its next block and ramps or crossfades from its own position. The
audio thread never takes a lock; the lock here only keeps two controlling threads (the main
loop and the panel's server) from interleaving one change.
"""

from __future__ import annotations

import threading

from stream_sep.engine import MODES, VOCAL_LEVEL_RANGE
from stream_sep.engine.key import KEY_RANGE, check_key
from stream_sep.errors import UserError
from stream_sep.settings import OPTIONS

LEVEL_STEP = 0.1


class Controls:
    """Live controls of ``engine`` (a Separator) and, when there is one, ``mic`` (a MicMix)."""

    def __init__(self, engine, mic=None):
        self.engine, self.mic = engine, mic
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ checks and state
    def check(self, request: dict) -> None:
        """Check every value of ``request`` ({mode, vocal_level, key, mic_level}) without
        applying any: UserError (one line) for the first bad one."""
        if "mode" in request:
            OPTIONS["mode"].check(request["mode"])
            self.engine.refuse_if_stems("the mode")
        if "vocal_level" in request:
            OPTIONS["vocal_level"].check(request["vocal_level"])
            self.engine.refuse_if_stems("the vocal level")
        if "key" in request:
            check_key(request["key"])
            if self.engine.key is None:
                self.engine.set_key(0)  # raises the one line saying how to turn it on
        if "mic_level" in request:
            self._check_mic_level(request["mic_level"])

    def state(self) -> dict:
        """The values the controls set, as the engine holds them now."""
        state = {
            "mode": self.engine.mode,
            "vocal_level": self.engine.vocal_level,
            "key": self.engine.key,
        }
        if self.mic is not None:
            state["mic_level"] = self.mic.level
        return state

    # ------------------------------------------------------------------ one change each
    def set_mode(self, mode) -> None:
        with self._lock:
            self.engine.set_mode(OPTIONS["mode"].check(mode))

    def set_vocal_level(self, level) -> None:
        """Karaoke with the vocals at ``level``."""
        level = OPTIONS["vocal_level"].check(level)
        with self._lock:
            self.engine.set_vocal_level(level)

    def set_key(self, key) -> None:
        key = check_key(key)
        with self._lock:
            self.engine.set_key(key)

    def set_mic_level(self, level) -> None:
        level = self._check_mic_level(level)
        with self._lock:
            self.mic.set_level(level)

    def _check_mic_level(self, level) -> float:
        if self.mic is None:
            raise UserError("there is no microphone: start with --mic DEVICE")
        return OPTIONS["mic_level"].check(level)

    # ------------------------------------------------------------------ terminal keys
    def apply_keys(self, commands: list[str]) -> tuple[bool, list[str]]:
        """Apply the commands of :func:`stream_sep.live.keys.parse`; returns (False on quit, the
        one-line notes of keys that could not apply)."""
        notes = []
        for command in commands:
            if command == "quit":
                return False, notes
            try:
                self._key_command(command)
            except UserError as error:
                notes.append(str(error))
        return True, notes

    def _key_command(self, command: str) -> None:
        if command in MODES:
            self.set_mode(command)
        elif command in ("up", "down"):
            low, high = VOCAL_LEVEL_RANGE
            step = LEVEL_STEP if command == "up" else -LEVEL_STEP
            engine = self.engine
            level = engine.vocal_level if engine.mode == "karaoke" else (1.0 if step < 0 else 0.0)
            self.set_vocal_level(round(min(high, max(low, level + step)), 3))
        elif command in ("key up", "key down"):
            if self.engine.key is None:
                self.engine.set_key(0)  # raises the one line saying how to turn it on
            low, high = KEY_RANGE
            step = 1 if command == "key up" else -1
            self.set_key(min(high, max(low, self.engine.key + step)))
