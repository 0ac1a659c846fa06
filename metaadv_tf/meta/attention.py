"""Task attention: learned weights α_i over the task batch in the meta-gradient.

A small network maps each sampled task's one-hot encoding e_i to a score; α = softmax over the
task batch. θ descends Σ_i α_i L_i (α held constant). The attention network ascends
Σ_i α_i L_i + λ·H(α) (the losses held constant): it leans toward the tasks θ handles worst, as in
group-DRO, and the entropy term λ·H(α) keeps it from collapsing onto a single task (with λ → ∞,
α is uniform: the basic loop). Its last layer starts at zero, so α starts uniform.
"""
from __future__ import annotations

import keras
import tensorflow as tf


class TaskAttention(tf.Module):
    """α over sampled tasks from their encodings; ``update`` takes one ascent step."""

    def __init__(self, num_tasks: int, hidden: int = 16, learning_rate: float = 0.01,
                 entropy_weight: float = 0.1, num_replicas: int = 1) -> None:
        super().__init__(name="task_attention")
        self.num_tasks = num_tasks
        self.entropy_weight = entropy_weight
        self.num_replicas = num_replicas
        init = keras.initializers.GlorotUniform(seed=0)
        self.hidden_weights = tf.Variable(init((num_tasks, hidden)), name="hidden_weights")
        self.hidden_bias = tf.Variable(tf.zeros([hidden]), name="hidden_bias")
        self.output_weights = tf.Variable(tf.zeros([hidden, 1]), name="output_weights")
        # an explicit list: tf.Module's variable search would also find the optimizer's
        self.parameters = [self.hidden_weights, self.hidden_bias, self.output_weights]
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(self.parameters)

    def weights(self, task_ids: tf.Tensor) -> tf.Tensor:
        """α for the sampled ``task_ids``: non-negative, summing to one."""
        encoding = tf.one_hot(task_ids, self.num_tasks)
        hidden = tf.nn.relu(encoding @ self.hidden_weights + self.hidden_bias)
        return tf.nn.softmax(tf.squeeze(hidden @ self.output_weights, -1))

    def update(self, task_ids: tf.Tensor, task_losses: tf.Tensor) -> tf.Tensor:
        """One ascent step on Σ α_i L_i + λ H(α); returns the α used before the step."""
        losses = tf.stop_gradient(task_losses)
        with tf.GradientTape() as tape:
            alpha = self.weights(task_ids)
            entropy = -tf.reduce_sum(alpha * tf.math.log(alpha + 1e-12))
            negated_objective = -(tf.reduce_sum(alpha * losses) + self.entropy_weight * entropy)
        grads = tape.gradient(negated_objective, self.parameters)
        self.optimizer.apply_gradients(zip([g / self.num_replicas for g in grads], self.parameters))
        return alpha
