"""The live host, as a library the ``stream-sep`` command drives.

- :mod:`stream_sep.live.route`: where the stream goes: devices, files or the sound server on
  each side, the feedback guard, the stream's rate and channels, the start-up notes.
- :mod:`stream_sep.live.session`: one run: fit the plan to the machine, the status loop
  (keys, panel), fade-out and the summary.
- :mod:`stream_sep.live.streams`: the PortAudio streams (or the file clock) and the --mic
  stream: open, start, close without hanging on a vanished device.
- :mod:`stream_sep.live.audio`: what runs on the audio thread (:class:`BlockProcessor`) and
  the file source and clock.
"""
