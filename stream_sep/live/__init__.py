"""The live host: ``stream_sep.live(input=..., output=..., mode=...)`` runs it from Python
(this package is callable: see :func:`stream_sep.live.run.live`), the ``stream-sep``
command from the command line.

- :mod:`stream_sep.live.run`: the Python entry, :func:`~stream_sep.live.run.live` and its
  :class:`~stream_sep.live.run.LiveRun` (wait, stop, set_mode, set_vocal_level, summary).
- :mod:`stream_sep.live.host`: the run assembled: checks, model, fitted plan, engine, session.
- :mod:`stream_sep.live.events`: what a run reports (start-up line, notes, status, summary).
- :mod:`stream_sep.live.route`: where the stream goes: devices, files or the sound server on
  each side, the feedback guard, the stream's rate and channels, the start-up notes.
- :mod:`stream_sep.live.session`: one run: the status loop (keys, panel), fade-out and the
  summary.
- :mod:`stream_sep.live.streams`: the PortAudio streams (or the file clock) and the --mic
  stream: open, start, close without hanging on a vanished device.
- :mod:`stream_sep.live.audio`: what runs on the audio thread (:class:`BlockProcessor`) and
  the file source and clock.
"""

import sys
import types

from stream_sep.live.run import LiveRun, live


class _CallablePackage(types.ModuleType):
    """``stream_sep.live`` is this package and the function that starts a run, so both
    ``stream_sep.live(...)`` and ``stream_sep.live.route`` keep working."""

    def __call__(self, *args, **kwargs) -> LiveRun:
        return live(*args, **kwargs)

    __call__.__doc__ = live.__doc__


sys.modules[__name__].__class__ = _CallablePackage
