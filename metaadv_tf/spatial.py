"""Rotation-translation attack (Engstrom et al. 2019, "Exploring the landscape of spatial
robustness"): the worst of a grid, or of random draws, of rotations and translations.

A transform is (angle, dx, dy): rotate the image about its centre by ``angle`` (counter-clockwise
for positive angles, as Keras' ``RandomRotation``), then shift it ``dx`` pixels right and ``dy``
pixels down, with bilinear interpolation and zeros outside the image. Per example, the attack
returns the first candidate transform that is misclassified, or if none is, the one of highest
cross-entropy. (Engstrom et al.'s code keeps looking for the misclassified transform of highest
cross-entropy; stopping at the first one gives the same accuracy, and lets the grid search drop
each example from the batch as soon as it is misclassified.)
"""
from __future__ import annotations

import itertools

import numpy as np
import tensorflow as tf

from metaadv_tf.attacks import ModelFn
from metaadv_tf.seeding import input_seed


def spatial(
    model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, *, norm: None = None, max_angle: float,
    max_shift: float, angles: int, shifts: int, samples: int, seed: int,
) -> tf.Tensor:
    """The worst transform of ``x`` per example, within ±``max_angle`` degrees, ±``max_shift`` px.

    ``samples`` 0: over the grid of ``angles`` evenly spaced angles x ``shifts`` x-shifts x
    ``shifts`` y-shifts (a count of 1 means 0 only). ``samples`` k > 0: over k transforms per
    example drawn uniformly from the ranges, statelessly from ``seed`` (the cheap variant for
    training). ``norm`` is ignored: the runner signature passes None.
    """
    del norm
    if samples:
        seeds = input_seed(seed, x)  # reproducible, and new draws for every training batch
        candidates = random_transforms(tf.shape(x)[0], samples, max_angle, max_shift, seeds)
    else:
        candidates = grid_transforms(max_angle, max_shift, angles, shifts)
    return worst_transform(model_fn, x, y, candidates, compact=not samples)


def grid_transforms(max_angle: float, max_shift: float, angles: int, shifts: int) -> tf.Tensor:
    """Every (angle in radians, dx, dy) of the grid, as [angles * shifts**2, 3]."""
    values = [_even_values(np.radians(max_angle), angles)] + [_even_values(max_shift, shifts)] * 2
    grid = np.array(list(itertools.product(*values)), np.float32)
    return tf.constant(grid)


def random_transforms(
    batch: tf.Tensor, samples: int, max_angle: float, max_shift: float, seed: tf.Tensor
) -> tf.Tensor:
    """``samples`` uniform (angle in radians, dx, dy) per example, as [samples, batch, 3]."""
    limits = tf.constant([np.radians(max_angle), max_shift, max_shift], tf.float32)
    uniform = tf.random.stateless_uniform(
        tf.stack([samples, batch, 3]), seed=seed, minval=-1.0, maxval=1.0
    )
    return uniform * limits


def worst_transform(
    model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, candidates: tf.Tensor, *, compact: bool
) -> tf.Tensor:
    """Per example, the first of ``x`` transformed by ``candidates[i]`` that is misclassified, else
    the one of highest cross-entropy. ``candidates`` is [T, 3] (one transform per step for every
    example) or [T, N, 3] (one per step and example).

    A ``tf.while_loop`` over the candidates, whose memory does not grow with T, that ends when
    every example is misclassified. With ``compact``, each step runs the model only on the
    examples not yet misclassified (for the grid: many times faster on a non-robust model), so
    ``model_fn`` must not depend on batch composition (BatchNorm in inference mode). Without it,
    the model sees the whole batch at every step, as a training-mode ``model_fn`` should.
    """
    batch = tf.shape(x)[:1]

    def step(i, best, best_loss, fooled):
        active = tf.where(~fooled if compact else tf.ones_like(fooled))
        images = transform_images(tf.gather_nd(x, active), _per_example(candidates[i], active))
        logits = model_fn(images)
        labels = tf.gather_nd(y, active)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        wrong = tf.not_equal(tf.argmax(logits, axis=-1, output_type=labels.dtype), labels)
        searched = ~tf.gather_nd(fooled, active)
        better = searched & (wrong | (loss > tf.gather_nd(best_loss, active)))
        chosen = tf.boolean_mask(active, better)
        return (
            i + 1,
            tf.tensor_scatter_nd_update(best, chosen, tf.boolean_mask(images, better)),
            tf.tensor_scatter_nd_update(best_loss, chosen, tf.boolean_mask(loss, better)),
            tf.tensor_scatter_nd_update(fooled, active, ~searched | wrong),
        )

    def searching(i, best, best_loss, fooled):
        return (i < tf.shape(candidates)[0]) & ~tf.reduce_all(fooled)

    start = (0, x, tf.fill(batch, -np.inf), tf.zeros(batch, tf.bool))
    return tf.while_loop(searching, step, start)[1]


def _per_example(transform: tf.Tensor, active: tf.Tensor) -> tf.Tensor:
    """The rows of ``transform`` ([3] shared, or [N, 3]) for the examples ``active`` ([M, 1])."""
    return transform[None] if transform.shape.rank == 1 else tf.gather_nd(transform, active)


def transform_images(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """``images`` [N, H, W, C] rotated and shifted by ``transforms`` [N or 1, 3] of
    (angle in radians, dx, dy); bilinear, zero fill, clipped to [0, 1] against rounding."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    centre_x = (tf.cast(width, tf.float32) - 1.0) / 2.0
    centre_y = (tf.cast(height, tf.float32) - 1.0) / 2.0
    angle, shift_x, shift_y = tf.unstack(transforms, axis=1)
    cos, sin = tf.cos(angle), tf.sin(angle)
    # The op maps each output pixel p to the input point R (p - centre - shift) + centre.
    from_x, from_y = centre_x + shift_x, centre_y + shift_y
    zeros = tf.zeros_like(angle)
    matrix = tf.stack(
        [cos, -sin, centre_x - cos * from_x + sin * from_y,
         sin, cos, centre_y - sin * from_x - cos * from_y, zeros, zeros],
        axis=1,
    )
    moved = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=matrix, output_shape=tf.shape(images)[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT",
    )
    return tf.clip_by_value(moved, 0.0, 1.0)


def _even_values(limit: float, count: int) -> np.ndarray:
    """``count`` evenly spaced values in [-limit, limit]; 0 alone when ``count`` is 1."""
    return np.linspace(-limit, limit, count) if count > 1 else np.zeros(1)
