"""The outer optimizer of a run and its learning-rate schedule.

The schedule is a Keras ``LearningRateSchedule`` of the optimizer's ``iterations`` (checkpointed
with the optimizer), so a resumed run continues the schedule where it stopped. It spans the
run's total steps: resuming with more ``steps`` or ``epochs`` stretches the rest of it.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from metaadv_tf.training.config import TrainConfig

PIECEWISE_BOUNDARIES = (0.5, 0.75)  # fractions of the total steps where piecewise drops the rate
PIECEWISE_FACTOR = 0.1


class StepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``learning_rate`` × the ``kind`` factor × the warmup factor at optimizer step t (from 0).

    With T = ``total_steps`` and w = ``warmup_steps``: cosine ½(1 + cos(π·min(1, (t − w)⁺ /
    (T − w)))); piecewise 0.1 from t ≥ 0.5·T and 0.01 from t ≥ 0.75·T; constant 1. The warmup
    factor is min(1, (t + 1) / w) (none when w = 0). Example::

        StepSchedule(0.1, "piecewise", total_steps=100)(60)  # 0.01
    """

    def __init__(self, learning_rate: float, kind: str, total_steps: int, warmup_steps: int = 0) -> None:
        self.learning_rate = learning_rate
        self.kind = kind
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        step = tf.cast(step, tf.float32)
        factor = self._decay(step)
        if self.warmup_steps:
            factor *= tf.minimum(1.0, (step + 1.0) / self.warmup_steps)
        return self.learning_rate * factor

    def _decay(self, step: tf.Tensor) -> tf.Tensor:
        if self.kind == "cosine":
            decay_steps = max(1, self.total_steps - self.warmup_steps)
            progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
            return 0.5 * (1.0 + tf.cos(math.pi * progress))
        if self.kind == "piecewise":
            drops = tf.add_n([tf.cast(step >= boundary * self.total_steps, tf.float32)
                              for boundary in PIECEWISE_BOUNDARIES])
            return tf.pow(PIECEWISE_FACTOR, drops)
        return tf.ones_like(step)

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate, "kind": self.kind, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}


def learning_rate(config: TrainConfig, total_steps: int) -> float | StepSchedule:
    """The optimizer's learning rate: a plain number for a constant rate without warmup (the
    optimizer then keeps it in a variable, as runs before schedules existed), else a schedule."""
    if config.lr_schedule == "constant" and not config.warmup_steps:
        return config.learning_rate
    if config.warmup_steps >= total_steps:
        raise ValueError(
            f"warmup_steps must be smaller than the run's {total_steps} steps."
            f" Received: warmup_steps={config.warmup_steps}"
        )
    return StepSchedule(config.learning_rate, config.lr_schedule, total_steps, config.warmup_steps)


def make_optimizer(config: TrainConfig, total_steps: int) -> keras.optimizers.Optimizer:
    """The optimizer of ``config`` for a run of ``total_steps`` steps (SGD with momentum 0.9)."""
    rate = learning_rate(config, total_steps)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, weight_decay=config.weight_decay or None)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(rate)
