"""A JACK server and two JACK clients, ``mic`` and ``headphones``, for end-to-end tests.

PortAudio lists every JACK client as a device, so ``stream-sep --input mic --output
headphones`` opens these two clients for real: ``mic`` plays a test signal into whatever
connects to it, ``headphones`` records what it receives. Both stamp their blocks with JACK's
frame clock, so the capture is aligned with the moment the signal started.

Server policy: ``STREAM_SEP_JACK=1`` (set by ``.ci/test``) means the server must already be
running, and a missing one fails. Otherwise a server that is running is used; if none is, one
is started under a unique name when ``jackd`` exists; if that is impossible, the tests fail
under ``CI=true`` and are skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pytest

SERVER_ENV = "JACK_DEFAULT_SERVER"
CAPTURE_SECONDS = 30


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def required() -> bool:
    return os.environ.get("STREAM_SEP_JACK") == "1"


def server_running() -> bool:
    import jack

    try:
        probe = jack.Client(f"stream-sep-probe-{os.getpid()}", no_start_server=True)
    except jack.JackOpenError:
        return False
    probe.close()
    return True


def start_server(name: str, rate: int = 48000, period: int = 1024) -> subprocess.Popen:
    """Start jackd's dummy driver under ``name`` and make it this process's default. A
    server that does not come up within a minute (a loaded machine) is an error naming
    jackd's own last words."""
    # Open for the server's lifetime (read back only if it fails to start).
    log = tempfile.NamedTemporaryFile("w+", prefix=f"jackd-{name}-", suffix=".log")  # noqa: SIM115
    process = subprocess.Popen(
        [
            "jackd",
            "-n",
            name,
            "-S",
            "--no-realtime",
            "-d",
            "dummy",
            "-r",
            str(rate),
            "-p",
            str(period),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    os.environ[SERVER_ENV] = name
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if server_running():
            return process
        time.sleep(0.2)
    process.kill()
    process.wait()
    del os.environ[SERVER_ENV]
    log.seek(0)
    said = " | ".join(log.read().strip().splitlines()[-3:])
    raise RuntimeError(f"jackd -n {name} did not start (exit status {process.returncode}): {said}")


def unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere: a JACK test never passes without JACK."""
    if required() or in_ci():
        pytest.fail(f"JACK server needed in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def jack_server():
    """Yields the JACK server name in use (None = the default server)."""
    try:
        import jack  # noqa: F401
    except ImportError:
        unavailable("JACK-Client is not installed (pip install JACK-Client)")
    except OSError as error:
        unavailable(f"libjack is not installed ({error}); apt-get install jackd2")
    if server_running():
        yield os.environ.get(SERVER_ENV)
        return
    if required():
        unavailable("STREAM_SEP_JACK=1 but no JACK server answers (see .ci/test)")
    if shutil.which("jackd") is None:
        unavailable("no JACK server is running and jackd is not installed (apt-get install jackd2)")
    name = f"stream-sep-test-{os.getpid()}"
    process = start_server(name)
    try:
        yield name
    finally:
        _release_portaudio()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        os.environ.pop(SERVER_ENV, None)


class Harness:
    """JACK clients ``mic`` (output ports) and ``headphones`` (input ports).

    ``play(signal)`` loads a (channels, n) signal; ``arm()`` starts it on the next JACK cycle;
    ``capture`` holds what ``headphones`` received, index 0 = the cycle ``mic`` started.
    heard_channels: input ports of the receiving client (default ``channels``); heard_name:
    its name (default ``headphones``), e.g. a 4-channel ``daw`` for --stems.
    """

    def __init__(
        self, channels: int = 2, heard_channels: int | None = None, heard_name: str = "headphones"
    ):
        import jack

        heard = channels if heard_channels is None else heard_channels
        self._layout = (channels, heard, heard_name)
        self.mic = jack.Client("mic", use_exact_name=True, no_start_server=True)
        self.headphones = jack.Client(heard_name, use_exact_name=True, no_start_server=True)
        self.outports = [self.mic.outports.register(f"out_{c + 1}") for c in range(channels)]
        self.inports = [self.headphones.inports.register(f"in_{c + 1}") for c in range(heard)]
        self.rate = self.mic.samplerate
        self.period = self.mic.blocksize
        self.signal = np.zeros((channels, 0), np.float32)
        self.capture = np.zeros((heard, CAPTURE_SECONDS * self.rate), np.float32)
        self.captured = 0  # frames of capture filled so far
        self.armed = False
        self.start_frame: int | None = None
        self.xruns = 0
        self.mic.set_process_callback(self._play)
        self.headphones.set_process_callback(self._record)
        self.mic.set_xrun_callback(self._xrun)
        self.mic.activate()
        self.headphones.activate()

    # JACK threads -----------------------------------------------------------
    def _play(self, frames: int) -> None:
        # start_frame and signal are read once: the test thread's play() may replace them
        # at any moment, and an exception here would make JACK drop this client for good.
        start, signal = self.start_frame, self.signal
        if self.armed and start is None:
            start = self.start_frame = self.mic.last_frame_time
        position = 0 if start is None else self.mic.last_frame_time - start
        n = 0
        if start is not None and 0 <= position < signal.shape[1]:
            n = min(frames, signal.shape[1] - position)
        for channel, port in enumerate(self.outports):
            buffer = port.get_array()
            buffer[:n] = signal[channel, position : position + n]
            buffer[n:] = 0.0

    def _record(self, frames: int) -> None:
        start = self.start_frame
        if start is None:
            return
        offset = self.headphones.last_frame_time - start
        if offset < 0 or offset + frames > self.capture.shape[1]:
            return
        for channel, port in enumerate(self.inports):
            self.capture[channel, offset : offset + frames] = port.get_array()
        self.captured = offset + frames

    def _xrun(self, delay) -> None:
        self.xruns += 1

    # test thread -------------------------------------------------------------
    def play(self, signal: np.ndarray) -> None:
        """Load a (channels, n) signal to play once on ``arm()``; clears the capture."""
        self.armed = False
        self.start_frame = None
        self.signal = np.ascontiguousarray(signal, np.float32)
        self.capture.fill(0.0)
        self.captured = 0

    def arm(self) -> None:
        self.armed = True

    def connected(self) -> bool:
        """True when something reads ``mic`` and something feeds ``headphones``."""
        mic = all(self.mic.get_all_connections(p) for p in self.outports)
        phones = all(self.headphones.get_all_connections(p) for p in self.inports)
        return mic and phones

    def wait_for(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.02)

    def wait_captured(self, frames: int, timeout: float) -> None:
        self.wait_for(lambda: self.captured >= frames, timeout, f"{frames} captured frames")

    def close(self) -> None:
        for client in (self.mic, self.headphones):
            client.deactivate()
            client.close()

    @contextlib.contextmanager
    def away(self):
        """Within the block, ``mic`` and ``headphones`` do not exist: the words ``mic`` and
        ``headphones`` then mean the default devices, JACK's ``system`` for both, the way a
        laptop's one sound card serves the microphone and the output."""
        self.close()
        refresh_portaudio()
        try:
            yield
        finally:
            self.__init__(*self._layout)
            refresh_portaudio()


class Devices:
    """Plain JACK clients that PortAudio lists as devices: ``{name: (inputs, outputs)}``,
    inputs being ports that receive (a playback device), outputs ports that send (a capture
    device). They capture silence: they stand for devices whose names matter, such as a
    sound server's ``Built-in Speakers`` and its monitor. (Each needs a process callback: a
    client without one stalls the JACK graph of whatever connects to it.)"""

    def __init__(self, layout: dict[str, tuple[int, int]]):
        import jack

        self.clients = []
        for name, (inputs, outputs) in layout.items():
            client = jack.Client(name, use_exact_name=True, no_start_server=True)
            for c in range(inputs):
                client.inports.register(f"playback_{c + 1}")
            ports = [client.outports.register(f"capture_{c + 1}") for c in range(outputs)]
            client.set_process_callback(_silence(ports))
            client.activate()
            self.clients.append(client)
        refresh_portaudio()

    def close(self) -> None:
        for client in self.clients:
            client.deactivate()
            client.close()
        refresh_portaudio()


def _silence(ports):
    def process(frames: int) -> None:
        for port in ports:
            port.get_array().fill(0.0)

    return process


def _release_portaudio() -> None:
    """PortAudio's JACK backend aborts the process (an assert in Pa_Terminate) if the
    server is gone when it terminates: terminate it while the server still runs."""
    import sys

    sd = sys.modules.get("sounddevice")
    if sd is not None:
        while sd._initialized:
            sd._terminate()


def refresh_portaudio() -> None:
    """Make PortAudio enumerate devices again (it does so only when it initialises)."""
    import sounddevice as sd

    sd._terminate()
    sd._initialize()


@contextlib.contextmanager
def opened(kind: type[Harness] = Harness):
    """A ``kind`` harness that PortAudio lists as devices; closed (and PortAudio told) after."""
    rig = kind()
    refresh_portaudio()
    try:
        yield rig
    finally:
        rig.close()
        refresh_portaudio()


@pytest.fixture(scope="module")
def harness(jack_server):
    """The ``mic`` and ``headphones`` clients for one test module (a module may define its
    own ``harness`` with another :class:`Harness`, through :func:`opened`)."""
    with opened() as rig:
        yield rig


def find_delay(capture: np.ndarray, reference: np.ndarray) -> int:
    """Lag (samples) at which ``reference`` (C, n) best matches ``capture`` (C, m), by
    FFT cross-correlation of the first channel."""
    size = capture.shape[1] + reference.shape[1]
    n_fft = 1 << (size - 1).bit_length()
    spectrum = np.fft.rfft(capture[0], n_fft) * np.conj(np.fft.rfft(reference[0], n_fft))
    correlation = np.fft.irfft(spectrum, n_fft)[: capture.shape[1]]
    return int(np.argmax(correlation))


def sweep_with_clicks(rate: int, seconds: float = 1.0, amplitude: float = 0.4) -> np.ndarray:
    """(2, n) float32: a log sweep 100 Hz - 6 kHz with a click every 0.2 s, the right channel
    a quieter copy. Band-limited below 7 kHz so a 16 kHz model sees all of it."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    low, high = 100.0, 6000.0
    k = np.log(high / low) / seconds
    sweep = np.sin(2 * np.pi * low * (np.exp(k * t) - 1) / k)
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)
    signal = amplitude * 0.7 * sweep * fade
    click = np.hanning(int(0.002 * rate) | 1) * amplitude * 0.3  # ~2 ms, below 1 kHz
    for start in range(int(0.1 * rate), n - click.size, int(0.2 * rate)):
        signal[start : start + click.size] += click
    return np.stack([signal, 0.5 * signal]).astype(np.float32)


SETTLE_SECONDS = 0.3  # after connecting: the engine fades its output in over 0.05 s


def run_in_process(harness: Harness, argv: list[str], signal_, tail_s: float = 1.0) -> int:
    """``stream_sep.cli.main(argv)`` in this (main) thread; a helper thread arms the harness
    once stream-sep is connected and presses Ctrl-C (interrupt_main) once the signal and
    ``tail_s`` seconds after it are captured."""
    import _thread
    import threading

    from stream_sep import cli

    harness.play(signal_)
    state = {"running": True}

    def arm_then_interrupt():
        deadline = time.monotonic() + 180
        while state["running"] and not harness.connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(SETTLE_SECONDS)
        harness.arm()
        needed = signal_.shape[1] + int(tail_s * harness.rate)
        while state["running"] and harness.captured < needed and time.monotonic() < deadline:
            time.sleep(0.02)
        if state["running"]:
            _thread.interrupt_main()

    threading.Thread(target=arm_then_interrupt, daemon=True).start()
    try:
        return cli.main(argv)
    finally:
        state["running"] = False
