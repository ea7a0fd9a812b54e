"""export/to_onnx.py: a Keras checkpoint becomes an ONNX model the host loads, runs and trusts.

Every export here is real (Keras -> tf2onnx -> onnxruntime), on the tiny preset with a
16-frame window so one conversion takes ~20 s on two cores; the module builds the
checkpoint and exports it once, and the tests share that file.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402

from export import fp16, graph_passes, parity  # noqa: E402
from export.to_onnx import main as export_main  # noqa: E402
from stream_sep.cli import main as stream_sep_main  # noqa: E402
from stream_sep.engine import Separator  # noqa: E402
from stream_sep.models.contract import ModelContract  # noqa: E402
from stream_sep.models.loading import load_model  # noqa: E402
from tests.helpers import noise, voice_over_band  # noqa: E402
from train.config import preset_config  # noqa: E402
from train.model import build_training_model, load_checkpoint  # noqa: E402
from train.stft import spectrogram_to_waveform  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# 16 STFT frames: the shortest window the tiny preset's 4 scales accept.
WINDOW = 7680
SEED = 5

pytestmark = pytest.mark.slow


def tiny_checkpoint(path: Path, **overrides) -> Path:
    """A seeded, randomly initialised tiny-preset training model saved as .keras.

    The output kernel gets the seed's random init: a zero-initialised one outputs silence,
    and a parity check on silence proves nothing.
    """
    keras.utils.set_random_seed(SEED)
    config = preset_config("tiny", window_samples=WINDOW, zero_init_output=False, **overrides)
    build_training_model(config).save(path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "tiny.keras")


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("export") / "tiny.onnx"
    assert export_main(["--checkpoint", str(checkpoint), "--output", str(output)]) == 0
    return output


def keras_reference(checkpoint: Path, audio: np.ndarray) -> np.ndarray:
    """Keras' waveforms through train/'s own STFT and iSTFT: (B, W) -> (B, S, W)."""
    model = load_checkpoint(checkpoint)
    config = preset_config("tiny", window_samples=WINDOW)
    output = keras.ops.convert_to_numpy(model(audio, training=False))  # (B, S, T, 2F)
    batch, n_sources, frames, width = output.shape
    # (B, S, T, 2F) -> (B*S, T, F, 2): real/imag interleaved per bin.
    pairs = output.reshape(batch * n_sources, frames, width // 2, 2)
    waves = spectrogram_to_waveform(pairs, config.n_fft, config.hop_length)
    return keras.ops.convert_to_numpy(waves).reshape(batch, n_sources, -1)


def test_host_waveforms_equal_keras(exported, checkpoint):
    mixture, _, _ = voice_over_band(WINDOW / 16000, seed=3)
    audio = np.stack([mixture, noise(1, WINDOW, seed=4)[0]])  # (2, W): stereo as batch 2
    host = load_model(exported, provider="cpu").separate(audio)
    reference = keras_reference(checkpoint, audio)
    tolerance = parity.TOLERANCES["float32"].relative
    peak = np.abs(reference).max()
    assert peak > 1e-3, "the reference is silent: the comparison would prove nothing"
    assert host.shape == reference.shape == (2, 1, WINDOW)
    assert np.abs(host - reference).max() <= tolerance * peak


def test_graph_holds_the_core_only_with_a_dynamic_batch(exported):
    model = onnx.load(exported)
    ops = {node.op_type for node in model.graph.node}
    assert not ops & {"STFT", "DFT", "RFFT", "IRFFT", "Erfc"}
    assert "Erf" in ops  # the final exact gelu, written with erf
    (spectrogram,) = model.graph.input
    (sources,) = model.graph.output
    dims = [
        [d.dim_param or d.dim_value for d in t.type.tensor_type.shape.dim]
        for t in (spectrogram, sources)
    ]
    assert dims == [["batch", 16, 1024, 2], ["batch", 1, 16, 2048]]
    host = load_model(exported, provider="cpu")
    for batch in (1, 3):
        audio = noise(batch, WINDOW, seed=batch)
        assert host.separate(audio).shape == (batch, 1, WINDOW)


def test_group_norm_means_are_over_adjacent_axes_only(exported):
    """GroupNorm's mean over axes (1, 2, 4) is slow in ONNX Runtime; the export splits it."""
    means = [node for node in onnx.load(exported).graph.node if node.op_type == "ReduceMean"]
    assert means
    for node in means:
        axes = onnx.helper.get_attribute_value(next(a for a in node.attribute if a.name == "axes"))
        assert axes == list(range(axes[0], axes[0] + len(axes))), (node.name, axes)


def test_splitting_a_strided_mean_keeps_its_value():
    import onnxruntime

    helper, TensorProto = onnx.helper, onnx.TensorProto
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["y"], "mean", axes=[1, 2, 4], keepdims=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6, 5, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1, 1, 3, 1])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 3, 4)).astype(np.float32)

    def run(model):
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        return session.run(None, {"x": x})[0]

    before = run(proto)
    assert graph_passes.split_strided_means(proto) == 1
    onnx.checker.check_model(proto)
    assert [onnx.helper.get_attribute_value(n.attribute[0]) for n in proto.graph.node] == [
        [1, 2],
        [4],
    ]
    np.testing.assert_allclose(run(proto), before, rtol=0, atol=1e-6)
    np.testing.assert_allclose(before, x.mean(axis=(1, 2, 4), keepdims=True), atol=1e-6)


def test_one_self_contained_file(exported):
    model = onnx.load(exported, load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert sorted(p.name for p in exported.parent.iterdir()) == ["tiny.onnx"]
    assert oct(exported.stat().st_mode & 0o777) != oct(0o600)  # not a private temp file


def test_metadata_is_the_contract_and_the_provenance(exported):
    metadata = {p.key: p.value for p in onnx.load(exported).metadata_props}
    contract = ModelContract(window_samples=WINDOW)
    assert {k: metadata[k] for k in contract.to_metadata()} == contract.to_metadata()
    assert load_model(exported, provider="cpu").contract == contract
    provenance = {
        k[len("provenance.") :]: v for k, v in metadata.items() if k.startswith("provenance.")
    }
    assert provenance["precision"] == "float32"
    assert provenance["checkpoint"] == "tiny.keras"
    # A bare checkpoint has no run directory: what it cannot tell is said, not invented.
    unknown = ("preset", "model_config", "epochs", "dataset", "git_commit", "best_val_sdr")
    assert {provenance[key] for key in unknown} == {"unknown"}
    assert len(provenance["export_git_commit"]) >= 7


def test_runs_in_the_engine(exported):
    model = load_model(exported, provider="cpu")
    engine = Separator(
        model, 16000, 2, hop=0.1, lookahead=0.05, crossfade=0.02, mode="vocals", blocking=True
    )
    try:
        audio = noise(2, 3 * WINDOW, seed=7, amplitude=0.1)
        out = np.concatenate(
            [engine.process(audio[:, i : i + 441]) for i in range(0, audio.shape[1], 441)], axis=1
        )
        stats = engine.stats
    finally:
        engine.close()
    assert out.shape == audio.shape
    assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
    assert np.abs(out[:, engine.latency_samples :]).max() > 1e-4  # the model's estimate came out
    assert stats.windows_run > 0 and stats.model_failures == 0 and stats.deadline_misses == 0


def test_runs_in_stream_sep_separate(exported, tmp_path):
    song = tmp_path / "song.wav"
    sf.write(song, noise(2, 20000, seed=8, amplitude=0.1).T, 16000)
    out = tmp_path / "out"
    fast = ["--hop", "0.1", "--lookahead", "0.05", "--crossfade", "0.02", "--quiet"]
    code = stream_sep_main(["separate", str(song), "-o", str(out), "--model", str(exported), *fast])
    assert code == 0
    for stem in ("karaoke", "vocals"):
        audio, rate = sf.read(tmp_path / "out" / "song" / f"{stem}.wav")
        assert rate == 16000 and audio.shape == (20000, 2) and np.isfinite(audio).all()


@pytest.fixture
def tiny_scale_checkpoint(tmp_path) -> Path:
    """One scale, one block: the same layers, converted in a few seconds."""
    return tiny_checkpoint(tmp_path / "small.keras", n_scales=1, block_size=1)


def test_newest_run_fp16_next_to_its_checkpoint(tiny_scale_checkpoint, tmp_path, capsys):
    """No --checkpoint: the newest run's best.keras; --fp16 writes best.fp16.onnx beside it."""
    run = tmp_path / "runs" / "tiny-mir1k"
    run.mkdir(parents=True)
    shutil.copy(tiny_scale_checkpoint, run / "best.keras")
    config = preset_config(
        "tiny", window_samples=WINDOW, zero_init_output=False, n_scales=1, block_size=1
    )
    training = {"format": "mir1k", "data": "/data/mir1k", "seed": 7}
    commands = [
        ["python", "-m", "train", "--data", "/data/mir 1k"],
        ["python", "-m", "train", "--resume"],
    ]
    (run / "config.json").write_text(
        json.dumps({"model": config.to_dict(), "training": training, "commands": commands})
    )
    (run / "state.json").write_text(
        json.dumps({"epochs_done": 3, "steps_done": 300, "best_val_sdr": 6.25})
    )
    (run / "commit.txt").write_text("abc1234\n")

    assert export_main(["--runs-root", str(tmp_path / "runs"), "--fp16"]) == 0

    output = run / "best.fp16.onnx"
    printed = capsys.readouterr().out
    assert f"wrote {output}" in printed and "parity: max |onnx - keras|" in printed
    model = onnx.load(output)
    metadata = {p.key: p.value for p in model.metadata_props}
    expected = {"preset": "custom", "dataset": "mir1k:mir1k", "epochs": "3", "steps": "300"}
    expected |= {"best_val_sdr": "6.250", "git_commit": "abc1234", "precision": "float16"}
    assert {k: metadata["provenance." + k] for k in expected} == expected
    assert json.loads(metadata["provenance.model_config"]) == config.to_dict()
    # the data recipe, seed and command lines travel with the weights
    assert json.loads(metadata["provenance.training"]) == training
    assert json.loads(metadata["provenance.commands"]) == [
        "python -m train --data '/data/mir 1k'",
        "python -m train --resume",
    ]
    sizes = collections.Counter()
    for tensor in model.graph.initializer:
        sizes[tensor.data_type] += int(np.prod(tensor.dims))
    # Float16 but for the output head's two 1x1 convolutions and GroupNorm's epsilon.
    assert sizes[onnx.TensorProto.FLOAT16] > 0.9 * (
        sizes[onnx.TensorProto.FLOAT] + sizes[onnx.TensorProto.FLOAT16]
    )
    io_types = {t.type.tensor_type.elem_type for t in (*model.graph.input, *model.graph.output)}
    assert io_types == {onnx.TensorProto.FLOAT}
    # Full-scale low tones overflow a naive float16 GroupNorm into NaN; this one stays finite.
    host = load_model(output, provider="cpu")
    loud = np.stack(list(parity.stress_signals(host.contract).values()))
    assert np.isfinite(host.separate(loud)).all()


def test_float16_keeps_what_overflows_in_float32(exported, tmp_path):
    """A plain float16 conversion of this model outputs NaN for a full-scale low sine."""
    from onnxruntime.transformers import float16

    fp32 = onnx.load(exported)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # weights flushed to float16's 1e-7
        plain = float16.convert_float_to_float16(onnx.load(exported), keep_io_types=True)
    onnx.save(plain, tmp_path / "plain.onnx")
    onnx.save(fp16.to_float16(fp32), tmp_path / "kept.onnx")
    loud = np.stack(list(parity.stress_signals(ModelContract(window_samples=WINDOW)).values()))
    plain_out = load_model(tmp_path / "plain.onnx", provider="cpu").separate(loud)
    kept_out = load_model(tmp_path / "kept.onnx", provider="cpu").separate(loud)
    reference = load_model(exported, provider="cpu").separate(loud)
    assert not np.isfinite(plain_out).all()
    peak = np.abs(reference).max()
    assert np.abs(kept_out - reference).max() <= parity.TOLERANCES["float16"].relative * peak


def test_float16_weights_halve_the_file_and_compute_in_float32(exported, checkpoint, tmp_path):
    """--fp16-weights: float16 storage behind Casts; every other node sees float32 only."""
    proto = onnx.load(exported)
    converted = fp16.store_weights_as_float16(proto)
    graph_passes.check_graph(proto)
    path = tmp_path / "half-stored.onnx"
    onnx.save(proto, path)

    assert converted > 50
    assert path.stat().st_size < 0.6 * exported.stat().st_size
    halves = {t.name for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    assert len(halves) == converted
    readers = [node for node in proto.graph.node if set(node.input) & halves]
    assert {node.op_type for node in readers} == {"Cast"}
    assert all(node.attribute[0].i == onnx.TensorProto.FLOAT for node in readers)
    # The host's parity check against Keras at this precision's tolerance, and loud input.
    result = parity.verify(path, load_checkpoint(checkpoint), "float16-weights")
    assert result.passed and result.max_abs > 0  # rounded weights: close, not identical
    assert load_model(path, provider="cpu").io_dtype == np.float32


def test_fp16_weights_from_the_command_line(tiny_scale_checkpoint, tmp_path, capsys):
    assert export_main(["--checkpoint", str(tiny_scale_checkpoint), "--fp16-weights"]) == 0
    output = tiny_scale_checkpoint.with_name("small.fp16w.onnx")
    printed = capsys.readouterr().out
    assert "float16 weights, float32 arithmetic" in printed and f"wrote {output}" in printed
    metadata = {p.key: p.value for p in onnx.load(output).metadata_props}
    assert metadata["provenance.precision"] == "float16-weights"
    err = refuse(["--checkpoint", str(tiny_scale_checkpoint), "--fp16", "--fp16-weights"], capsys)
    assert "--fp16-weights: not allowed with argument --fp16" in err


def test_parity_failure_deletes_the_file_and_keeps_the_old_one(
    tiny_scale_checkpoint, tmp_path, monkeypatch, capsys
):
    output = tmp_path / "model.onnx"
    output.write_bytes(b"the previous export")
    monkeypatch.setitem(parity.TOLERANCES, "float32", parity.Tolerance(0.0, "test: nothing passes"))
    code = export_main(["--checkpoint", str(tiny_scale_checkpoint), "--output", str(output)])
    err = capsys.readouterr().err
    assert code == 1
    assert (
        err.startswith("to_onnx.py: export failed: parity check failed (float32)")
        and err.count("\n") == 1
    )
    assert output.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "small.keras"]


def refuse(args: list[str], capsys) -> str:
    code = export_main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("to_onnx.py: error: ")
    return err


def test_every_precision_has_a_tolerance_an_output_name_and_a_description():
    from export import checkpoint, pipeline, to_onnx

    assert set(pipeline.PRECISIONS) == {"float32", "float16", "float16-weights"}
    assert set(checkpoint.OUTPUT_SUFFIXES) == set(pipeline.PRECISIONS)
    assert set(to_onnx.PRECISION_WORDS) == set(pipeline.PRECISIONS)
    assert len(set(checkpoint.OUTPUT_SUFFIXES.values())) == len(pipeline.PRECISIONS)


def test_missing_checkpoint(tmp_path, capsys):
    err = refuse(
        ["--checkpoint", str(tmp_path / "nope.keras"), "--output", str(tmp_path / "m.onnx")], capsys
    )
    assert "does not exist" in err and "nope.keras" in err
    assert list(tmp_path.iterdir()) == []


def test_not_a_keras_model(tmp_path, capsys):
    fake = tmp_path / "fake.keras"
    fake.write_text("not a model")
    err = refuse(["--checkpoint", str(fake), "--output", str(tmp_path / "m.onnx")], capsys)
    assert "is not a .keras model file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.keras"]


@pytest.mark.parametrize("where", ["missing folder", "folder is a file", "output is a folder"])
def test_unwritable_output(checkpoint, tmp_path, capsys, where):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir.onnx").mkdir()
    output = {
        "missing folder": tmp_path / "no" / "m.onnx",
        "folder is a file": tmp_path / "file" / "m.onnx",
        "output is a folder": tmp_path / "dir.onnx",
    }[where]
    err = refuse(["--checkpoint", str(checkpoint), "--output", str(output)], capsys)
    assert str(output) in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["dir.onnx", "file"]


def test_no_runs_and_bad_opset(tmp_path, capsys):
    err = refuse(["--runs-root", str(tmp_path / "runs")], capsys)
    assert "runs" in err
    assert "--opset must be in 13..18, got 9" in refuse(["--opset", "9"], capsys)


def test_script_runs_from_the_repository_root(tmp_path):
    """As a user types it: the script finds train/ and export/ itself."""
    script = [sys.executable, "export/to_onnx.py"]
    shown = subprocess.run(
        [*script, "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "newest run" in shown.stdout and "--fp16" in shown.stdout
    missing = subprocess.run(
        [*script, "--checkpoint", str(tmp_path / "x.keras")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert (
        missing.stderr.strip().splitlines()[-1]
        == f"to_onnx.py: error: --checkpoint '{tmp_path / 'x.keras'}' does not exist"
    )


def test_the_same_weights_export_on_another_window(tiny_scale_checkpoint, tmp_path, capsys):
    """--window-samples: the checkpoint's weights on a longer (or shorter) window, checked
    against Keras at that window; the contract says the new window, the provenance the old."""
    run = tmp_path / "run"
    run.mkdir()
    checkpoint = run / "last.keras"
    shutil.copy(tiny_scale_checkpoint, checkpoint)
    args = ["--checkpoint", str(checkpoint)]
    # without its run folder the network's structure is unknown: refused before any work
    bare = refuse([*args[:1], str(tiny_scale_checkpoint), "--window-samples", "15872"], capsys)
    assert "--window-samples needs the checkpoint's run folder" in bare
    config = preset_config(
        "tiny", window_samples=WINDOW, zero_init_output=False, n_scales=1, block_size=1
    )
    (run / "config.json").write_text(json.dumps({"model": config.to_dict()}))
    same, longer = tmp_path / "same.onnx", tmp_path / "long.onnx"
    assert export_main([*args, "--output", str(same)]) == 0
    assert export_main([*args, "--output", str(longer), "--window-samples", "15872"]) == 0
    assert "parity: " in capsys.readouterr().out
    assert load_model(longer, provider="cpu").contract.window_samples == 15872
    metadata = {p.key: p.value for p in onnx.load(longer).metadata_props}
    assert metadata["provenance.trained_window_samples"] == str(WINDOW)
    assert json.loads(metadata["provenance.model_config"])["window_samples"] == 15872

    def weights(path) -> set[bytes]:  # names differ between exports: compare the contents
        arrays = [onnx.numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer]
        return {a.tobytes() + str(a.shape).encode() for a in arrays if a.size > 1000}

    assert len(weights(same)) > 10 and weights(longer) == weights(same)
    err = refuse(
        [*args, "--output", str(tmp_path / "bad.onnx"), "--window-samples", "8000"], capsys
    )
    assert "--window-samples 8000: window_samples must be a multiple of hop_length" in err
    assert not (tmp_path / "bad.onnx").exists()
