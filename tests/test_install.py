"""The install profiles: `pip install .` is the host alone, and `python -m train --help`
answers without TensorFlow.

The host test builds a fresh virtual environment from this checkout (the files git knows,
copied, so the build leaves nothing in the tree), installs it without extras and runs the
installed `stream-sep` there: the device list through PortAudio and JACK, and `separate`
on a generated file with the bundled model. It is built once per session.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import noise, sine

REPO = Path(__file__).resolve().parents[1]
# Nothing of training may come with the host.
TRAINING_MODULES = ("tensorflow", "keras", "jax", "jaxlib", "tf2onnx")
TRAINING_DISTRIBUTIONS = (
    "tensorflow",
    "tensorflow-cpu",
    "tf-keras",
    "keras",
    "jax",
    "jaxlib",
    "tf2onnx",
)
HOST_DISTRIBUTIONS = ("stream-sep", "numpy", "soundfile", "sounddevice", "soxr", "scipy", "norbert")
PIP_TIMEOUT = 900


def clean_env() -> dict[str, str]:
    """The environment for the fresh venv's commands: no PYTHONPATH pointing at the checkout
    (the installed package must be the one that runs), no other venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def checkout_files(root: Path) -> list[Path]:
    """The checkout's files as git sees them: tracked and new, without ignored ones."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [Path(name) for name in listed.split("\0") if name and (root / name).is_file()]


def copy_checkout(target: Path) -> Path:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.fail("the install test needs the git checkout (git ls-files)", pytrace=False)
    for name in checkout_files(REPO):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name)
    return target


def run(command: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def host_venv(tmp_path_factory) -> Path:
    """A fresh venv holding `pip install .` of this checkout, no extras. Returns its bin/."""
    root = tmp_path_factory.mktemp("host-install")
    source = copy_checkout(root / "source")
    venv = root / "venv"
    # The venv's base interpreter, also when the suite itself runs in a venv.
    created = run([sys.executable, "-m", "venv", venv], cwd=root)
    assert created.returncode == 0, created.stderr
    installed = run(
        [venv / "bin" / "python", "-m", "pip", "install", "--no-compile", "-q", source],
        cwd=root,
        timeout=PIP_TIMEOUT,
    )
    assert installed.returncode == 0, f"pip install . failed:\n{installed.stderr[-3000:]}"
    return venv / "bin"


def installed_state(bin_dir: Path, workdir: Path) -> dict:
    """What the venv's own Python can import and which distributions it holds."""
    probe = textwrap.dedent(
        f"""
        import importlib.metadata, importlib.util, json
        import stream_sep
        print(json.dumps({{
            "importable": [m for m in {TRAINING_MODULES!r} if importlib.util.find_spec(m)],
            "distributions": sorted(
                d.metadata["Name"].lower().replace("_", "-")
                for d in importlib.metadata.distributions()
            ),
            "stream_sep": stream_sep.__file__,
        }}))
        """
    )
    result = run([bin_dir / "python", "-c", probe], cwd=workdir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_the_host_installs_without_anything_of_training(host_venv, tmp_path):
    state = installed_state(host_venv, tmp_path)
    assert state["importable"] == [], f"training modules in the host install: {state}"
    distributions = set(state["distributions"])
    assert distributions.isdisjoint(TRAINING_DISTRIBUTIONS), sorted(distributions)
    assert set(HOST_DISTRIBUTIONS) <= distributions, sorted(distributions)
    # Exactly one ONNX Runtime build: two would overwrite each other's files.
    assert "onnxruntime" in distributions and "onnxruntime-gpu" not in distributions
    # The code that runs is the installed copy, not this checkout.
    assert Path(state["stream_sep"]).is_relative_to(host_venv.parent)


@pytest.mark.slow
@pytest.mark.jack
def test_the_host_install_lists_the_audio_devices(host_venv, jack_server, tmp_path):
    result = run([host_venv / "stream-sep", "--list-devices"], cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    # The JACK server's own device, through the system's PortAudio.
    assert "JACK Audio Connection Kit" in result.stdout, result.stdout


@pytest.mark.slow
def test_the_host_install_separates_a_file_with_the_bundled_model(host_venv, tmp_path):
    rate = 44100
    mixture = sine(220.0, 1.0, rate, amplitude=0.4) + noise(1, rate, seed=3)[0]
    stereo = np.vstack([mixture, 0.8 * mixture])  # (2, samples) float32
    source = tmp_path / "song.wav"
    sf.write(source, stereo.T, rate, subtype="FLOAT")
    out = tmp_path / "out"
    result = run([host_venv / "stream-sep", "separate", source, "-o", out, "--quiet"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stems = sorted(out.rglob("*.wav"))
    assert {stem.name for stem in stems} == {"karaoke.wav", "vocals.wav"}, stems
    for stem in stems:
        audio, stem_rate = sf.read(stem, dtype="float32", always_2d=True)
        assert stem_rate == rate
        assert audio.shape == stereo.T.shape
        assert np.isfinite(audio).all()
        assert np.abs(audio).max() > 0, f"{stem.name} is silent"


def train_entry_point(*args: str) -> subprocess.CompletedProcess:
    """`python -m train ARGS` in a fresh interpreter that reports afterwards which of the
    training modules it imported (stderr's last line: a JSON list)."""
    probe = textwrap.dedent(
        f"""
        import json, runpy, sys
        sys.argv = ["train", *{list(args)!r}]
        try:
            runpy.run_module("train", run_name="__main__", alter_sys=True)
        finally:
            loaded = [m for m in {TRAINING_MODULES!r} if m in sys.modules]
            print(json.dumps(loaded), file=sys.stderr)
        """
    )
    return subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_train_help_parses_without_importing_tensorflow():
    result = train_entry_point("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m train")
    assert "--preset {full,small,tiny}" in result.stdout
    assert json.loads(result.stderr.splitlines()[-1]) == []


def test_train_bad_options_are_refused_before_tensorflow_loads():
    result = train_entry_point("--format", "wav")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("python -m train: error: argument --format: invalid choice: 'wav'")
    assert json.loads(lines[-1]) == []
    result = train_entry_point("--epochs", "3")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == (
        "python -m train: error: --data DIR is required (or --download DIR for MUSDB18, "
        "or --summary)"
    )
    assert json.loads(lines[-1]) == []
