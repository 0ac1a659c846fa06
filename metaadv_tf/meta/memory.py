"""Perturbation memory: each training image's last adversarial perturbation, continued on its
next visit instead of attacking afresh (ATTA, Zheng et al. 2020, "Efficient adversarial training
with transferable adversarial examples").

Attacking is most of the cost of a MAT step. With a memory, a task whose attack iterates from a
start (PGD, SLIDE: ``Attack.can_continue``) runs only ``steps`` iterations from the image's stored
perturbation, projected into the task's ball, and stores the result. Attacks that cannot continue
(spatial) run as usual and leave the memory alone.

There is one perturbation per image, shared by every task: with T tasks and one task per image per
epoch, a per-task memory would be revisited once every T epochs, while the shared one is continued
every epoch (a perturbation from another Lp ball, projected, is still a good start). It is stored
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
from typing import TYPE_CHECKING, Callable, Sequence

import tensorflow as tf

from metaadv_tf.meta.functional import ModelFn
from metaadv_tf.meta.tasks import TaskDistribution

if TYPE_CHECKING:
    from metaadv_tf.attacks import Attack

_LEVELS = 127.0  # int8 codes in [-127, 127]


class PerturbationMemory(tf.Module):
    """The last perturbation of each of ``num_images`` training images (by index)."""

    def __init__(self, num_images: int, image_shape: Sequence[int]) -> None:
        super().__init__(name="perturbation_memory")
        self.image_shape = list(image_shape)
        size = math.prod(self.image_shape)
        self.codes = tf.Variable(tf.zeros([num_images, size], tf.int8), trainable=False)
        self.scales = tf.Variable(tf.zeros([num_images]), trainable=False)

    @staticmethod
    def nbytes(num_images: int, image_shape: Sequence[int]) -> int:
        """Bytes the memory of ``num_images`` images of ``image_shape`` holds."""
        return num_images * (math.prod(image_shape) + 4)

    def read(self, indices: tf.Tensor) -> tf.Tensor:
        """The stored perturbations of images ``indices`` ([N, *image_shape]; zero if never written)."""
        codes = tf.cast(tf.gather(self.codes, indices), tf.float32)
        scales = tf.gather(self.scales, indices)[:, None] / _LEVELS
        return tf.reshape(codes * scales, [-1, *self.image_shape])

    def write(self, indices: tf.Tensor, delta: tf.Tensor) -> None:
        """Stores ``delta`` ([N, *image_shape]) as the perturbations of images ``indices``."""
        flat = tf.reshape(delta, [tf.shape(delta)[0], -1])
        scales = tf.reduce_max(tf.abs(flat), axis=1)
        codes = tf.round(flat * tf.math.divide_no_nan(_LEVELS, scales)[:, None])
        indices = tf.reshape(tf.cast(indices, tf.int64), [-1, 1])
        self.codes.scatter_nd_update(indices, tf.cast(codes, tf.int8))
        self.scales.scatter_nd_update(indices, scales)


@dataclasses.dataclass(frozen=True)
class ContinuedAttacks:
    """Tasks' attacks through a perturbation memory: ``steps`` iterations per visit."""

    memory: PerturbationMemory
    steps: int

    def attack(self, tasks: TaskDistribution, task_index: tf.Tensor, model_fn: ModelFn, x: tf.Tensor,
               y: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
        """Task ``task_index``'s adversarial examples of images ``indices`` (``x``, ``y``): for
        tasks that continue, ``steps`` iterations from the images' remembered perturbations, which
        the result then replaces; the task's own attack otherwise."""
        def branch(attack: Attack) -> Callable[[], tf.Tensor]:
            if not attack.can_continue:
                return lambda: attack(model_fn, x, y)

            def run() -> tf.Tensor:
                x_adv = attack.continue_from(model_fn, x, y, x + self.memory.read(indices), self.steps)
                self.memory.write(indices, x_adv - x)
                return x_adv
            return run

        return tasks.dispatch(task_index, branch)
