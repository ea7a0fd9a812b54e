"""The training run: data, model, optimizer, callbacks, run directory and resume."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras

from stream_sep import atomic
from stream_sep.errors import UserError
from train import runs
from train import warm_start as warm_start_from
from train.augment import check_pitch_shift, recipe_name
from train.config import ModelConfig
from train.data import RandomMixDataset, fixed_examples, load_tracks
from train.losses import SignalToDistortionRatio, SpectralLoss
from train.model import build_training_model, core_network_of, load_checkpoint
from train.schedules import WarmupDecay

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainSettings:
    """Everything about a run except the model; defaults are the seed's recipe."""

    data: str | None = None
    format: str = "musdb"
    epochs: int = 10
    steps_per_epoch: int = 2000  # the seed: 1000 * ACCUMULATION_STEPS batches
    batch_size: int = 3  # per replica
    accumulation_steps: int = 2
    lr: float = 5e-5
    warmup_steps: int = 0
    lr_half_life: int = 0
    lr_decay_start: int = 0
    lr_decay_steps: int = 0
    lr_final_factor: float = 0.1
    plateau_factor: float = 0.95
    plateau_patience: int = 2
    augmentation: str = "seed"  # a recipe of train.augment: none, seed, produced
    vocal_pitch_shift: list[float] | None = None  # LOW, HIGH semitones, P: the recipe's own if None
    original_pairs_fraction: float = 0.0
    val_singers: list[str] | None = None
    val_split: float = 0.15
    val_examples: int = 64
    workers: int = 0
    seed: int = 21  # the seed's keras.utils.set_random_seed(21)
    distribute: bool = False
    progress: str = "bar"
    log_every: int = 0
    init_from: str | None = None  # an ONNX model exported by export/: its weights to start from
    # full-band examples (train/fullband): their share, the rendered songs, their folder, seed
    fullband_share: float = 0.0
    fullband_songs: int = 100
    fullband_cache: str | None = None  # default: the run directory
    fullband_seed: int = 0
    # real multitrack songs (train/multitrack): their folder, the songs used, their share
    multitrack: str | None = None
    multitrack_songs: list[str] | None = None
    multitrack_share: float = 0.0

    def __post_init__(self) -> None:
        # runs saved before the recipes stored augmentation as true/false
        self.augmentation = recipe_name(self.augmentation)

    def validate(self) -> None:
        positive = ("epochs", "steps_per_epoch", "batch_size", "val_examples")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(
                    f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}"
                )
        non_negative = ("accumulation_steps", "warmup_steps", "lr_half_life", "lr_decay_start",
                        "lr_decay_steps", "workers", "log_every")  # fmt: skip
        for name in non_negative:
            if getattr(self, name) < 0:
                raise UserError(
                    f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}"
                )
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.original_pairs_fraction <= 1:
            raise UserError(
                f"--original-pairs-fraction must be in [0, 1], got {self.original_pairs_fraction}"
            )
        if self.vocal_pitch_shift is not None:
            if self.augmentation == "none":
                raise UserError(
                    "--vocal-pitch-shift needs an augmentation recipe (seed or produced)"
                )
            check_pitch_shift(self.vocal_pitch_shift)
        if not 0 <= self.fullband_share <= 1:
            raise UserError(f"--fullband-share must be in [0, 1], got {self.fullband_share}")
        if not 0 <= self.multitrack_share <= 1:
            raise UserError(f"--multitrack-share must be in [0, 1], got {self.multitrack_share}")
        if self.multitrack_share > 0 and not self.multitrack:
            raise UserError("--multitrack-share needs --multitrack DIR (the songs' folder)")
        if self.fullband_share + self.multitrack_share > 1:
            raise UserError(
                f"--fullband-share {self.fullband_share} plus --multitrack-share "
                f"{self.multitrack_share} is over 1"
            )
        if self.fullband_songs < 1:
            raise UserError(f"--fullband-songs must be at least 1, got {self.fullband_songs}")
        if not 0 <= self.val_split < 1:
            raise UserError(f"--val-split must be in [0, 1), got {self.val_split}")
        if self.progress not in PROGRESS:
            raise UserError(
                f"--progress must be one of {', '.join(PROGRESS)}, got {self.progress!r}"
            )

    @property
    def uses_schedule(self) -> bool:
        return bool(self.warmup_steps or self.lr_half_life or self.lr_decay_steps)


PROGRESS = {"bar": 1, "epoch": 2, "none": 0}


# ---------------------------------------------------------------- model and optimizer


def make_optimizer(settings: TrainSettings) -> keras.optimizers.Optimizer:
    """Adam with the settings' learning rate (a schedule when warm-up or decay is asked)."""
    return keras.optimizers.Adam(
        learning_rate_of(settings),
        gradient_accumulation_steps=settings.accumulation_steps or None,
    )


def learning_rate_of(settings: TrainSettings) -> float | WarmupDecay:
    if not settings.uses_schedule:
        return settings.lr
    return WarmupDecay(
        settings.lr,
        settings.warmup_steps,
        settings.lr_half_life,
        settings.lr_decay_start,
        settings.lr_decay_steps,
        settings.lr_final_factor,
    )


def compile_model(model: keras.Model, config: ModelConfig, settings: TrainSettings) -> None:
    model.compile(
        optimizer=make_optimizer(settings),
        loss=SpectralLoss(config.n_fft, config.hop_length),
        metrics=[SignalToDistortionRatio(config.n_fft, config.hop_length)],
    )


@contextlib.contextmanager
def distribution(enabled: bool) -> Iterator[int]:
    """Data-parallel training over every local device; yields the number of replicas.

    TensorFlow: ``tf.distribute.MirroredStrategy``; JAX: ``keras.distribution.DataParallel``.
    On one device (or a CPU) both run unchanged with one replica.
    """
    if not enabled:
        yield 1
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        with strategy.scope():
            yield strategy.num_replicas_in_sync
    elif backend == "jax":
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        yield len(devices)
    else:
        raise UserError(f"--distribute supports the tensorflow and jax backends, not {backend}")


# ---------------------------------------------------------------- callbacks


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that saves to a hidden file beside the checkpoint and renames it into
    place (:func:`stream_sep.atomic.write_path`), so a run stopped during a save keeps the
    previous checkpoint intact."""

    def __init__(self, filepath: Path, **kwargs):
        self.final_path = Path(filepath)
        super().__init__(str(self.final_path), **kwargs)

    def on_epoch_end(self, epoch, logs=None):
        with atomic.write_path(self.final_path) as staged:
            self.filepath = str(staged)
            super().on_epoch_end(epoch, logs)
            if staged.stat().st_size == 0:  # nothing saved (not the best epoch): keep the old
                staged.unlink()


class RunState(keras.callbacks.Callback):
    """Writes state.json after the checkpoints of every epoch: what resume needs."""

    def __init__(self, run_dir: Path, best: AtomicModelCheckpoint | None, settings: TrainSettings):
        super().__init__()
        self.run_dir = run_dir
        self.best = best
        self.settings = settings
        self.started = time.monotonic()
        self.previous = runs.read_state(run_dir)

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.monotonic() - self.started + self.previous.get("train_seconds", 0.0)
        steps = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        state = {
            "epochs_done": epoch + 1,
            "steps_done": steps,
            "best_val_sdr": _finite_or_none(self.best.best) if self.best else None,
            "train_seconds": round(elapsed, 1),
            "updated": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        runs.write_json(self.run_dir / runs.STATE, state)
        log.info("epoch %d done: %s", epoch + 1, _format_logs(logs))


class StepLogger(keras.callbacks.Callback):
    """Logs the loss and the seconds per step every ``every`` steps (for runs without a bar)."""

    def __init__(self, every: int):
        super().__init__()
        self.every = every
        self.last = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every == 0:
            now = time.monotonic()
            log.info(
                "step %d: %s, %.2f s/step",
                batch + 1,
                _format_logs(logs),
                (now - self.last) / self.every,
            )
            self.last = now

    def on_epoch_begin(self, epoch, logs=None):
        self.last = time.monotonic()


def _finite_or_none(value: Any) -> float | None:
    value = float(value)
    return value if abs(value) != float("inf") else None


def _format_logs(logs: dict | None) -> str:
    return ", ".join(f"{k}={float(v):.4g}" for k, v in (logs or {}).items())


def make_callbacks(
    run_dir: Path, settings: TrainSettings, best_so_far: float | None, validating: bool = True
) -> list:
    """Checkpoints, log, state and the plateau rule of a run.

    Without a validation split (every singer trained on) there is no best epoch to keep:
    only last.keras is written, and the plateau rule watches the training loss.
    """
    best = (
        AtomicModelCheckpoint(
            run_dir / runs.BEST,
            monitor="val_sdr",
            mode="max",
            save_best_only=True,
            initial_value_threshold=best_so_far,
        )
        if validating
        else None
    )
    callbacks = [
        *([best] if best else []),
        AtomicModelCheckpoint(run_dir / runs.LAST),
        keras.callbacks.CSVLogger(str(run_dir / runs.LOG), append=True),
        RunState(run_dir, best, settings),
        keras.callbacks.TerminateOnNaN(),
    ]
    if settings.log_every:
        callbacks.append(StepLogger(settings.log_every))
    if not settings.uses_schedule:
        # The seed's plateau rule; with a schedule the learning rate is not settable.
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss" if validating else "loss",
                factor=settings.plateau_factor,
                patience=settings.plateau_patience,
            )
        )
    return callbacks


# ---------------------------------------------------------------- the run


def start_run(
    run_dir: Path,
    config: ModelConfig,
    settings: TrainSettings,
    data_info: dict | None = None,
    command: list[str] | None = None,
) -> None:
    """Create the run directory and write config.json and commit.txt."""
    check_new_run(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / runs.COMMIT).write_text(runs.git_commit() + "\n")
    write_run_config(run_dir, config, settings, data_info, command)


def check_new_run(run_dir: Path) -> None:
    """UserError when a new run would take the directory of an existing one."""
    if (run_dir / runs.CONFIG).exists():
        raise UserError(
            f"run {run_dir} already exists; pass --resume to continue it or choose another --run-name"
        )


def write_run_config(
    run_dir: Path,
    config: ModelConfig,
    settings: TrainSettings,
    data_info: dict | None,
    command: list[str] | None = None,
) -> None:
    """Write config.json; ``command`` (the argument list of the command line that started or
    resumed the run) is appended to the run's ``commands``."""
    path = run_dir / runs.CONFIG
    commands = runs.read_run_config(run_dir).get("commands", []) if path.exists() else []
    if command is not None:
        commands = [*commands, command]
    runs.write_json(
        path,
        {
            "model": config.to_dict(),
            "training": dataclasses.asdict(settings),
            "data": data_info or {},
            "commands": commands,
            "backend": keras.backend.backend(),
            "keras_version": keras.__version__,
        },
    )


def train(
    run_dir: Path,
    config: ModelConfig,
    settings: TrainSettings,
    resume: bool,
    command: list[str] | None = None,
) -> keras.callbacks.History:
    """Fit the model, writing checkpoints, log and state into ``run_dir``; ``command`` (the
    command line's arguments) is recorded in config.json."""
    settings.validate()
    if settings.fullband_share > 0:
        from train.fullband import check_requirements

        check_requirements()
    keras.utils.set_random_seed(settings.seed)
    train_tracks, val_tracks, data_info = load_tracks(
        Path(settings.data),
        settings.format,
        settings.val_singers,
        settings.val_split,
        settings.seed,
    )
    # rendered before the run starts, so a failed render leaves no run to resume
    if not resume:
        check_new_run(run_dir)
    fullband = full_band_mixer(run_dir, settings)
    if fullband is not None:
        data_info["fullband"] = fullband.description
    multitrack = multitrack_mixer(settings)
    if multitrack is not None:
        data_info["multitrack"] = multitrack.description
    state = runs.read_state(run_dir) if resume else {"epochs_done": 0}
    if resume:
        had_schedule = TrainSettings(**runs.read_run_config(run_dir)["training"]).uses_schedule
        write_run_config(
            run_dir,
            config,
            settings,
            {**runs.read_run_config(run_dir)["data"], **data_info},
            command,
        )
    else:
        start_run(run_dir, config, settings, data_info, command)
    if state["epochs_done"] >= settings.epochs:
        raise UserError(
            f"run {run_dir} has already done {state['epochs_done']} epochs; pass a larger --epochs"
        )
    with distribution(settings.distribute) as replicas:
        model = (
            resume_model(run_dir, settings, had_schedule)
            if resume
            else build_training_model(config)
        )
        if not resume:
            if settings.init_from:
                warm_start(model, config, settings.init_from)
            compile_model(model, config, settings)
    batch = settings.batch_size * replicas
    train_set = RandomMixDataset(
        train_tracks,
        config.sources,
        batch,
        config.window_samples,
        settings.steps_per_epoch,
        augmentation=settings.augmentation,
        original_pairs_fraction=settings.original_pairs_fraction,
        seed=settings.seed,
        vocal_pitch_shift=settings.vocal_pitch_shift,
        fullband=fullband,
        fullband_share=settings.fullband_share,
        multitrack=multitrack,
        multitrack_share=settings.multitrack_share,
        workers=max(settings.workers, 1),
        use_multiprocessing=False,
    )
    train_set.epoch = state["epochs_done"]
    validation = (
        fixed_examples(
            val_tracks, config.sources, config.window_samples, settings.val_examples, settings.seed
        )
        if val_tracks
        else None
    )
    log.info(
        "training %s: %d train / %d validation tracks, %d validation examples, batch %d x %d replica(s), "
        "epochs %d..%d%s",
        run_dir,
        len(train_tracks),
        len(val_tracks),
        0 if validation is None else len(validation[0]),
        settings.batch_size,
        replicas,
        state["epochs_done"] + 1,
        settings.epochs,
        "" if validation else "; no validation split: every epoch ends in last.keras only",
    )
    return model.fit(
        train_set,
        validation_data=validation,
        validation_batch_size=batch,
        epochs=settings.epochs,
        initial_epoch=state["epochs_done"],
        callbacks=make_callbacks(
            run_dir, settings, state.get("best_val_sdr"), validating=validation is not None
        ),
        verbose=PROGRESS[settings.progress],
    )


def full_band_mixer(run_dir: Path, settings: TrainSettings):
    """The full-band example maker of a run with ``--fullband-share`` > 0 (its songs rendered
    now if missing), else None."""
    if settings.fullband_share <= 0:
        return None
    from train.fullband.cache import ensure_songs
    from train.fullband.mix import FullBandMixer

    songs = ensure_songs(
        Path(settings.fullband_cache or run_dir), settings.fullband_songs, settings.fullband_seed
    )
    return FullBandMixer(songs, settings.vocal_pitch_shift)


def multitrack_mixer(settings: TrainSettings):
    """The real-song example maker of a run with ``--multitrack-share`` > 0, else None."""
    if settings.multitrack_share <= 0:
        return None
    from train.multitrack import MultitrackMixer, load_stem_songs

    return MultitrackMixer(load_stem_songs(Path(settings.multitrack), settings.multitrack_songs))


def warm_start(model: keras.Model, config: ModelConfig, path: str) -> None:
    """Copy an exported ONNX model's weights into the fresh ``model`` (same configuration)."""
    count = warm_start_from.start_from(core_network_of(model), config, path)
    log.info("started from %s: %d weights", path, count)


def resume_model(run_dir: Path, settings: TrainSettings, had_schedule: bool) -> keras.Model:
    """last.keras with its optimizer state; a learning-rate schedule may be replaced.

    With a constant learning rate the restored (possibly plateau-reduced) rate carries on.
    """
    model = load_checkpoint(runs.last_checkpoint(run_dir), compile=True)
    if had_schedule and not settings.uses_schedule:
        raise UserError(
            f"run {run_dir} uses a learning-rate schedule; keep one of --warmup-steps, "
            "--lr-half-life or --lr-decay-steps non-zero when resuming it"
        )
    if settings.uses_schedule:
        model.optimizer.learning_rate = learning_rate_of(settings)
    return model
