"""Measure training speed: data-loading batches per second and seconds per training step.

    python -m train.throughput --data DIR --format mir1k [--presets tiny,small,full]
        [--recipes seed,none,produced]

Numbers depend on what else runs on the machine: say so when you report them.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from train.quiet import quiet_tensorflow

log = logging.getLogger(__name__)


def batches_per_second(dataset, batches: int) -> float:
    """Batches produced per second by ``dataset[i]`` in this thread."""
    dataset[0]
    start = time.perf_counter()
    for index in range(batches):
        dataset[index]
    return batches / (time.perf_counter() - start)


def seconds_per_step(preset: str, batch_size: int, steps: int) -> float:
    """Seconds per optimizer step of ``preset`` on random audio (after one warm-up step)."""
    import numpy as np

    from train.config import preset_config
    from train.fit import TrainSettings, compile_model
    from train.model import build_training_model

    config = preset_config(preset)
    model = build_training_model(config)
    compile_model(model, config, TrainSettings(accumulation_steps=0))
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, (batch_size, config.window_samples)).astype(np.float32)
    y = 0.5 * x[:, None, :]
    model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.throughput", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--format", default="mir1k", choices=("musdb", "musdb-hq", "mir1k"))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--presets", default="tiny,small,full")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--recipes", default="seed,none", help="augmentation recipes to time")
    args = parser.parse_args(argv)
    quiet_tensorflow()
    from train.data import RandomMixDataset, load_tracks

    train, _, _ = load_tracks(args.data, args.format, val_split=0.15)
    for recipe in filter(None, args.recipes.split(",")):
        dataset = RandomMixDataset(train, ("vocals",), args.batch_size, 65024, args.batches,
                                   augmentation=recipe, original_pairs_fraction=0.5)  # fmt: skip
        rate = batches_per_second(dataset, args.batches)
        print(f"data: {rate:.1f} batches/s of {args.batch_size} (augmentation {recipe})")
    for preset in filter(None, args.presets.split(",")):
        step = seconds_per_step(preset, args.batch_size, args.steps)
        print(f"train step: {preset}: {step:.2f} s/step at batch {args.batch_size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
