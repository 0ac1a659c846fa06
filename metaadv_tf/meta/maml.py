"""MAML over attack tasks (second order, or first order = FOMAML).

For each sampled task: the task's attack makes a support batch against θ, ``inner_steps`` SGD
steps on it give fast weights θ'_i, the attack makes a query batch against θ'_i, and the query loss
of f_θ'_i is the task's meta-loss. The meta-loss is the (weighted) mean over the task batch and is
differentiated back to θ through the inner steps by the caller's outer tape.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
import tensorflow as tf

from metaadv_tf.meta.functional import Params, adapt, model_fn, task_loss
from metaadv_tf.meta.tasks import TaskDistribution


@dataclasses.dataclass(frozen=True)
class InnerLoop:
    """Settings of the inner loop: SGD steps, their learning rate, and first or second order."""

    steps: int = 1
    learning_rate: float = 0.05
    first_order: bool = False


@dataclasses.dataclass
class TaskBatch:
    """Per-task clean data of one meta-step: tensors shaped [num_tasks, examples, ...]."""

    support_x: tf.Tensor
    support_y: tf.Tensor
    query_x: tf.Tensor
    query_y: tf.Tensor


def maml_task_losses(
    model: keras.Model,
    params: Sequence[tf.Tensor],
    state: Sequence[tf.Tensor],
    tasks: TaskDistribution,
    task_ids: tf.Tensor,
    batch: TaskBatch,
    inner: InnerLoop,
    outer_tape: tf.GradientTape,
    adversarial: bool = True,
) -> tuple[list[tf.Tensor], Params]:
    """Query losses of the adapted weights, one per task in ``task_ids``, and the new state.

    ``adversarial=False`` takes the support and query batches as already adversarial (pools).
    Attacks run with the outer tape paused: their outputs are constants to the meta-gradient.
    """
    losses = []
    for i in range(task_ids.shape[0]):
        support_x, query_x = batch.support_x[i], batch.query_x[i]
        if adversarial:
            with outer_tape.stop_recording():
                support_x = tasks.attack(task_ids[i], model_fn(model, params, state), support_x,
                                         batch.support_y[i])
        fast, state, _ = adapt(
            model, params, state, support_x, batch.support_y[i], steps=inner.steps,
            learning_rate=inner.learning_rate, first_order=inner.first_order,
        )
        if adversarial:
            with outer_tape.stop_recording():
                query_x = tasks.attack(task_ids[i], model_fn(model, fast, state), query_x,
                                       batch.query_y[i])
        loss, state = task_loss(model, fast, state, query_x, batch.query_y[i])
        losses.append(loss)
    return losses, state
