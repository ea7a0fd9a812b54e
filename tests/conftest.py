import signal

import pytest

from stream_sep.models.loading import load_model
from tests.helpers import gain_model
from tests.jack_harness import harness, jack_server  # noqa: F401
from tests.pulse_harness import pulse_server  # noqa: F401

# The live tests stop stream-sep with Ctrl-C: in this process (_thread.interrupt_main) and in
# the ones they start (SIGINT). A suite started as a background job of a shell without job
# control inherits SIGINT ignored, and both would then run forever; Python's own handler
# here also gives every child process the default again (exec resets handled signals).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _own_user_cache(tmp_path_factory, monkeypatch):
    """Each test its own user cache ($XDG_CACHE_HOME, inherited by the commands it runs):
    the live host keeps the model's speed over its starts there, and one test's measured
    speed must not choose another test's plan."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def identity(tmp_path_factory):
    """A contract-satisfying model whose vocal estimate is the mixture itself."""
    return load_model(gain_model(tmp_path_factory.mktemp("m") / "identity.onnx", 1.0))


@pytest.fixture(scope="session")
def half(tmp_path_factory):
    """A model whose vocal estimate is half the mixture (a known answer)."""
    return load_model(gain_model(tmp_path_factory.mktemp("m") / "half.onnx", 0.5))


@pytest.fixture(scope="session")
def half_path(tmp_path_factory):
    """The path of a model whose vocal estimate is half the mixture."""
    return gain_model(tmp_path_factory.mktemp("m") / "half.onnx", 0.5)
