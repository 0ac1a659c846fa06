"""Reptile over attack tasks: adapt to each task, then move θ toward the adapted weights.

The update direction θ − mean_i θ'_i is returned as a pseudo-gradient, so the outer optimizer
applies it: with SGD at learning rate ε this is exactly θ ← θ + ε (mean_i θ'_i − θ).
"""
from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from metaadv_tf.meta.functional import Params, adapt, model_fn
from metaadv_tf.meta.maml import InnerLoop, TaskBatch, TaskConditioning, per_task_states
from metaadv_tf.meta.tasks import TaskDistribution


def reptile_direction(
    model: keras.Model,
    params: Sequence[tf.Tensor],
    state: Sequence[tf.Tensor],
    tasks: TaskDistribution,
    batch: TaskBatch,
    inner: InnerLoop,
    adversarial: bool = True,
    conditioning: TaskConditioning | None = None,
    attack_model: keras.Model | None = None,
) -> tuple[Params, Params, list[tf.Tensor]]:
    """Returns (θ − mean_i θ'_i, new state, each task's loss at θ).

    Each task adapts on its support and query data together, attacked through ``attack_model``
    (default: ``model``; a bfloat16 twin, `metaadv_tf.models.precision_twin`) over the same weights.
    """
    total = [tf.zeros_like(p) for p in params]
    losses, original = [], list(state)
    for i in range(batch.num_tasks):
        state = per_task_states(state, conditioning, batch.codes[i])
        x = tf.concat([batch.support_x[i], batch.query_x[i]], axis=0)
        y = tf.concat([batch.support_y[i], batch.query_y[i]], axis=0)
        if adversarial:
            x = tasks.attack(batch.task_ids[i], model_fn(attack_model or model, params, state), x, y)
        fast, state, loss = adapt(
            model, params, state, x, y, steps=inner.steps, learning_rate=inner.learning_rate,
            first_order=True,
        )
        total = [t + f for t, f in zip(total, fast)]
        losses.append(loss)
    state = conditioning.keep_code(state, original) if conditioning else state
    count = float(batch.num_tasks)
    return [p - t / count for p, t in zip(params, total)], state, losses
