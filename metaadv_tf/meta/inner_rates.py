"""Learned inner learning rates (Meta-SGD, Li et al. 2017), one per task and parameter tensor.

Each task adapts with its own step size for every parameter tensor, α = exp(log α), starting at
the configured inner learning rate. The outer tape differentiates the meta-loss with respect to
log α through the inner steps (also first order: the fast weights θ − α·g depend on α even when g
is held constant), and ``update`` takes one Adam step on it. The rates are checkpointed with the run.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from metaadv_tf.meta.functional import dense_gradients


class LearnedInnerRates(tf.Module):
    """log α for ``num_tasks`` x ``num_params`` inner learning rates, trained by their own Adam."""

    def __init__(self, num_tasks: int, num_params: int, initial: float, learning_rate: float,
                 num_replicas: int = 1) -> None:
        super().__init__(name="inner_rates")
        self.num_replicas = num_replicas
        self.log_rates = tf.Variable(tf.fill([num_tasks, num_params], math.log(initial)), name="log_rates")
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build([self.log_rates])

    @property
    def parameters(self) -> list[tf.Variable]:
        """What the outer gradient trains."""
        return [self.log_rates]

    def rates(self, task_id: tf.Tensor) -> list[tf.Tensor]:
        """Task ``task_id``'s learning rate for each parameter tensor (scalars)."""
        return tf.unstack(tf.exp(tf.gather(self.log_rates, task_id)))

    def update(self, grads: list[tf.Tensor | None]) -> None:
        """One Adam step along the outer gradient (summed over replicas, hence the division)."""
        grads = dense_gradients(grads, self.parameters)
        self.optimizer.apply_gradients(zip([g / self.num_replicas for g in grads], self.parameters))
