"""Perturbation memory: each training image's last adversarial perturbation, continued on its
next visit instead of attacking afresh (ATTA, Zheng et al. 2020, "Efficient adversarial training
with transferable adversarial examples").

Attacking is most of the cost of a MAT step. With a memory, a task whose attack iterates from a
start (PGD, SLIDE: ``Attack.can_continue``) runs only ``steps`` iterations from the image's stored
perturbation, projected into the task's ball, and stores the result. Attacks that cannot continue
(spatial) run as usual and leave the memory alone.

There is one perturbation per image, shared by every task: with T tasks and one task per image per
epoch, a per-task memory would be revisited once every T epochs, while the shared one is continued
every epoch (a perturbation from another Lp ball, projected, is still a good start). With
``per_task``, each task keeps its own perturbation of each image instead (T times the storage): a
perturbation then stays in its own threat model's shape (an Linf perturbation projected into the L2
ball is dense, where L2 attacks concentrate), at the price of fewer continuations. It is stored
as int8 codes with a float32 scale per image (``max |δ|``), 1 byte per pixel plus 4 per image:
quantization moves each pixel by at most scale/254, and every continuation projects again. It is a
variable, so it is checkpointed with the run and a resumed run continues it. A perturbation is
stored for the image as the training data gives it (no augmentation): a pipeline that crops or
flips would have to transform the stored perturbation too, as ATTA does. On an image's first visit
the memory is zero, so the attack starts at the clean image (ATTA's ramp-up over epochs).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import tensorflow as tf

from metaadv_tf.meta.functional import ModelFn
from metaadv_tf.meta.tasks import Task, TaskDistribution

_LEVELS = 127.0  # int8 codes in [-127, 127]


class PerturbationMemory(tf.Module):
    """The last perturbation of each of ``num_images`` training images (by index), in each of
    ``slots`` slots (one per task for a per-task memory)."""

    def __init__(self, num_images: int, image_shape: Sequence[int], slots: int = 1) -> None:
        super().__init__(name="perturbation_memory")
        self.image_shape, self.num_images = list(image_shape), num_images
        size = math.prod(self.image_shape)
        self.codes = tf.Variable(tf.zeros([slots * num_images, size], tf.int8), trainable=False)
        self.scales = tf.Variable(tf.zeros([slots * num_images]), trainable=False)

    @staticmethod
    def nbytes(num_images: int, image_shape: Sequence[int], slots: int = 1) -> int:
        """Bytes the memory of ``num_images`` images of ``image_shape`` in ``slots`` slots holds."""
        return slots * num_images * (math.prod(image_shape) + 4)

    def read(self, indices: tf.Tensor, slot: int = 0) -> tf.Tensor:
        """The stored perturbations of images ``indices`` in ``slot`` ([N, *image_shape]; zero if
        never written)."""
        rows = self._rows(indices, slot)
        codes = tf.cast(tf.gather(self.codes, rows), tf.float32)
        scales = tf.gather(self.scales, rows)[:, None] / _LEVELS
        return tf.reshape(codes * scales, [-1, *self.image_shape])

    def write(self, indices: tf.Tensor, delta: tf.Tensor, slot: int = 0) -> None:
        """Stores ``delta`` ([N, *image_shape]) as the perturbations of images ``indices`` in ``slot``."""
        flat = tf.reshape(delta, [tf.shape(delta)[0], -1])
        scales = tf.reduce_max(tf.abs(flat), axis=1)
        codes = tf.round(flat * tf.math.divide_no_nan(_LEVELS, scales)[:, None])
        indices = tf.reshape(self._rows(indices, slot), [-1, 1])
        self.codes.scatter_nd_update(indices, tf.cast(codes, tf.int8))
        self.scales.scatter_nd_update(indices, scales)

    def _rows(self, indices: tf.Tensor, slot: int) -> tf.Tensor:
        """The storage rows of images ``indices`` in ``slot``."""
        return tf.cast(indices, tf.int64) + slot * self.num_images


@dataclasses.dataclass(frozen=True)
class ContinuedAttacks:
    """Tasks' attacks through a perturbation memory: ``steps`` iterations per visit, from the
    image's shared perturbation, or with ``per_task`` from the task's own (memory slot = task index)."""

    memory: PerturbationMemory
    steps: int
    per_task: bool = False

    def attack(self, tasks: TaskDistribution, task_index: tf.Tensor, model_fn: ModelFn, x: tf.Tensor,
               y: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
        """Task ``task_index``'s adversarial examples of images ``indices`` (``x``, ``y``): for
        tasks that continue, ``steps`` iterations from the images' remembered perturbations, which
        the result then replaces; the task's own attack otherwise."""
        def branch(task: Task) -> Callable[[], tf.Tensor]:
            attack, slot = task.attack, task.index if self.per_task else 0
            if not attack.can_continue:
                return lambda: attack(model_fn, x, y)

            def run() -> tf.Tensor:
                x_adv = attack.continue_from(model_fn, x, y, x + self.memory.read(indices, slot), self.steps)
                self.memory.write(indices, x_adv - x, slot)
                return x_adv
            return run

        return tasks.dispatch(task_index, branch)
