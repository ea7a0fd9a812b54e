"""Learning-rate schedule: linear warm-up, optional exponential and final linear decay."""

from __future__ import annotations

import keras
from keras import ops

from train.registry import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``peak * warm-up * exponential * linear``, evaluated at the optimizer's step.

    - warm-up: rises linearly from ``peak / warmup_steps`` to ``peak`` over ``warmup_steps``;
    - exponential: halves every ``half_life`` steps after the warm-up (0 = off);
    - linear: falls from 1 to ``final_factor`` over ``decay_steps`` steps from ``decay_start``
      (``decay_steps`` 0 = off).
    """

    def __init__(
        self,
        peak: float,
        warmup_steps: int = 0,
        half_life: int = 0,
        decay_start: int = 0,
        decay_steps: int = 0,
        final_factor: float = 0.1,
    ):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.half_life = int(half_life)
        self.decay_start = int(decay_start)
        self.decay_steps = int(decay_steps)
        self.final_factor = float(final_factor)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        rate = ops.convert_to_tensor(self.peak, "float32")
        if self.warmup_steps:
            rate = rate * ops.minimum(1.0, (step + 1.0) / self.warmup_steps)
        if self.half_life:
            after_warmup = ops.maximum(step - self.warmup_steps, 0.0)
            rate = rate * ops.power(0.5, after_warmup / self.half_life)
        if self.decay_steps:
            progress = ops.clip((step - self.decay_start) / self.decay_steps, 0.0, 1.0)
            rate = rate * (1.0 - (1.0 - self.final_factor) * progress)
        return rate

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "half_life": self.half_life,
            "decay_start": self.decay_start,
            "decay_steps": self.decay_steps,
            "final_factor": self.final_factor,
        }
