"""Per-task pools of adversarial examples, regenerated every R steps instead of every step.

Attacking is most of the cost of a MAT step. A pool keeps, for every training task, the task's
adversarial versions of the same ``size`` clean images, made against θ at the last refresh; steps in
between draw their support and query batches from the pools without attacking. The pools are
variables, so they are checkpointed with the run.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from metaadv_tf.meta.functional import ModelFn
from metaadv_tf.meta.tasks import TaskDistribution


class AdversarialPool(tf.Module):
    """``size`` adversarial examples for every task of ``tasks``."""

    def __init__(self, tasks: TaskDistribution, size: int, image_shape: Sequence[int]) -> None:
        super().__init__(name="adversarial_pool")
        self.tasks = tasks
        self.size = size
        self.images = tf.Variable(tf.zeros([len(tasks), size, *image_shape]), trainable=False)
        self.labels = tf.Variable(tf.zeros([len(tasks), size], tf.int32), trainable=False)

    def refresh(self, model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor) -> None:
        """Replaces every task's pool by its attack on (x, y) (``size`` examples) against model_fn."""
        images = [task.attack(model_fn, x, y) for task in self.tasks.tasks]
        self.images.assign(tf.stack(images))
        self.labels.assign(tf.tile(tf.cast(y, tf.int32)[None], [len(self.tasks), 1]))

    def sample(self, generator: tf.random.Generator, task_ids: tf.Tensor, per_task: int
               ) -> tuple[tf.Tensor, tf.Tensor]:
        """``per_task`` distinct pooled examples of each task in ``task_ids``, flattened
        task-major: ([num_tasks * per_task, H, W, C], [num_tasks * per_task])."""
        scores = generator.uniform([task_ids.shape[0], self.size])
        index = tf.argsort(scores, axis=1)[:, :per_task]
        images = tf.gather(tf.gather(self.images, task_ids), index, batch_dims=1)
        labels = tf.gather(tf.gather(self.labels, task_ids), index, batch_dims=1)
        return tf.reshape(images, [-1, *images.shape[2:]]), tf.reshape(labels, [-1])
