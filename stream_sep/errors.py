"""Exceptions that the command line turns into one clear line and exit status 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for: a bad value, a missing file, a bad device.

    The CLI prints ``stream-sep: error: <message>`` and exits with status 2; no traceback.
    """


class ModelError(UserError):
    """A model file that is missing, unreadable, or breaks the model contract."""


class AudioFileError(UserError):
    """An audio file that cannot be read or written."""


class DeviceError(UserError):
    """An audio device that does not exist, is ambiguous, or cannot do what was asked."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (at most 300 characters), else its type's name.

    For one-line reports of errors raised by libraries whose messages run to many lines
    (onnxruntime, tf2onnx, the ONNX checker, Keras).
    """
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__


def typed_first_line(error: BaseException) -> str:
    """``"<Type>: <first line of the message>"``, at most 300 characters."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]
