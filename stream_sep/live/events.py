"""What a live run tells whoever runs it: one object with a method per kind of report.

The host never prints. :class:`LiveEvents` is the receiver: this base class logs each report
(``stream_sep.live`` logger) and ignores the status ticks; the ``stream-sep`` command passes
its own, which prints the lines, and a script may pass a subclass of its own to
:func:`stream_sep.live.run.live`. Methods are called on the thread that runs the session
(never the audio thread) and must not raise.
"""

from __future__ import annotations

import logging

from stream_sep.live.status import Summary

log = logging.getLogger("stream_sep.live")


class LiveEvents:
    """Receives the reports of one live run, in this order: ``started`` once, ``note`` any
    number of times, ``running`` once, ``status`` about four times a second, ``ending`` once,
    ``stopped`` once. A run that fails to start ends after ``note`` with an exception."""

    def started(self, line: str) -> None:
        """The stream runs: model, provider, route, rate, block and latency in one line."""
        log.info("%s", line)

    def note(self, line: str) -> None:
        """One line worth showing: channel mixing, the panel's URL, a key that could not
        apply, why the stream stops, a stream reopened."""
        log.info("%s", line)

    def running(self) -> None:
        """The status loop begins: from now on ``status`` ticks."""

    def status(self, numbers: dict) -> None:
        """The live numbers (:func:`stream_sep.live.status.snapshot`), once per tick."""

    def ending(self) -> None:
        """The status loop ended; the output fades out and the streams close."""

    def stopped(self, summary: Summary) -> None:
        """The run is over: its :class:`~stream_sep.live.status.Summary`."""
        for line in summary.lines:
            log.info("%s", line)
