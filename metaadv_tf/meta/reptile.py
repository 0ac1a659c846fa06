"""Reptile over attack tasks: adapt to each task, then move θ toward the adapted weights.

The update direction θ − mean_i θ'_i is returned as a pseudo-gradient, so the outer optimizer
applies it: with SGD at learning rate ε this is exactly θ ← θ + ε (mean_i θ'_i − θ).
"""
from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from metaadv_tf.meta.functional import Params, adapt, model_fn
from metaadv_tf.meta.maml import InnerLoop, TaskBatch
from metaadv_tf.meta.tasks import TaskDistribution


def reptile_direction(
    model: keras.Model,
    params: Sequence[tf.Tensor],
    state: Sequence[tf.Tensor],
    tasks: TaskDistribution,
    task_ids: tf.Tensor,
    batch: TaskBatch,
    inner: InnerLoop,
    adversarial: bool = True,
) -> tuple[Params, Params, list[tf.Tensor]]:
    """Returns (θ − mean_i θ'_i, new state, each task's loss at θ).

    Each task adapts on its support and query data together.
    """
    total = [tf.zeros_like(p) for p in params]
    losses = []
    for i in range(task_ids.shape[0]):
        x = tf.concat([batch.support_x[i], batch.query_x[i]], axis=0)
        y = tf.concat([batch.support_y[i], batch.query_y[i]], axis=0)
        if adversarial:
            x = tasks.attack(task_ids[i], model_fn(model, params, state), x, y)
        fast, state, loss = adapt(
            model, params, state, x, y, steps=inner.steps, learning_rate=inner.learning_rate,
            first_order=True,
        )
        total = [t + f for t, f in zip(total, fast)]
        losses.append(loss)
    count = float(task_ids.shape[0])
    return [p - t / count for p, t in zip(params, total)], state, losses
