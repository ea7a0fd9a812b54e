"""python -m train end to end on generated data: runs, resume, overfitting, JAX, bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from export import provenance  # noqa: E402
from stream_sep.errors import UserError  # noqa: E402
from tests.test_train_data import write_mir1k, write_musdb  # noqa: E402
from train import runs  # noqa: E402
from train.cli import main  # noqa: E402
from train.config import preset_config  # noqa: E402
from train.fit import TrainSettings, compile_model  # noqa: E402
from train.model import build_training_model, load_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WINDOW = 7680  # 16 frames: the shortest window the tiny preset accepts
# A short, fast run of the pipeline: the tiny preset cut to one scale and one block per
# TFC_TDF (every layer type still in it; tracing the full graph costs ~30 CPU-s, this ~4),
# 0.48-s chunks, 2 examples a step, no accumulation. The architecture itself is tested in
# test_train_model.py and by the overfitting test below.
FAST = ["--preset", "tiny", "--n-scales", "1", "--block-size", "1", "--window-samples", str(WINDOW), "--batch-size", "2",
        "--accumulation-steps", "0", "--lr", "2e-3", "--val-examples", "4", "--progress", "none"]  # fmt: skip
# JAX and TensorFlow run the same float32 graph with different kernels (convolutions, FFT).
BACKEND_ATOL = 1e-4


def read_log(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / runs.LOG) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_a_tiny_musdb_run_writes_its_directory_learns_and_resumes(tmp_path):
    data = write_musdb(tmp_path / "musdb", songs=2, seconds=1.0)
    args = ["--data", str(data), "--format", "musdb", *FAST, "--steps-per-epoch", "6",
            "--runs-dir", str(tmp_path / "runs"), "--run-name", "m"]  # fmt: skip
    assert main([*args, "--epochs", "2", "--seed", "3"]) == 0
    run_dir = tmp_path / "runs" / "m"
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "log.csv", "best.keras", "last.keras",
                                                   "commit.txt", "state.json"}  # fmt: skip
    config = runs.read_run_config(run_dir)
    assert config["model"]["channels"] == 16 and config["model"]["window_samples"] == WINDOW
    assert config["training"]["seed"] == 3 and config["data"] == {"train_songs": 2, "val_songs": 2}
    assert config["commands"] == [["python", "-m", "train", *args, "--epochs", "2", "--seed", "3"]]
    assert (run_dir / "commit.txt").read_text().strip()
    rows = read_log(run_dir)
    assert [r["epoch"] for r in rows] == [0, 1]
    # the model starts from a zero estimate (0 dB); a dozen steps must already beat it
    assert rows[-1]["val_loss"] < rows[0]["val_loss"] or rows[-1]["val_sdr"] > 0.5

    assert (
        main(["--resume", "--runs-dir", str(tmp_path / "runs"), "--run-name", "m", "--epochs", "3"])
        == 0
    )
    rows = read_log(run_dir)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    # the resume's command line is added to the first one
    commands = runs.read_run_config(run_dir)["commands"]
    assert len(commands) == 2 and commands[1][3:] == ["--resume", "--runs-dir", str(tmp_path / "runs"),
                                                      "--run-name", "m", "--epochs", "3"]  # fmt: skip
    state = runs.read_state(run_dir)
    assert state["epochs_done"] == 3 and state["steps_done"] == 18
    assert state["best_val_sdr"] == pytest.approx(max(r["val_sdr"] for r in rows), abs=1e-4)
    assert runs.newest_run(tmp_path / "runs") == run_dir
    assert runs.best_checkpoint(run_dir).name == "best.keras"


def test_a_tiny_mir1k_run_holds_out_singers_and_its_loss_falls(tmp_path):
    data = write_mir1k(tmp_path / "mir1k", singers=("ann", "bob", "cat"), clips=2)
    run_dir = tmp_path / "runs" / "r"
    code = main(["--data", str(data), "--format", "mir1k", *FAST, "--steps-per-epoch", "8", "--epochs", "2",
                 "--val-singers", "cat", "--original-pairs-fraction", "0.5", "--warmup-steps", "4",
                 "--lr-half-life", "100", "--log-every", "4", "--runs-dir", str(tmp_path / "runs"),
                 "--run-name", "r"])  # fmt: skip
    assert code == 0
    config = runs.read_run_config(run_dir)
    assert config["data"]["val_singers"] == ["cat"]
    assert config["training"]["warmup_steps"] == 4
    rows = read_log(run_dir)
    assert rows[1]["loss"] < rows[0]["loss"]
    # the zero-initialised model starts at exactly 0 dB; after training it beats that
    assert rows[1]["val_sdr"] > 0
    # last.keras carries the optimizer's state (what resume needs)
    model = load_checkpoint(run_dir / "last.keras", compile=True)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 16


def test_val_split_0_trains_on_every_singer_and_export_takes_its_last_checkpoint(tmp_path):
    """The shipped model's last step: no singer held out, so no best epoch to choose; the run
    keeps last.keras (resumable), the plateau rule watches the training loss, and the export's
    default checkpoint of the run is last.keras."""
    data = write_mir1k(tmp_path / "mir1k", singers=("ann", "bob"), clips=2)
    root = tmp_path / "runs"
    args = ["--data", str(data), "--format", "mir1k", *FAST, "--steps-per-epoch", "4",
            "--val-split", "0", "--runs-dir", str(root), "--run-name", "all"]  # fmt: skip
    assert main([*args, "--epochs", "2"]) == 0
    run_dir = root / "all"
    config = runs.read_run_config(run_dir)
    assert config["data"] == {"val_singers": [], "train_clips": 4, "val_clips": 0}
    assert not (run_dir / "best.keras").exists() and (run_dir / "last.keras").is_file()
    with open(run_dir / runs.LOG) as f:
        rows = list(csv.DictReader(f))
    # Keras' CSV logger names the validation columns anyway and fills them with NA
    assert [(r["epoch"], r["val_sdr"]) for r in rows] == [("0", "NA"), ("1", "NA")]
    assert np.isfinite(float(rows[-1]["loss"]))
    assert runs.read_state(run_dir)["best_val_sdr"] is None
    assert runs.best_checkpoint(run_dir) == run_dir / "last.keras"
    assert main(["--resume", "--runs-dir", str(root), "--run-name", "all", "--epochs", "3"]) == 0
    assert runs.read_state(run_dir)["steps_done"] == 12
    # what the export writes into the model's metadata about this run
    model_config = preset_config("tiny").__class__.from_dict(config["model"])
    facts = provenance.read_provenance(run_dir / "last.keras", model_config)
    assert facts["provenance.best_val_sdr"] == "none (no validation split)"
    assert facts["provenance.epochs"] == "3" and facts["provenance.steps"] == "12"
    # a run that holds singers out still needs its best.keras
    held = root / "held"
    held.mkdir()
    runs.write_json(held / runs.CONFIG, {"data": {"val_clips": 2}})
    (held / runs.LAST).write_bytes(b"")
    with pytest.raises(UserError, match="no best.keras"):
        runs.best_checkpoint(held)


@pytest.mark.slow
def test_the_tiny_preset_overfits_one_batch():
    config = preset_config("tiny", window_samples=WINDOW)
    model = build_training_model(config)
    compile_model(model, config, TrainSettings(lr=2e-3, accumulation_steps=0))
    rng = np.random.default_rng(0)
    t = np.arange(WINDOW) / 16000
    vocals = np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in (440, 660)]).astype(np.float32)
    noise = rng.normal(0, 0.1, (2, WINDOW)).astype(np.float32)
    x, y = vocals + noise, vocals[:, None, :]
    first = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    model.fit(x, y, batch_size=2, epochs=60, verbose=0)
    last = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert last < 0.5 * first


def test_gradient_accumulation_is_the_seeds_default():
    settings = TrainSettings()
    assert (settings.batch_size, settings.accumulation_steps, settings.lr) == (3, 2, 5e-5)
    config = preset_config("tiny", window_samples=WINDOW)
    model = build_training_model(config)
    compile_model(model, config, settings)
    assert model.optimizer.gradient_accumulation_steps == 2


JAX_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    from train.cli import main
    from train.model import load_checkpoint

    data, runs_dir, out = sys.argv[1:4]
    assert keras.backend.backend() == "jax"
    code = main(["--data", data, "--format", "mir1k", "--preset", "tiny", "--n-scales", "1", "--block-size", "1",
                 "--window-samples", "7680", "--batch-size", "2", "--accumulation-steps", "2", "--lr", "1e-3", "--warmup-steps", "2",
                 "--val-examples", "2", "--steps-per-epoch", "4", "--epochs", "1", "--seed-init",
                 "--val-singers", "cat", "--progress", "none", "--runs-dir", runs_dir, "--run-name", "j"])
    assert code == 0, code
    model = load_checkpoint(runs_dir + "/j/last.keras")
    x = np.random.default_rng(0).normal(0, 0.1, (2, 7680)).astype("float32")
    np.savez(out, x=x, y=np.asarray(model.predict(x, verbose=0)))
    """
)


@pytest.mark.slow
def test_a_run_under_jax_loads_under_tensorflow_with_equal_outputs(tmp_path):
    data = write_mir1k(tmp_path / "mir1k", singers=("ann", "cat"), clips=2)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(data), str(tmp_path / "runs"), str(tmp_path / "out.npz")],
        env=env, capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert runs.read_run_config(tmp_path / "runs" / "j")["backend"] == "jax"
    saved = np.load(tmp_path / "out.npz")
    assert keras.backend.backend() == "tensorflow"
    model = load_checkpoint(tmp_path / "runs" / "j" / "last.keras", compile=True)
    assert model.optimizer.gradient_accumulation_steps == 2
    assert np.abs(saved["y"]).max() > 1e-3
    np.testing.assert_allclose(model.predict(saved["x"], verbose=0), saved["y"], atol=BACKEND_ATOL)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "train", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def test_bad_input_is_one_line_and_exit_status_2(tmp_path):
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "test").mkdir()
    unreadable = write_mir1k(tmp_path / "mir1k", singers=("ann", "bob"))
    (unreadable / "ann_1_01.flac").write_bytes(b"garbage")
    cases = {
        "not a directory": ["--data", str(tmp_path / "missing"), "--format", "mir1k"],
        "no song folders": ["--data", str(empty), "--format", "musdb"],
        "cannot read audio file": [
            "--data",
            str(unreadable),
            "--format",
            "mir1k",
            "--val-singers",
            "bob",
        ],
        "invalid choice: 'wav'": ["--data", str(empty), "--format", "wav"],
        "--epochs must be at least 1": ["--data", str(empty), "--format", "musdb", "--epochs", "0"],
        "no training runs": ["--resume", "--runs-dir", str(tmp_path / "none")],
    }
    for message, args in cases.items():
        result = in_process(args)
        assert result == 2, (message, result)
    # through the real entry point: one line on stderr, no traceback, no TensorFlow noise
    result = run_cli("--data", str(tmp_path / "missing"), "--format", "mir1k")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"python -m train: error: --data {tmp_path / 'missing'}: not a directory"
    ]


def in_process(args: list[str]) -> int:
    return main(args)


def test_an_existing_run_is_not_overwritten(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "x"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"model": {}, "training": {}}))
    data = write_mir1k(tmp_path / "mir1k", singers=("ann", "bob"))
    code = main(["--data", str(data), "--format", "mir1k", *FAST, "--val-singers", "bob",
                 "--runs-dir", str(tmp_path / "runs"), "--run-name", "x"])  # fmt: skip
    assert code == 2
    assert "already exists; pass --resume" in capsys.readouterr().err


def test_summary_prints_the_trainable_parameter_count():
    result = run_cli("--preset", "tiny", "--summary")
    assert result.returncode == 0, result.stderr
    assert "Trainable parameters: 3,818,624" in result.stdout
    assert result.stderr == ""
