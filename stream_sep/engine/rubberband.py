"""Rubber Band's real-time stretcher through its C API (``librubberband``, 3.x), by ctypes.

Every argument a call on the audio thread passes is made once, in the constructor: the
stretcher's handle and each pitch scale as ctypes parameter objects, the per-channel float
pointers of the input and output buffers as one pointer array passed by reference, and sample
counts as Python integers (which ctypes passes without making an object). So ``process``,
``available``, ``retrieve`` and ``set_key`` allocate nothing on the Python heap; Rubber Band
itself does not allocate in real-time mode once ``set_max_process_size`` is set. Calls keep the
GIL (``ctypes.PyDLL``): the audio thread never waits to take it back after a call.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from stream_sep.errors import UserError

# rubberband-c.h (Rubber Band 3.x), enum RubberBandOption
OPTION_PROCESS_REALTIME = 0x00000001
OPTION_THREADING_NEVER = 0x00010000
OPTION_PITCH_HIGH_CONSISTENCY = 0x04000000
OPTION_CHANNELS_TOGETHER = 0x10000000
OPTION_ENGINE_FINER = 0x20000000

LIBRARY_NAMES = (
    "librubberband.so.2",  # Linux (Debian/Ubuntu: librubberband2)
    "librubberband.2.dylib",  # macOS (Homebrew: rubberband)
    "/opt/homebrew/lib/librubberband.2.dylib",
    "/usr/local/lib/librubberband.2.dylib",
)
SEARCH_NAME = "rubberband"  # ctypes.util.find_library's name for it, where the above fail
MISSING = (
    "--key needs Rubber Band 3's real-time pitch shifter (librubberband): "
    "apt install librubberband2 (Debian/Ubuntu) or brew install rubberband (macOS)"
)
_library = None


def library() -> ctypes.PyDLL:
    """librubberband (3.x), loaded once, or UserError in one line naming the package."""
    global _library
    if _library is None:
        _library = _load()
    return _library


def _load() -> ctypes.PyDLL:
    found = ctypes.util.find_library(SEARCH_NAME)
    for name in LIBRARY_NAMES + ((found,) if found else ()):
        try:
            lib = ctypes.PyDLL(name)
        except OSError:
            continue
        if hasattr(lib, "rubberband_get_start_delay"):  # 3.0 or later
            _declare(lib)
            return lib
    raise UserError(MISSING)


def _declare(lib: ctypes.PyDLL) -> None:
    """Types of the calls made off the audio thread; the audio thread's calls take their
    prebuilt arguments as they are (no ``argtypes``: a declared argument is converted into a
    new object on every call)."""
    handle, unsigned = ctypes.c_void_p, ctypes.c_uint
    lib.rubberband_new.argtypes = [
        unsigned,
        unsigned,
        ctypes.c_int,
        ctypes.c_double,
        ctypes.c_double,
    ]
    lib.rubberband_new.restype = handle
    lib.rubberband_delete.argtypes = [handle]
    lib.rubberband_delete.restype = None
    for name in ("get_preferred_start_pad", "get_start_delay"):
        getattr(lib, f"rubberband_{name}").argtypes = [handle]
        getattr(lib, f"rubberband_{name}").restype = unsigned
    lib.rubberband_set_max_process_size.argtypes = [handle, unsigned]
    lib.rubberband_set_max_process_size.restype = None
    for name in ("reset", "set_pitch_scale", "process"):
        getattr(lib, f"rubberband_{name}").restype = None
    lib.rubberband_available.restype = ctypes.c_int
    lib.rubberband_retrieve.restype = None  # it returns min(asked, available): asked


def _pointers(buffer: np.ndarray):
    """The rows of a C-contiguous (channels, n) float32 array as ``float *[channels]``."""
    assert buffer.flags.c_contiguous and buffer.dtype == np.float32
    return (ctypes.c_void_p * buffer.shape[0])(*(row.ctypes.data for row in buffer))


class Stretcher:
    """A real-time Rubber Band stretcher at time ratio 1 for ``channels`` channels.

    ``input``: (channels, max(max_process, preferred_start_pad)) float32, what :meth:`process`
    hands over (its first n columns); ``output``: (channels, chunk) float32, what :meth:`retrieve` fills (its first
    ``returned`` columns). ``scales``: the pitch scales :meth:`set_scale` may choose from, by
    name (any hashable).
    """

    def __init__(self, rate: int, channels: int, options: int, max_process: int, chunk: int,
                 scales: dict):  # fmt: skip
        self._handle = None
        lib = self._lib = library()
        self._handle = lib.rubberband_new(rate, channels, options, 1.0, 1.0)
        if not self._handle:
            raise RuntimeError("rubberband_new failed")
        self._state = ctypes.c_void_p.from_param(self._handle)
        max_process = max(max_process, self.preferred_start_pad)  # priming is one call
        lib.rubberband_set_max_process_size(self._handle, max_process)
        self.input = np.zeros((channels, max_process), np.float32)
        self.output = np.zeros((channels, chunk), np.float32)
        self._input_pointers = _pointers(self.input)  # kept alive with the buffers
        self._output_pointers = _pointers(self.output)
        self._input = ctypes.byref(self._input_pointers)
        self._output = ctypes.byref(self._output_pointers)
        self.chunk = chunk
        self._scales = {name: ctypes.c_double.from_param(float(s)) for name, s in scales.items()}
        self._process_call = lib.rubberband_process
        self._available_call = lib.rubberband_available
        self._retrieve_call = lib.rubberband_retrieve
        self._set_scale_call = lib.rubberband_set_pitch_scale
        self._reset_call = lib.rubberband_reset

    @property
    def preferred_start_pad(self) -> int:
        return int(self._lib.rubberband_get_preferred_start_pad(self._handle))

    @property
    def start_delay(self) -> int:
        """Output samples before the first input sample, at the current pitch scale."""
        return int(self._lib.rubberband_get_start_delay(self._handle))

    def set_scale(self, name) -> None:
        self._set_scale_call(self._state, self._scales[name])

    def reset(self) -> None:
        self._reset_call(self._state)

    def process(self, n: int) -> None:
        """Hand over ``input[:, :n]`` (n <= max_process)."""
        self._process_call(self._state, self._input, n, 0)

    def available(self) -> int:
        return self._available_call(self._state)

    def retrieve(self, n: int) -> None:
        """Fill ``output[:, :n]``; n <= ``chunk`` and <= :meth:`available` (Rubber Band
        prints a warning when asked for more than it has, and fills only what it has)."""
        self._retrieve_call(self._state, self._output, n)

    def close(self) -> None:
        if self._handle:
            self._lib.rubberband_delete(self._handle)
            self._handle = None

    def __del__(self):
        self.close()
